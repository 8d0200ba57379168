"""The fast Llama decoding step gives the logits of ``model(...)`` up to float rounding (LoRA
adapters included), and sampling through it the same tokens."""

import pytest
import torch

from rsoup_lib.decode_step import LlamaDecodeStep
from rsoup_lib.models import tiny_random
from rsoup_lib.sampling import decode, encode_prompts, sample_token

PROMPTS = [["Write a review.", "Write a long review of a horror movie."], ["Write a review."] * 3]  # left padding / none


def _prefill(model, ids, mask):
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    return out.past_key_values, positions[:, -1:] + 1


@torch.no_grad()
def _step_and_forward_logits(model, tok, prompts, steps=5):
    """[(fast step's logits, forward's logits)] for ``steps`` random tokens after the prompts."""
    enc = encode_prompts(tok, prompts, "cpu")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    cache_ref, pos = _prefill(model, ids, mask)
    cache_fast, _ = _prefill(model, ids, mask)
    step = LlamaDecodeStep.build(model, cache_fast, mask, steps)
    assert step is not None
    g = torch.Generator().manual_seed(0)
    pairs = []
    for _ in range(steps):
        token = torch.randint(0, len(tok), (len(prompts),), generator=g)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        ref = model(input_ids=token[:, None], attention_mask=mask, position_ids=pos, past_key_values=cache_ref,
                    use_cache=True).logits[:, -1]
        pairs.append((step(token), ref))
        pos = pos + 1
    return pairs


@pytest.mark.parametrize("prompts", PROMPTS)
def test_fast_step_logits_equal_forward_up_to_rounding(prompts):
    model, tok = tiny_random(seed=2)
    for fast, ref in _step_and_forward_logits(model.eval(), tok, prompts):
        torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


def test_fast_step_of_a_lora_policy_uses_the_adapters():
    from peft import LoraConfig, get_peft_model

    model, tok = tiny_random(seed=2)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # B = 0 at init: make the adapters change the outputs
    model.eval()
    for fast, ref in _step_and_forward_logits(model, tok, PROMPTS[0]):
        torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)
    with model.disable_adapter():
        for fast, ref in _step_and_forward_logits(model, tok, PROMPTS[0]):
            torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_the_step_refuses_to_run_past_its_capacity():
    model, tok = tiny_random(seed=2)
    enc = encode_prompts(tok, PROMPTS[1], "cpu")
    cache, _ = _prefill(model.eval(), enc["input_ids"], enc["attention_mask"])
    step = LlamaDecodeStep.build(model, cache, enc["attention_mask"], 1)
    step(torch.tensor([5, 6, 7]))
    with pytest.raises(ValueError, match="capacity of 1 tokens"):
        step(torch.tensor([5, 6, 7]))


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
    assert LlamaDecodeStep.build(model.eval(), None, torch.ones(1, 2), 5) is None
