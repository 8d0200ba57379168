"""Judge perplexity: how fluent a set of texts reads to a bigger language model.

The judge is SmolLM2-135M-Instruct (``models.load_policy("smollm2-135m-instruct")``), used as a
plain language model on the completion text alone: no instruction, no chat template. Each text
y is tokenized by the judge's tokenizer and preceded by one start token s (the tokenizer's
``<|endoftext|>`` document boundary, else its BOS, else its EOS); over a set of texts

    PPL = exp( sum_y sum_{t=1..n_y} -log p_judge(y_t | s, y_<t)  /  sum_y n_y ),

token-weighted, so long texts count by their length. Empty texts add nothing. Lower is more
fluent: the teacher's own reviews score lowest, word salad highest.

``sample_texts`` draws the texts a chapter would show: one completion per prompt from the
evaluator's sampler (``evaluate``: ancestral sampling over the whole vocabulary, the policy's
template, under a local seed), at a given temperature.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


def start_token_id(tokenizer) -> int:
    """The token a text is scored after: ``<|endoftext|>`` if the vocabulary has it (SmolLM2's
    document boundary), else BOS, else EOS."""
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if isinstance(eot, int) and eot != tokenizer.unk_token_id and eot is not None:
        return eot
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return tid
    raise ValueError("the judge's tokenizer has no start, BOS or EOS token to score texts after")


@torch.no_grad()
def judge_nll(model, tokenizer, texts: Sequence[str], batch_size: int = 16) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of ``texts`` under ``model`` and the number of tokens
    scored (see the module docstring). Log-probs through ``logprobs.token_logprobs`` (chunked:
    no [batch, length, vocab] tensor)."""
    from rsoup_lib.logprobs import token_logprobs

    model.eval()
    start = start_token_id(tokenizer)
    device = next(model.parameters()).device
    decoder = model.get_decoder()
    weight = model.get_output_embeddings().weight
    rows = [[start, *tokenizer(t.strip(), add_special_tokens=False)["input_ids"]] for t in texts]
    rows = [r for r in rows if len(r) > 1]
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        batch = rows[i : i + batch_size]
        width = max(map(len, batch))
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for j, r in enumerate(batch):  # right padding: positions 0.. are the same for every row
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
        ids, mask = ids.to(device), mask.to(device)
        hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
        logp, _ = token_logprobs(hidden, weight, ids[:, 1:])
        scored = mask[:, 1:].bool()
        total -= float(logp[scored].double().sum())
        count += int(scored.sum())
    return total, count


def judge_perplexity(model, tokenizer, texts: Sequence[str], batch_size: int = 16) -> float:
    """exp(total NLL / tokens) of ``texts`` under the judge; nan when no text has a token."""
    nll, n = judge_nll(model, tokenizer, texts, batch_size)
    return math.exp(nll / n) if n else float("nan")


def sample_texts(model, tokenizer, prompts: Sequence[str], temperature: float, seed: int,
                 max_new_tokens: int, batch_size: int = 64) -> list[str]:
    """One completion per prompt, as ``evaluate`` samples them (same sampler, same seeding)."""
    from rsoup_lib.evaluate import _sample_with_kl

    texts, _ = _sample_with_kl(model, tokenizer, None, list(prompts), seed, max_new_tokens, temperature, batch_size)
    return texts
