"""Evaluating a policy: rewards with standard errors, KL to the SFT policy, diversity, samples.

``evaluate(policy, rewards, prompts, n, seed)`` samples one completion for each of ``n`` prompts
(cycling through ``prompts``; ancestral sampling, the same as training) under ``seed``, and
reports

- every reward's mean and standard error (sample std / sqrt(n)), and its value on every prompt,
- the KL to the SFT policy, a Monte Carlo estimate over the same completions
      KL(pi || pi_sft) ~ mean_y sum_t [log pi(y_t | .) - log pi_sft(y_t | .)]
  with its standard error and its per-prompt terms (the x-axis of every KL-reward figure; book
  chapter 1). "SFT" is the reference policy the run records (``runs.reference_of``): for WARP's
  later iterations the original SFT policy, not the iteration's init,
- diversity: distinct-1 and distinct-2 (unique n-grams / all n-grams, over all completions),
  in the words of ``rsoup_lib.text`` (the words the rewards count),
- simple reward-hacking detectors: the repetition rate (share of words in a completion that
  repeat an earlier word of it), the empty-completion rate, the mean length in words,
- a table of samples (prompt, completion, each reward).

The result is a dataclass whose ``to_dict()`` is JSON-serialisable. Same policy, prompts, n and
seed: same numbers (the generator is seeded locally; the global RNG is left as it was).

Paired comparisons: every policy of a chapter is evaluated on the same ``n`` prompts with the same
seed, so row i of ``per_prompt[reward]`` (and of ``kl_per_prompt``) is the same prompt for every
policy, sampled with the same random stream (common random numbers). Differences between two
policies are then computed per prompt (``rsoup_lib.stats.paired_difference``) or by a bootstrap
that resamples the same prompts for both (``rsoup_lib.stats.bootstrap``): their standard errors
are those of the difference, usually much smaller than the two means' errors combined.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from rsoup_lib.text import words


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique word n-grams / all word n-grams across ``texts`` (0 when there are none)."""
    grams = [tuple(ws[i : i + n]) for t in texts for ws in [words(t)] for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(text: str) -> float:
    """Share of the words of ``text`` that repeat an earlier word of it (0 for <2 words)."""
    ws = words(text)
    return 1.0 - len(set(ws)) / len(ws) if len(ws) > 1 else 0.0


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


@dataclass
class EvalResult:
    n: int
    seed: int
    rewards: dict[str, dict[str, float]]  # name -> {"mean", "stderr"}
    kl_to_sft: float | None
    kl_to_sft_stderr: float | None
    distinct_1: float
    distinct_2: float
    repetition: float
    empty_rate: float
    mean_words: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    per_prompt: dict[str, list[float]] = field(default_factory=dict)  # reward name -> value on prompt i
    kl_per_prompt: list[float] = field(default_factory=list)  # sum_t log pi - log pi_sft, prompt i
    prompts: list[str] = field(default_factory=list)  # the instruction of prompt i

    def scores(self, name: str):
        """Reward ``name`` on every prompt, as a numpy array (row i: prompt i)."""
        import numpy as np

        return np.asarray(self.per_prompt[name], dtype=float)

    def kls(self):
        """The per-prompt KL terms, as a numpy array (row i: prompt i)."""
        import numpy as np

        return np.asarray(self.kl_per_prompt, dtype=float)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def _as_policy(policy, device: str, dtype: str):
    """(model, tokenizer) from a name, a model folder, or an already loaded pair."""
    if isinstance(policy, tuple):
        return policy
    from rsoup_lib.cache import resolve
    from rsoup_lib.models import load_policy

    model, tokenizer = load_policy(resolve(str(policy)), device=device, dtype=dtype)
    return model.eval(), tokenizer


@torch.no_grad()
def evaluate(
    policy,
    rewards: Sequence[str] | str,
    prompts: Sequence[str | dict] | None = None,
    n: int = 128,
    seed: int = 1,
    *,
    sft=None,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    batch_size: int = 64,
    n_samples: int = 8,
    device: str = "cpu",
    dtype: str = "float32",
) -> EvalResult:
    """Evaluate ``policy`` (name, folder or (model, tokenizer)) on ``n`` completions.

    ``rewards``: a list of names or weighted sums, or a string of names "a,b".
    ``prompts``: default ``load_prompts("test")``. ``sft``: the reference for the KL (name, folder
    or pair); default: the reference recorded in the policy folder (``runs.reference_of``); None
    there too: no KL.
    """
    from rsoup_lib.errors import UserError
    from rsoup_lib.models import check_device, check_dtype
    from rsoup_lib.rewards import get_reward
    from rsoup_lib.runs import policy_folder, reference_of

    if isinstance(rewards, str):
        rewards = [r for r in rewards.split(",") if r]
    reward_fns = [get_reward(r) for r in rewards]
    if not reward_fns:
        raise UserError("no reward to evaluate: name at least one, e.g. --rewards sentiment,conciseness")
    if n < 1 or max_new_tokens < 1:
        raise UserError(f"n={n} and max_new_tokens={max_new_tokens} must be at least 1")
    check_dtype(dtype)
    check_device(device)
    if prompts is None:
        from rsoup_lib.prompts import load_prompts

        prompts = load_prompts("test")
    instr = [p["prompt"] if isinstance(p, dict) else str(p) for p in prompts]
    instr = [instr[i % len(instr)] for i in range(n)]
    if isinstance(policy, (str, Path)) and not str(policy).startswith("cache:"):
        policy = policy_folder(str(policy))  # a run folder stands for its policy/ (and its recorded SFT)
    sft = sft if sft is not None else reference_of(policy)
    model, tokenizer = _as_policy(policy, device, dtype)
    sft_pair = _as_policy(sft, device, dtype) if sft is not None else None

    texts, kls = _sample_with_kl(model, tokenizer, sft_pair, instr, seed, max_new_tokens, temperature, batch_size)
    scores = {r.name: r(instr, texts) for r in reward_fns}
    kl, kl_se = mean_stderr(kls) if kls else (None, None)
    samples = [
        {"prompt": instr[i], "completion": texts[i], **{name: s[i] for name, s in scores.items()}}
        for i in range(min(n_samples, n))
    ]
    return EvalResult(
        n=n,
        seed=seed,
        rewards={name: dict(zip(("mean", "stderr"), mean_stderr(s))) for name, s in scores.items()},
        kl_to_sft=kl,
        kl_to_sft_stderr=kl_se,
        distinct_1=distinct_n(texts, 1),
        distinct_2=distinct_n(texts, 2),
        repetition=sum(map(repetition_rate, texts)) / n,
        empty_rate=sum(not t.strip() for t in texts) / n,
        mean_words=sum(len(words(t)) for t in texts) / n,
        samples=samples,
        per_prompt={name: list(map(float, s)) for name, s in scores.items()},
        kl_per_prompt=[float(x) for x in kls],
        prompts=instr,
    )


def _sample_with_kl(model, tokenizer, sft_pair, instr, seed, max_new_tokens, temperature, batch_size):
    """One completion per instruction under ``seed`` (the global RNG is restored after), and,
    with a reference pair, each completion's KL term sum_t log pi(y_t|.) - log pi_sft(y_t|.).
    When the reference is the evaluated model itself (a chapter evaluating its SFT policy), every
    term is 0 without the two forward passes: they would compute the same log-probs twice."""
    from rsoup_lib.logprobs import completion_logprobs
    from rsoup_lib.sampling import sample_completions

    texts: list[str] = []
    kls: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for s in range(0, len(instr), batch_size):
            batch = instr[s : s + batch_size]
            sampled = sample_completions(model, tokenizer, batch, max_new_tokens, temperature)
            texts += sampled.texts
            if sft_pair is not None and sft_pair[0] is model:
                kls += [0.0] * len(batch)
            elif sft_pair is not None:
                args = (sampled.sequences, sampled.attention_mask, sampled.prompt_len)
                logp, _ = completion_logprobs(model, *args, hidden_scale=1 / temperature, entropy=False)
                ref, _ = completion_logprobs(sft_pair[0], *args, hidden_scale=1 / temperature, entropy=False)
                kls += ((logp - ref) * sampled.mask).sum(-1).tolist()
    return texts, kls


# ----------------------------------------------------------------------------- per-group results
def labels_of(records: Sequence[dict], n: int, field: str) -> list[str]:
    """The ``field`` of the prompt behind each of ``n`` evaluated completions (``evaluate``
    cycles through its prompts), e.g. ``group`` (the requested tone). ``UserError`` naming the
    fields there are when a record lacks it."""
    from rsoup_lib.errors import UserError

    if not records or any(not isinstance(r, dict) or field not in r for r in records):
        have = sorted(set().union(*(r.keys() for r in records if isinstance(r, dict)))) if records else []
        raise UserError(f"--by {field}: the prompts have no field {field!r}; their fields are: {', '.join(have) or 'none'}")
    return [str(records[i % len(records)][field]) for i in range(n)]


def by_label(result: EvalResult, labels: Sequence[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Per label: every reward's (and the KL's, as ``kl_to_sft``) mean, standard error and number
    of prompts: ``{name: {label: {"mean", "stderr", "n"}}}``."""
    columns = {name: result.per_prompt[name] for name in result.per_prompt}
    if result.kl_per_prompt:
        columns["kl_to_sft"] = result.kl_per_prompt
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, values in columns.items():
        out[name] = {}
        for label in sorted(set(labels)):
            vs = [v for v, x in zip(values, labels) if x == label]
            mean, se = mean_stderr(vs)
            out[name][label] = {"mean": mean, "stderr": se, "n": len(vs)}
    return out
