"""The fast Llama decoding step gives the logits of ``model(...)`` bit for bit, and sampling
through it the same tokens."""

import pytest
import torch

from rsoup_lib.decode_step import LlamaDecodeStep
from rsoup_lib.models import tiny_random
from rsoup_lib.sampling import decode, encode_prompts, sample_token


def _prefill(model, ids, mask):
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    return out.past_key_values, positions[:, -1:] + 1


@pytest.mark.parametrize("prompts", [["Write a review.", "Write a long review of a horror movie."],
                                     ["Write a review."] * 3])  # left padding / none
@torch.no_grad()
def test_step_logits_equal_forward_bit_for_bit(prompts):
    model, tok = tiny_random(seed=2)
    model.eval()
    enc = encode_prompts(tok, prompts, "cpu")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    cache_ref, pos = _prefill(model, ids, mask)
    cache_fast, _ = _prefill(model, ids, mask)
    step = LlamaDecodeStep.build(model, cache_fast)
    assert step is not None
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        token = torch.randint(0, len(tok), (len(prompts),), generator=g)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        ref = model(input_ids=token[:, None], attention_mask=mask, position_ids=pos, past_key_values=cache_ref,
                    use_cache=True).logits[:, -1]
        assert torch.equal(step(token, mask, pos), ref)
        pos = pos + 1


def test_sampling_draws_the_same_tokens_with_and_without_the_fast_step():
    model, tok = tiny_random(seed=4)
    model.eval()
    enc = encode_prompts(tok, ["Write a review.", "Write a short review of a comedy film."], "cpu")
    outs = []
    for fast in (False, True):
        torch.manual_seed(7)
        outs.append(decode(model, enc["input_ids"], enc["attention_mask"], 12, sample_token, tok.eos_token_id,
                           tok.pad_token_id, group_size=3, fast_step=fast))
    assert torch.equal(*outs)


def test_other_models_fall_back():
    model, _ = tiny_random()
    model.config._attn_implementation = "eager"
    assert LlamaDecodeStep.build(model.eval(), None) is None
