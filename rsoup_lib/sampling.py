"""Sampling completions from a policy, the one way every part of rsoup does it.

``complete(model, tokenizer, instructions, ...)`` renders each instruction the way the policy
was trained to read it (``models.render_prompt``: chat template or ``instruction + "\\n"``),
samples with transformers ``generate`` (KV cache, left padding) in batches, and returns the
decoded completions without the prompt. The global RNG is forked and seeded, so the same seed
gives the same completions and callers' random state is left untouched.
"""

from __future__ import annotations

import torch

from rsoup_lib.models import render_prompt


@torch.no_grad()
def complete(
    model,
    tokenizer,
    instructions: list[str],
    max_new_tokens: int = 48,
    seed: int = 0,
    temperature: float = 1.0,
    top_p: float = 1.0,
    do_sample: bool = True,
    batch_size: int = 64,
) -> list[str]:
    device = next(model.parameters()).device
    texts = [render_prompt(tokenizer, i) for i in instructions]
    out: list[str] = []
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(device)
            ids = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=do_sample,
                temperature=temperature if do_sample else None,
                top_p=top_p if do_sample else None,
                top_k=0 if do_sample else None,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = ids[:, batch["input_ids"].shape[1] :]
            out.extend(t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    return out
