"""The data of book chapter 4 (AIHF): a simulated person, their demonstrations and their
preferences.

**The gold utility.** A person's judgement of a review y for an instruction x is simulated by

    u*(x, y) = tone_fidelity(x, y) + 0.5 * specificity(y) + 0.5 * readability(y)

(``GOLD_UTILITY``; the terms are ``rsoup_lib.rewards``: the review's VADER sentiment in the
direction the instruction asks for, in [-1, 1]; distinct film terms / 4, in [0, 1]; Flesch
reading ease / 100, in [0, 1]), so u* lies in [-1, 2]. No learner ever calls u*: it only labels
the data below and scores the policies on held-out prompts. It was chosen so that the SFT policy
has headroom: on the shipped ``tiny`` policy u* is about 0.5, while the best of the teacher's ten
reviews of a prompt scores about 1.25.

**Demonstrations D** = {(x, y_E)}: for ``n_demos`` train prompts (drawn at random), the teacher review
(``data/teacher/train.jsonl``) with the highest u* among that prompt's reviews, each cut to the
policy's completion length (``max_new_tokens`` tokens) first: an expert for u* that writes no
longer than the policy may.

**Preferences P** = {(x, y_w, y_l)}: for ``n_pairs`` train prompts (a second random draw, so
some prompts have both a demonstration and a pair), two completions
(y_a, y_b) of the SFT policy, labelled by a Bradley-Terry draw on u* at temperature T,

    Pr(y_a preferred to y_b) = sigmoid((u*(x, y_a) - u*(x, y_b)) / T),

so T sets the label quality (T -> 0: always the better one; large T: coin flips). Every pair
stores one uniform draw z, and its label at temperature T is "a wins iff z < sigmoid(.../T)":
the pool is built once and labelled at any T with common random numbers, and the first n pairs
of the pool are the preference set of size n (nested sets, one pool).

**Held-out gold pairs**: two SFT completions for test prompts, labelled by u* itself (ties
dropped); the accuracy of every learned reward model is measured on them.

The pool is cached like an RL run (``rsoup_lib.cache``, kind ``aihf-data``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from rsoup_lib.errors import UserError
from rsoup_lib.io import atomic_write_text

GOLD_UTILITY = "tone_fidelity:1,specificity:0.5,readability:0.5"
TEACHER_FILE = "teacher/train.jsonl"


def gold_utility(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
    """u*(x, y) of the module docstring, for every (prompt, completion)."""
    from rsoup_lib.rewards import get_reward

    return get_reward(GOLD_UTILITY)(list(prompts), list(completions))


def bradley_terry_probability(u_a: float, u_b: float, temperature: float) -> float:
    """Pr(a preferred to b) = sigmoid((u_a - u_b) / T); T = 0 is the deterministic limit."""
    if temperature == 0:
        return 1.0 if u_a > u_b else 0.0 if u_a < u_b else 0.5
    z = (u_a - u_b) / temperature
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


@dataclass(frozen=True)
class PreferenceConfig:
    """What the demonstrations, the preference pool and the held-out pairs are built from."""

    policy: str = "tiny"  # the SFT policy whose completions form the pairs
    n_demos: int = 256  # demonstration prompts (the chapter uses prefixes)
    n_pairs: int = 256  # preference pairs in the pool (the chapter uses prefixes)
    heldout_pairs: int = 128  # gold-labelled pairs on test prompts
    max_new_tokens: int = 32
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"

    def validate(self) -> None:
        from rsoup_lib.models import check_device, check_dtype
        from rsoup_lib.rl import check_field_types

        check_field_types(PreferenceConfig, asdict(self), "preference config: ")
        for name in ("n_demos", "n_pairs", "heldout_pairs", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"preference config: {name}={getattr(self, name)} must be >= 1")
        for name in ("n_demos", "n_pairs"):
            if getattr(self, name) > 576:
                raise UserError(f"preference config: {name}={getattr(self, name)} exceeds the 576 train prompts")
        check_device(self.device)
        check_dtype(self.dtype)


@dataclass
class PreferenceData:
    """Demonstrations, the labelled pool and the held-out pairs (rows are dicts, see ``build``)."""

    demos: list[dict]  # {"prompt", "completion", "u"}
    pool: list[dict]  # {"prompt", "a", "b", "u_a", "u_b", "z"}
    heldout: list[dict]  # {"prompt", "chosen", "rejected", "u_chosen", "u_rejected"}

    def demonstrations(self, n: int) -> list[dict]:
        if n > len(self.demos):
            raise UserError(f"{n} demonstrations asked for, the set has {len(self.demos)}")
        return self.demos[:n]

    def pairs(self, n: int, temperature: float) -> list[dict]:
        """The first ``n`` pairs of the pool labelled at ``temperature``:
        {"prompt", "chosen", "rejected", "gold_agrees"} (gold_agrees: the label is u*'s argmax)."""
        if n > len(self.pool):
            raise UserError(f"{n} preference pairs asked for, the pool has {len(self.pool)}")
        out = []
        for p in self.pool[:n]:
            a_wins = p["z"] < bradley_terry_probability(p["u_a"], p["u_b"], temperature)
            chosen, rejected = (p["a"], p["b"]) if a_wins else (p["b"], p["a"])
            better = p["u_a"] >= p["u_b"]
            out.append({"prompt": p["prompt"], "chosen": chosen, "rejected": rejected,
                        "gold_agrees": a_wins == better or p["u_a"] == p["u_b"]})  # fmt: skip
        return out

    def label_accuracy(self, n: int, temperature: float) -> float:
        """Share of the first ``n`` pairs whose label at ``temperature`` agrees with u*."""
        pairs = self.pairs(n, temperature)
        return sum(p["gold_agrees"] for p in pairs) / len(pairs)


def _teacher_best(prompts: list[dict], shorten) -> list[dict]:
    """For each prompt record, the teacher review of highest u* once ``shorten``ed (prompts
    without a review are skipped)."""
    from rsoup_lib.manifest import DATA_DIR

    by_prompt: dict[str, list[str]] = {}
    for line in (DATA_DIR / TEACHER_FILE).read_text().splitlines():
        row = json.loads(line)
        if row.get("review"):
            by_prompt.setdefault(row["prompt"], []).append(row["review"])
    out = []
    for p in prompts:
        reviews = [shorten(r) for r in by_prompt.get(p["prompt"], [])]
        if reviews:
            u = gold_utility([p["prompt"]] * len(reviews), reviews)
            best = max(range(len(reviews)), key=lambda i: (u[i], -i))
            out.append({"prompt": p["prompt"], "completion": reviews[best], "u": u[best]})
    return out


def _sample_pairs(model, tokenizer, instructions: list[str], max_new_tokens: int, seed: int) -> list[tuple[str, str]]:
    """Two completions per instruction (``sample_completions``, groups of 2) under ``seed``."""
    import torch

    from rsoup_lib.sampling import sample_completions

    out = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for s in range(0, len(instructions), 32):
            batch = [x for x in instructions[s : s + 32] for _ in range(2)]
            texts = sample_completions(model, tokenizer, batch, max_new_tokens, 1.0, group_size=2).texts
            out += [(texts[i], texts[i + 1]) for i in range(0, len(texts), 2)]
    return out


def build(config: PreferenceConfig, out_dir: Path) -> Path:
    """Write demos.jsonl, pool.jsonl and heldout.jsonl into ``out_dir`` (see the module docstring)."""
    import numpy as np

    from rsoup_lib.models import load_policy
    from rsoup_lib.prompts import load_prompts

    config.validate()
    rng = np.random.default_rng(config.seed)
    train = load_prompts("train")
    order = rng.permutation(len(train)).tolist()
    demo_prompts = [train[i] for i in order]  # in this order, the first n_demos with a teacher review
    pair_prompts = [train[i]["prompt"] for i in rng.permutation(len(train))[: config.n_pairs].tolist()]
    model, tokenizer = load_policy(config.policy, device=config.device, dtype=config.dtype, seed=config.seed)
    model.eval()

    def shorten(text: str) -> str:  # a demonstration is as long as a policy's completion at most
        return tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"][: config.max_new_tokens]).strip()

    demos = _teacher_best(demo_prompts[: config.n_demos + 32], shorten)[: config.n_demos]  # spares: some lack a review
    pairs = _sample_pairs(model, tokenizer, pair_prompts, config.max_new_tokens, config.seed)
    u_a = gold_utility(pair_prompts, [a for a, _ in pairs])
    u_b = gold_utility(pair_prompts, [b for _, b in pairs])
    z = rng.random(len(pairs))
    pool = [{"prompt": x, "a": a, "b": b, "u_a": ua, "u_b": ub, "z": float(zi)}
            for x, (a, b), ua, ub, zi in zip(pair_prompts, pairs, u_a, u_b, z)]  # fmt: skip
    test = [p["prompt"] for p in load_prompts("test")]
    test = [test[i % len(test)] for i in range(config.heldout_pairs)]
    held = _sample_pairs(model, tokenizer, test, config.max_new_tokens, config.seed + 1)
    hu_a, hu_b = gold_utility(test, [a for a, _ in held]), gold_utility(test, [b for _, b in held])
    heldout = []
    for x, (a, b), ua, ub in zip(test, held, hu_a, hu_b):
        if ua != ub:
            (c, uc), (r, ur) = sorted([(a, ua), (b, ub)], key=lambda t: -t[1])
            heldout.append({"prompt": x, "chosen": c, "rejected": r, "u_chosen": uc, "u_rejected": ur})
    for name, rows in (("demos", demos), ("pool", pool), ("heldout", heldout)):
        atomic_write_text(out_dir / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return out_dir


def read(folder: Path) -> PreferenceData:
    def rows(name):
        return [json.loads(line) for line in (Path(folder) / f"{name}.jsonl").read_text().splitlines()]

    return PreferenceData(rows("demos"), rows("pool"), rows("heldout"))


def cached_preference_data(config: PreferenceConfig) -> PreferenceData:
    """``build`` through the run cache (kind ``aihf-data``): built once per config."""
    from rsoup_lib.cache import cached_run
    from rsoup_lib.rl import init_identity

    config.validate()
    key = {**asdict(config), "gold": GOLD_UTILITY, "init_sha256": init_identity(config.policy)}
    return read(cached_run("aihf-data", key, lambda d: build(config, d)))
