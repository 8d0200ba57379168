"""Seeded sampling with a KV cache: one decoding loop for the teacher, ``rsoup generate``,
the RL trainer and the evaluator.

For each step t, with logits z_t of the next token given the prompt and y_<t, a ``draw``
function picks y_t from p(y_t = v) ~ exp(z_t[v] / temperature). Two draws:

- ``TopK``: restricted to the top_k largest logits (all if 0), ``torch.multinomial`` over them
  with an explicit ``torch.Generator`` (the same seed gives the same completions); temperature
  0 is greedy. Used by the teacher, ``rsoup generate`` and the data card.
- ``sample_token``: the whole vocabulary by inverting the CDF with one uniform per row from
  torch's global RNG. On CPU about 5x faster than ``torch.multinomial`` at an 8k vocabulary;
  used by the RL trainer and the evaluator, whose RNG state the checkpoints save and restore.

``sample_completions`` is what the trainer and the evaluator call: it renders and left-pads the
prompts, decodes with ``sample_token``, and returns the prompt+completion ids with the mask of the
completion tokens up to the first end-of-text token (``completion_mask``), ready for
``rsoup_lib.logprobs.completion_logprobs``.

Rows stop at their end-of-text token (the rest of the row is padding); the loop stops when
every row has. With ``group_size`` k the rows come in groups of k identical prompts (RLOO):
each distinct prompt is prefilled once and its cache repeated k times.

Why our own loop and not ``model.generate``: on CPU the library's sampler dominated the time
for a 49k vocabulary (a full-vocabulary sort for top-p and a full-vocabulary multinomial per
step: about 0.25 s per step at batch 64 for SmolLM2); top-k first, or the inverse CDF, costs
almost nothing. ``benchmarks/sampling.py`` measures the two side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

Draw = Callable[[torch.Tensor], torch.Tensor]  # logits [n, V] -> token ids [n]


@dataclass
class TopK:
    """softmax(z / temperature) over the top_k largest logits (all if 0); greedy at temperature 0."""

    temperature: float = 1.0
    top_k: int = 0
    generator: torch.Generator | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.temperature == 0:
            return logits.argmax(-1)
        logits = logits / self.temperature
        if self.top_k and self.top_k < logits.shape[-1]:
            values, indices = logits.topk(self.top_k, dim=-1)
            choice = torch.multinomial(torch.softmax(values, -1), 1, generator=self.generator).squeeze(-1)
            return indices.gather(-1, choice[:, None]).squeeze(-1)
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=self.generator).squeeze(-1)


def sample_token(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """One draw per row from softmax(logits / temperature), by inverting the CDF with one uniform
    per row (torch's global RNG)."""
    logits = logits.float()
    if temperature != 1.0:  # x / 1.0 == x exactly: skip a pass over [n, V]
        logits = logits / temperature
    probs = torch.softmax(logits, dim=-1)
    cdf = probs.cumsum_(-1)
    u = torch.rand(cdf.shape[0], 1, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


@torch.no_grad()
def decode(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    draw: Draw,
    eos_token_id: int | None,
    pad_token_id: int | None,
    group_size: int = 1,
    fast_step: bool = True,
) -> torch.Tensor:
    """New token ids [n * group_size, <= max_new_tokens] for n left-padded prompts, each row
    repeated ``group_size`` times; after a row's end-of-text token its positions hold
    ``pad_token_id`` (or the end-of-text token when there is no pad token).

    ``fast_step``: decode Llama models with ``decode_step.LlamaDecodeStep`` (the logits of
    ``model(...)`` up to float rounding, at a fraction of its cost); False, or another
    architecture: through ``model(...)``."""
    from rsoup_lib.decode_step import LlamaDecodeStep

    k = group_size
    mask = attention_mask
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    # logits_to_keep=1: the prompt's logits are not needed, only the last position's (for a
    # 49k vocabulary the full prefill logits cost as much as several decoding steps).
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    cache, logits = out.past_key_values, out.logits[:, -1]
    if k > 1:
        cache.batch_repeat_interleave(k)
        logits = logits.repeat_interleave(k, dim=0)
        mask = mask.repeat_interleave(k, dim=0)
    next_pos = positions[:, -1:].repeat_interleave(k, dim=0) + 1
    step = LlamaDecodeStep.build(model, cache, mask, max_new_tokens) if fast_step else None
    fill = pad_token_id if pad_token_id is not None else eos_token_id
    done = torch.zeros(len(mask), dtype=torch.bool, device=mask.device)
    new = []
    for _ in range(max_new_tokens):
        token = draw(logits)
        if eos_token_id is not None:
            token = torch.where(done, torch.full_like(token, fill), token)
            done |= token == eos_token_id
        new.append(token)
        if bool(done.all()) or len(new) == max_new_tokens:
            break
        if step is not None:
            logits = step(token)
        else:
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_pos,
                        past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1]
            next_pos = next_pos + 1
    return torch.stack(new, dim=1)


def sample_ids(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``decode`` with the top-k draw: new token ids for left-padded prompts, through
    ``model(...)`` (not the fast step): the teacher's reviews that ``rsoup data build`` writes
    are the model's own logits, bit for bit, whatever the decoding step's rounding."""
    return decode(model, input_ids, attention_mask, max_new_tokens, TopK(temperature, top_k, generator),
                  eos_token_id, pad_token_id, fast_step=False)


def sample(
    model,
    tokenizer,
    instructions: list[str],
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    batch_size: int = 64,
    system: str | None = None,
) -> list[str]:
    """Completions (decoded, special tokens removed, stripped) for ``instructions``, each
    rendered with ``models.render_prompt`` (the chat template when the tokenizer has one).

    ``system``: an optional system message for chat-template tokenizers (the teacher uses one).
    """
    from rsoup_lib.models import render_prompt

    def render(x: str) -> str:
        if system and getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(
                [{"role": "system", "content": system}, {"role": "user", "content": x}],
                tokenize=False, add_generation_prompt=True,
            )
        return render_prompt(tokenizer, x)

    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    tokenizer.padding_side = "left"
    model.eval()
    results: list[str] = []
    for i in range(0, len(instructions), batch_size):
        texts = [render(x) for x in instructions[i : i + batch_size]]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        ids = sample_ids(model, enc["input_ids"], enc["attention_mask"], max_new_tokens,
                         tokenizer.eos_token_id, tokenizer.pad_token_id, temperature, top_k, generator)
        results += [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return results


# ----------------------------------------------------------------------------- RL and evaluation
def completion_mask(completion_ids: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """1.0 for completion tokens up to and including the first EOS, 0.0 after it."""
    if eos_id is None:
        return torch.ones_like(completion_ids, dtype=torch.float32)
    is_eos = (completion_ids == eos_id).long()
    return ((is_eos.cumsum(-1) - is_eos) == 0).float()


def encode_prompts(tokenizer, instructions: Sequence[str], device) -> dict[str, "torch.Tensor"]:
    """Render (chat template, or "instruction\\n" as the tiny models were trained) and left-pad
    a batch of instructions; no extra special tokens (the template has its own)."""
    from rsoup_lib.models import render_prompt

    texts = [render_prompt(tokenizer, p) for p in instructions]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


@dataclass
class Sampled:
    sequences: "torch.Tensor"  # [n, P + C] prompt (left-padded) + completion
    attention_mask: "torch.Tensor"  # [n, P + C]
    prompt_len: int  # P
    mask: "torch.Tensor"  # [n, C] completion tokens up to the first EOS
    texts: list[str]  # decoded completions


def sample_completions(
    model, tokenizer, instructions: Sequence[str], max_new_tokens: int, temperature: float = 1.0,
    group_size: int = 1,
) -> Sampled:
    """One completion per instruction: ancestral sampling over the whole vocabulary (no top-k /
    top-p) with a KV cache (``rsoup_lib.sampling.decode`` with ``sample_token``, torch's global
    RNG, so a resumed run draws what an uninterrupted one would).

    ``group_size`` k: rows come in groups of k identical instructions (RLOO); each distinct prompt
    is prefilled once and its cache repeated k times. Stops when every row has emitted EOS.
    """
    device = next(model.parameters()).device
    k = group_size
    if len(instructions) % k or any(instructions[i] != instructions[i - i % k] for i in range(len(instructions))):
        raise ValueError(f"sample_completions: instructions must come in groups of {k} identical ones")
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    enc = encode_prompts(tokenizer, instructions[::k], device)
    completion = decode(
        model, enc["input_ids"], enc["attention_mask"], max_new_tokens,
        lambda logits: sample_token(logits, temperature), eos, pad, group_size=k,
    )  # fmt: skip
    prompt_ids = enc["input_ids"].repeat_interleave(k, dim=0)
    prompt_mask = enc["attention_mask"].repeat_interleave(k, dim=0)
    cmask = completion_mask(completion, eos)
    lengths = cmask.sum(-1).long().tolist()
    texts = tokenizer.batch_decode([row[:n].tolist() for row, n in zip(completion, lengths)], skip_special_tokens=True)
    return Sampled(
        sequences=torch.cat([prompt_ids, completion], dim=1),
        attention_mask=torch.cat([prompt_mask, torch.ones_like(completion)], dim=1),
        prompt_len=prompt_ids.shape[1],
        mask=cmask,
        texts=texts,
    )
