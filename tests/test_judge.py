"""Judge perplexity: the chunked scoring equals a plain log-softmax over the judge's logits."""

import math

import torch

from rsoup_lib.judge import judge_nll, judge_perplexity, start_token_id
from rsoup_lib.models import tiny_random


def test_judge_nll_equals_plain_log_softmax_and_skips_empty_texts():
    model, tok = tiny_random(seed=5)
    model.eval()
    texts = ["The acting was superb.", "A dull, predictable script; the director wasted a talented cast.", "  "]
    nll, n = judge_nll(model, tok, texts, batch_size=2)
    start = start_token_id(tok)
    want_nll, want_n = 0.0, 0
    with torch.no_grad():
        for t in texts[:2]:
            ids = torch.tensor([[start, *tok(t, add_special_tokens=False)["input_ids"]]])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
            want_nll -= float(logp.gather(-1, ids[0, 1:, None]).sum())
            want_n += ids.shape[1] - 1
    assert n == want_n
    assert math.isclose(nll, want_nll, rel_tol=1e-5)
    assert math.isclose(judge_perplexity(model, tok, texts), math.exp(want_nll / want_n), rel_tol=1e-5)
    assert math.isnan(judge_perplexity(model, tok, ["", " "]))
