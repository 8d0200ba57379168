"""Chunked token log-probs equal the naive log-softmax, values and gradients."""

import pytest
import torch

from rsoup_lib.logprobs import completion_logprobs, naive_token_logprobs, token_logprobs
from rsoup_lib.models import tiny_random


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_chunked_matches_naive_values_and_gradients(chunk):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 11, 16, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (3, 11), generator=g)
    upstream = torch.randn(3, 11, generator=g, dtype=torch.float64)

    logp, ent = token_logprobs(hidden, weight, targets, chunk_size=chunk)
    ref, ref_ent = naive_token_logprobs(hidden, weight, targets)
    torch.testing.assert_close(logp, ref.float(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ent, ref_ent.float(), rtol=1e-5, atol=1e-5)

    gh, gw = torch.autograd.grad((logp.double() * upstream).sum(), (hidden, weight))
    rh, rw = torch.autograd.grad((ref * upstream).sum(), (hidden, weight))
    torch.testing.assert_close(gh, rh, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, rw, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("keep_chunks", [1, 2, 3])  # some chunks kept, the rest recomputed; all kept
def test_kept_logits_give_the_same_gradients_bit_for_bit(keep_chunks):
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 9, 16, generator=g, requires_grad=True)
    weight = torch.randn(40, 16, generator=g, requires_grad=True)
    targets = torch.randint(0, 40, (2, 9), generator=g)
    upstream = torch.randn(2, 9, generator=g)
    chunk = 7  # 18 positions: chunks of 7, 7, 4
    grads = []
    for keep_bytes in (0, keep_chunks * chunk * 40 * 4):
        logp, ent = token_logprobs(hidden, weight, targets, chunk_size=chunk, keep_bytes=keep_bytes)
        grads.append((logp, ent, *torch.autograd.grad((logp * upstream).sum(), (hidden, weight))))
    for recomputed, kept in zip(*grads):
        assert torch.equal(recomputed, kept)



@pytest.mark.parametrize("grad", [False, True])
def test_without_entropy_the_same_logprobs_and_gradients_bit_for_bit(grad):
    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(2, 9, 16, generator=g, requires_grad=grad)
    weight = torch.randn(40, 16, generator=g, requires_grad=grad)
    targets = torch.randint(0, 40, (2, 9), generator=g)
    outs = []
    for entropy in (True, False):
        logp, ent = token_logprobs(hidden, weight, targets, chunk_size=7, entropy=entropy)
        assert (ent is None) == (not entropy)
        outs.append((logp, *(torch.autograd.grad(logp.sum(), (hidden, weight)) if grad else ())))
    for with_entropy, without in zip(*outs):
        assert torch.equal(with_entropy, without)
    model = tiny_random(seed=0)[0].eval()
    ids = torch.randint(2, model.config.vocab_size, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    for k in (1, 2):
        full, _ = completion_logprobs(model, ids, mask, 5, group_size=k)
        bare, none = completion_logprobs(model, ids, mask, 5, group_size=k, entropy=False)
        assert none is None and torch.equal(full, bare)

def test_completion_logprobs_match_model_logits():
    model, tok = tiny_random(seed=3)
    enc = tok(["Write a review of a horror movie.\n", "A dull film\n"], return_tensors="pt", padding=True)
    completion = torch.randint(2, len(tok), (2, 5), generator=torch.Generator().manual_seed(0))
    ids = torch.cat([enc["input_ids"], completion], 1)
    mask = torch.cat([enc["attention_mask"], torch.ones_like(completion)], 1)
    P = enc["input_ids"].shape[1]
    logp, ent = completion_logprobs(model, ids, mask, P, chunk_size=3)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    ref = torch.log_softmax(logits[:, P - 1 : -1].float(), -1).gather(-1, completion[..., None]).squeeze(-1)
    torch.testing.assert_close(logp, ref, rtol=1e-5, atol=1e-5)
    assert (ent > 0).all()


def test_shared_prompt_pass_matches_the_plain_forward_with_gradients():
    model, tok = tiny_random(seed=4)
    k = 3
    enc = tok(["Write a review of a horror movie.\n", "A dull film\n"], return_tensors="pt", padding=True)
    P = enc["input_ids"].shape[1]
    prompt = enc["input_ids"].repeat_interleave(k, 0)
    pmask = enc["attention_mask"].repeat_interleave(k, 0)
    completion = torch.randint(2, len(tok), (2 * k, 6), generator=torch.Generator().manual_seed(1))
    ids = torch.cat([prompt, completion], 1)
    mask = torch.cat([pmask, torch.ones_like(completion)], 1)
    upstream = torch.randn(2 * k, 6, generator=torch.Generator().manual_seed(2))

    plain, plain_ent = completion_logprobs(model, ids, mask, P, chunk_size=5)
    g_plain = torch.autograd.grad((plain * upstream).sum(), list(model.parameters()))
    shared, shared_ent = completion_logprobs(model, ids, mask, P, chunk_size=5, group_size=k)
    g_shared = torch.autograd.grad((shared * upstream).sum(), list(model.parameters()))
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared_ent, plain_ent, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_shared, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    one, _ = completion_logprobs(model, ids[:, : P + 1], mask[:, : P + 1], P, group_size=k)  # C = 1
    torch.testing.assert_close(one, plain[:, :1], rtol=1e-5, atol=1e-5)
