"""Group-invariant RLHF (book chapter 5): inferred groups, a variance penalty and an adaptive KL.

The claim (Zheng et al., ICLR 2024): RL takes shortcuts to high reward and neglects hard samples;
a policy trained to perform consistently across *automatically inferred* groups is more stable
and generalises better. No public code exists; this is the book's reading of the method, built
on the one RL trainer (``rsoup_lib.rl``) through its two per-sample hooks.

**Groups.** A small classifier p_phi(g | x, y) over K = 2 soft groups reads the prompt x and the
completion y as hashed bags of words (``features``; a linear layer and a softmax: it must be
cheap next to a policy step, and the tiny policy has no sentence encoder to lend). For samples
i = 1..n with rewards R_i and soft memberships p_ig = p_phi(g | x_i, y_i):

    N_g = sum_i p_ig,   pi_g = N_g / n,   R_g = sum_i p_ig R_i / N_g,   Rbar = sum_g pi_g R_g
    Var_g(R_g) = sum_g pi_g (R_g - Rbar)^2                                  (``group_variance``)

the between-group variance, each group weighted by its mass pi_g. (Unweighted, the variance of
the group means is maximised by a "group" of one outlier sample; weighted, the best split trades
the gap against the group sizes, as Otsu's threshold does.) phi is updated to MAXIMISE it, by
gradient ascent on the last ``buffer_batches`` training batches, alternating with the policy:
the classifier looks for the split with the largest performance gap. The group with the larger
R_g is g_high (the easy group), the other one the hard group.

**Variance penalty.** The policy maximises  J(theta) - alpha * Var_g(R_g). The batch estimate
of E[r] is (1/n) sum_i R_i, and REINFORCE turns d/dR_i of an objective into the coefficient of
sample i's score function grad log pi(y_i | x_i). The derivative of the variance is

    d Var / d R_i = (2 / n) sum_g p_ig (R_g - Rbar)                 (``variance_gradient``)

(the terms through Rbar cancel because sum_g N_g (R_g - Rbar) = 0), so the penalised objective
gives sample i the coefficient (1/n)(1 - alpha n dVar/dR_i), i.e. its reward advantage is
multiplied by

    w_i = 1 - 2 alpha (sum_g p_ig R_g - Rbar)                       (``advantage_weights``)

Samples of the hard group (R_g < Rbar) get w_i > 1 and are pushed harder; those of the easy
group get w_i < 1. The weight enters the trainer through ``rl.AdvantageWeightFn``:
A_i = w_i RLOO(r)_i - RLOO(beta_i KL)_i, the KL term unweighted. R_g and Rbar come from the
buffer (less noisy than one batch of 32), p_ig from the current classifier.

**Adaptive KL.** Each sample's KL coefficient is

    beta_i = beta * (c0 + c1 * p_phi(g_high | x_i, y_i))            (``adaptive_kl``)

through ``rl.KLCoefFn``: easy samples are held closer to the reference, hard ones explore. With
c0 = 0.5, c1 = 1 and balanced groups the mean coefficient is beta, the KL budget of plain RLOO.

**Methods** (``GroupConfig.method``): ``plain`` (fixed beta, no penalty: the hooks only log),
``group`` (both parts), ``no_adaptive_kl`` (penalty only), ``no_variance`` (adaptive KL only),
and ``oracle``, which REPLACES THE INFERRED GROUPS BY THE HIDDEN TRUE LABELS (one-hot over the
labels seen in the buffer; g_high = the labels whose return is above Rbar): information the method
does not have, a reference for what perfect group inference would give.

The hidden label (``group_field`` of a prompt record) reaches the hooks in ``Batch.records``; the
classifier never reads it. Only the oracle and the per-step log (``group_metrics.jsonl``:
per-label rewards, memberships, weights and KL coefficients) use it.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from rsoup_lib.errors import UserError
from rsoup_lib.rl import _field  # a config field whose help reaches `rsoup train --help`

if TYPE_CHECKING:
    import numpy as np
    import torch

    from rsoup_lib.rl import Batch, RLConfig

METHODS = ("plain", "group", "no_adaptive_kl", "no_variance", "oracle")
METRICS_FILE = "group_metrics.jsonl"
STATE_DIR = "group_state"


@dataclass(frozen=True)
class GroupConfig:
    """The group-invariant part of a run (the RL part is an ``rl.RLConfig``)."""

    method: str = _field("group", "plain, group, no_adaptive_kl, no_variance, or oracle (uses the hidden labels)")
    alpha: float = _field(1.0, "weight of the variance penalty alpha * Var_g(R_g)")
    c0: float = _field(0.5, "adaptive KL: beta_i = beta * (c0 + c1 * p(g_high | x_i, y_i))")
    c1: float = _field(1.0, "adaptive KL: see c0")
    classifier_lr: float = _field(0.1, "Adam learning rate of the group classifier")
    classifier_steps: int = _field(5, "classifier ascent steps per policy step")
    buffer_batches: int = _field(4, "training batches the classifier and the group returns look at")
    features: int = _field(512, "hashed bag-of-words features of the classifier")
    holdout: str = _field("", "value of group_field held out of training ('' = none)")
    group_field: str = _field("group", "the prompt records' hidden label (evaluation, oracle and logs only)")

    def validate(self) -> None:
        def bad(msg):
            raise UserError(f"group config: {msg} (see `rsoup train --help`)")

        from rsoup_lib.rl import check_field_types

        check_field_types(GroupConfig, asdict(self), "group config: ")
        if self.method not in METHODS:
            bad(f"method {self.method!r} is not one of {METHODS}")
        for name in ("alpha", "c0", "c1", "classifier_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                bad(f"{name}={value} must be >= 0")
        if self.classifier_lr <= 0:
            bad(f"classifier_lr={self.classifier_lr} must be > 0")
        if self.c0 + self.c1 <= 0:
            bad(f"c0 + c1 = {self.c0 + self.c1} must be > 0 (every KL coefficient would be 0)")
        for name, low in (("classifier_steps", 1), ("buffer_batches", 1), ("features", 2)):
            if getattr(self, name) < low:
                bad(f"{name}={getattr(self, name)} must be >= {low}")
        if not self.group_field:
            bad("group_field is empty: name the prompt records' label, e.g. group")


# ----------------------------------------------------------------------------- the equations
def features(prompts: Sequence[str], completions: Sequence[str], dim: int) -> torch.Tensor:
    """Hashed bags of words [n, dim] of (x, y): prompt words and completion words hash into the
    same ``dim`` buckets under different prefixes; rows are L2-normalised."""
    import torch

    from rsoup_lib.text import words

    out = torch.zeros(len(prompts), dim)
    for i, (x, y) in enumerate(zip(prompts, completions)):
        for prefix, text in (("x:", x), ("y:", y)):
            for w in words(text.lower()):
                out[i, zlib.crc32((prefix + w).encode()) % dim] += 1.0
    return out / out.norm(dim=1, keepdim=True).clamp(min=1e-8)


def group_returns(p: torch.Tensor, rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft group returns R_g = sum_i p_ig R_i / N_g and masses pi_g = N_g / n, for p [n, K]."""
    mass = p.sum(0)
    returns = (p * rewards[:, None]).sum(0) / mass.clamp(min=1e-8)
    return returns, mass / p.shape[0]


def group_variance(p: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """Var_g(R_g) = sum_g pi_g (R_g - Rbar)^2, the mass-weighted between-group variance."""
    returns, share = group_returns(p, rewards)
    rbar = (share * returns).sum()
    return (share * (returns - rbar) ** 2).sum()


def variance_gradient(p: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """d Var_g(R_g) / d R_i = (2 / n) sum_g p_ig (R_g - Rbar), in closed form, [n]."""
    returns, share = group_returns(p, rewards)
    rbar = (share * returns).sum()
    return 2.0 / p.shape[0] * (p * (returns - rbar)).sum(1)


def advantage_weights(p: torch.Tensor, returns: torch.Tensor, rbar: float, alpha: float) -> torch.Tensor:
    """w_i = 1 - alpha * n * dVar/dR_i = 1 - 2 alpha (sum_g p_ig R_g - Rbar): the variance
    penalty as a per-sample weight on the reward advantage (module docstring)."""
    return 1.0 - 2.0 * alpha * ((p * returns).sum(1) - rbar)


def adaptive_kl(p_high: torch.Tensor, beta: float, c0: float, c1: float) -> torch.Tensor:
    """beta_i = beta * (c0 + c1 * p_phi(g_high | x_i, y_i))."""
    return beta * (c0 + c1 * p_high)


# ----------------------------------------------------------------------------- the classifier
class GroupClassifier:
    """p_phi(g | x, y) = softmax(W f(x, y) + b), K = 2, fitted to maximise ``group_variance``.
    Holds its own parameters, optimiser and buffer; uses no global random state."""

    def __init__(self, config: GroupConfig, seed: int, k: int = 2):
        import torch

        g = torch.Generator().manual_seed(seed)
        self.config = config
        self.weight = (0.1 * torch.randn(config.features, k, generator=g)).requires_grad_(True)
        self.bias = torch.zeros(k, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.weight, self.bias], lr=config.classifier_lr)
        self.buffer: list[tuple[torch.Tensor, torch.Tensor, list[str]]] = []  # (features, rewards, labels)

    def probs(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats @ self.weight + self.bias).softmax(-1)

    def push(self, feats: torch.Tensor, rewards: torch.Tensor, labels: list[str]) -> None:
        self.buffer = (self.buffer + [(feats, rewards.detach().float().cpu(), labels)])[-self.config.buffer_batches :]

    def buffered(self) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        import torch

        return (torch.cat([b[0] for b in self.buffer]), torch.cat([b[1] for b in self.buffer]),
                [label for b in self.buffer for label in b[2]])  # fmt: skip

    def fit(self) -> float:
        """``classifier_steps`` Adam steps of ascent on Var_g(R_g) over the buffer; returns it."""
        import torch

        feats, rewards, _ = self.buffered()
        for _ in range(self.config.classifier_steps):
            loss = -group_variance(self.probs(feats), rewards)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        with torch.no_grad():
            return float(group_variance(self.probs(feats), rewards))

    def state(self) -> dict:
        return {"weight": self.weight.detach().clone(), "bias": self.bias.detach().clone(),
                "optimizer": self.optimizer.state_dict(), "buffer": self.buffer}  # fmt: skip

    def load(self, state: dict) -> None:
        import torch

        with torch.no_grad():
            self.weight.copy_(state["weight"])
            self.bias.copy_(state["bias"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer = state["buffer"]


def oracle_probs(labels: Sequence[str], names: Sequence[str]):
    """One-hot memberships [n, len(names)] from the hidden labels (the oracle's 'groups')."""
    import torch

    p = torch.zeros(len(labels), len(names))
    for i, label in enumerate(labels):
        p[i, names.index(label)] = 1.0
    return p


# ----------------------------------------------------------------------------- the hooks
class GroupHooks:
    """The trainer's two per-sample hooks for one run (``kl_coefs``: ``rl.KLCoefFn``;
    ``weights``: ``rl.AdvantageWeightFn``). Each training step is computed once: push the batch
    into the buffer, fit the classifier (or read the hidden labels: oracle), then the weights,
    the KL coefficients and a line of ``group_metrics.jsonl``. The classifier's state is saved
    with the trainer's checkpoints (``group_state/step-N.pt``) so that a killed run resumes
    exactly, and at the end (``group_state/final.pt``)."""

    def __init__(self, config: GroupConfig, rl_config: RLConfig, out_dir: Path):
        self.config, self.rl, self.out_dir = config, rl_config, Path(out_dir)
        self.classifier = GroupClassifier(config, rl_config.seed)
        self.high = 0  # index of g_high
        self.next_step = 0
        self.cached: tuple[int, Any] | None = None

    def kl_coefs(self, batch: Batch):
        import torch

        _, betas = self._step(batch)
        if self.config.method in ("group", "no_variance", "oracle"):
            return betas
        return torch.full_like(batch.rewards, self.rl.beta)  # fixed beta, as plain RLOO

    def weights(self, batch: Batch):
        return self._step(batch)[0]

    def _step(self, batch: Batch):
        import torch

        if self.cached and self.cached[0] == batch.step:
            return self.cached[1]
        if batch.step != self.next_step:
            self._resume(batch.step)
        labels = [str(r.get(self.config.group_field, "")) for r in batch.records]
        feats = features([r["prompt"] for r in batch.records], batch.completions, self.config.features)
        self.classifier.push(feats, batch.rewards, labels)
        var = self.classifier.fit() if self.config.method != "oracle" else float("nan")
        with torch.no_grad():
            p, returns, rbar, p_high, var = self._memberships(feats, labels, var)
        weights = advantage_weights(p, returns, rbar, self.config.alpha)
        betas = adaptive_kl(p_high, self.rl.beta, self.config.c0, self.config.c1)
        used_betas = betas if self.config.method in ("group", "no_variance", "oracle") else torch.full_like(betas, self.rl.beta)
        used_weights = weights if self.config.method in ("group", "no_adaptive_kl", "oracle") else torch.ones_like(weights)
        self._log(batch, labels, p_high, used_weights, used_betas, returns, var)
        self.next_step = batch.step + 1
        self._save(self.next_step)
        self.cached = (batch.step, (weights, betas))
        return weights, betas

    def _memberships(self, feats, labels, var):
        """(p [n, K], group returns R_g, Rbar, p_high [n], Var) for the batch, from the
        classifier, or from the hidden labels for the oracle."""
        import torch

        buf_feats, buf_rewards, buf_labels = self.classifier.buffered()
        if self.config.method == "oracle":
            names = sorted(set(buf_labels))
            returns, share = group_returns(oracle_probs(buf_labels, names), buf_rewards)
            rbar = float((share * returns).sum())
            p = oracle_probs(labels, names)
            p_high = p @ (returns > rbar).float()
            return p, returns, rbar, p_high, float(group_variance(oracle_probs(buf_labels, names), buf_rewards))
        returns, share = group_returns(self.classifier.probs(buf_feats), buf_rewards)
        self.high = int(torch.argmax(returns))
        p = self.classifier.probs(feats)
        return p, returns, float((share * returns).sum()), p[:, self.high], var

    def _log(self, batch, labels, p_high, weights, betas, returns, var) -> None:
        from rsoup_lib.runs import append_metrics

        row: dict[str, Any] = {"step": batch.step, "variance": var, "returns": [float(r) for r in returns]}
        for name in sorted(set(labels)):
            idx = [i for i, label in enumerate(labels) if label == name]
            for key, values in (("reward", batch.rewards), ("p_high", p_high), ("weight", weights), ("beta", betas)):
                row[f"{key}/{name}"] = float(values.detach().cpu()[idx].mean())
        append_metrics(self.out_dir / METRICS_FILE, row)

    def _state_path(self, step: int) -> Path:
        return self.out_dir / STATE_DIR / f"step-{step}.pt"

    def _save(self, done: int) -> None:
        import torch

        from rsoup_lib.io import atomic_write_bytes

        every = self.rl.checkpoint_every
        path = self.out_dir / STATE_DIR / "final.pt" if done == self.rl.steps else None
        if path is None and every and done % every == 0:
            path = self._state_path(done)
        if path is not None:
            import io

            buf = io.BytesIO()
            torch.save({**self.classifier.state(), "high": self.high}, buf)
            atomic_write_bytes(path, buf.getvalue())

    def _resume(self, step: int) -> None:
        """Restore the classifier saved with the trainer's checkpoint at ``step``, and drop the
        log lines a killed run wrote past it."""
        import torch

        path = self._state_path(step)
        if not path.is_file():
            raise UserError(f"{self.out_dir} resumes at step {step} but has no {path.name} for its group classifier: "
                            "delete the folder and train again")  # fmt: skip
        state = torch.load(path, weights_only=False)
        self.classifier.load(state)
        self.high = state["high"]
        log = self.out_dir / METRICS_FILE
        if log.is_file():
            kept = [line for line in log.read_text().splitlines() if line and json.loads(line)["step"] < step]
            log.write_text("".join(line + "\n" for line in kept))
        self.next_step = step


# ----------------------------------------------------------------------------- training
def training_prompts(rl_config: RLConfig, config: GroupConfig) -> list[dict]:
    """The prompts of ``rl_config.prompt_split`` without those whose label is ``config.holdout``."""
    from rsoup_lib.prompts import load_prompts

    records = load_prompts(rl_config.prompt_split)
    labels = sorted({str(r.get(config.group_field)) for r in records})
    if any(config.group_field not in r for r in records):
        raise UserError(f"the {rl_config.prompt_split} prompts have no field {config.group_field!r}: "
                        "give --group-group-field one of their fields, e.g. group")  # fmt: skip
    if config.holdout and config.holdout not in labels:
        raise UserError(f"holdout {config.holdout!r} is not a value of {config.group_field!r}; the values are: {', '.join(labels)}")
    return [r for r in records if not config.holdout or str(r[config.group_field]) != config.holdout]


def train(rl_config: RLConfig, config: GroupConfig, out_dir: str | Path, *, progress: bool = True,
          num_threads: int | None = None, stop_at_step: int | None = None) -> Path:  # fmt: skip
    """One group-invariant (or plain, or ablated, or oracle) RLOO run into ``out_dir``, through
    ``rl.train`` and its hooks. ``out_dir/group_config.json`` records ``config``."""
    from rsoup_lib import rl
    from rsoup_lib.io import atomic_write_json

    config.validate()
    rl_config.validate()
    out = Path(out_dir)
    stored = out / "group_config.json"
    if stored.is_file() and json.loads(stored.read_text()) != asdict(config):
        raise UserError(f"--out {out} holds a run of another group config: train into a new --out")
    prompts = training_prompts(rl_config, config)
    rl.runs.check_run_folder(out, asdict(rl_config))
    fresh = not out.exists() or not any(out.iterdir())
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stored, asdict(config))
    hooks = GroupHooks(config, rl_config, out)
    try:
        return rl.train(rl_config, out, prompts=prompts, kl_coef_fn=hooks.kl_coefs,
                        advantage_weight_fn=hooks.weights if config.method in ("group", "no_adaptive_kl", "oracle") else None,
                        progress=progress, num_threads=num_threads, stop_at_step=stop_at_step)  # fmt: skip
    except UserError:  # as rl.train: a run that fails before its first checkpoint leaves nothing behind
        if fresh and rl.runs.latest_checkpoint(out) is None:
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise


def cached_train(rl_config: RLConfig, config: GroupConfig, progress: bool = False, num_threads: int | None = None) -> Path:
    """``train`` through the run cache (kind "group_rl"); returns the run folder."""
    from rsoup_lib.cache import cached_run
    from rsoup_lib.rl import cache_config

    key = {"rl": cache_config(rl_config), "group": asdict(config)}
    return cached_run("group_rl", key, lambda d: train(rl_config, config, d, progress=progress, num_threads=num_threads))


def read_group_metrics(run: str | Path) -> list[dict]:
    """The rows of a run's ``group_metrics.jsonl``, one per step."""
    path = Path(run) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def final_classifier(run: str | Path) -> tuple[GroupClassifier, int]:
    """The classifier a run ended with, and the index of its g_high."""
    import torch

    config = GroupConfig(**json.loads((Path(run) / "group_config.json").read_text()))
    state = torch.load(Path(run) / STATE_DIR / "final.pt", weights_only=False)
    clf = GroupClassifier(config, 0)
    clf.load(state)
    return clf, int(state["high"])


def p_high(run: str | Path, prompts: Sequence[str], completions: Sequence[str]):
    """p_phi(g_high | x, y) of the run's final classifier on (prompt, completion) pairs, numpy [n]."""
    import torch

    clf, high = final_classifier(run)
    with torch.no_grad():
        return clf.probs(features(prompts, completions, clf.config.features))[:, high].numpy()


# ----------------------------------------------------------------------------- the statistics
def group_means(scores, labels: Sequence[str], groups: Sequence[str]):
    """Mean score of every group in ``groups`` (numpy [len(groups)]); NaN for an absent group."""
    import numpy as np

    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels)
    return np.array([scores[labels == g].mean() if (labels == g).any() else np.nan for g in groups])


def worst_group(scores, labels: Sequence[str], groups: Sequence[str]) -> float:
    """min_g mean_{i in g} score_i over ``groups`` (the worst-group reward, hidden labels)."""
    return float(group_means(scores, labels, groups).min())


def worst_group_gap(a, b, labels: Sequence[str], groups: Sequence[str], n_boot: int = 1000, seed: int = 0):
    """worst_group(a) - worst_group(b) on the same prompts, with a paired bootstrap over prompts
    (each replicate resamples the same prompts, with their labels, for both policies)."""
    import numpy as np

    from rsoup_lib.stats import bootstrap

    codes = np.array([list(groups).index(x) if x in groups else -1 for x in labels], dtype=float)
    names = [str(i) for i in range(len(groups))]

    def stat(s):
        lab = [str(int(c)) for c in s[2]]
        return worst_group(s[0], lab, names) - worst_group(s[1], lab, names)

    return bootstrap(stat, [np.asarray(a, float), np.asarray(b, float), codes], n_boot=n_boot, seed=seed)


def group_gap(a, b, labels: Sequence[str], group: str):
    """Paired difference a - b over the prompts of one group."""
    import numpy as np

    from rsoup_lib.stats import paired_difference

    mask = np.asarray(labels) == group
    return paired_difference(np.asarray(a, float)[mask], np.asarray(b, float)[mask])


def seed_spread(per_seed: Sequence, labels: Sequence[str], groups: Sequence[str]) -> float:
    """How much the seeds of one method disagree: the standard deviation across seeds of each
    group's mean score, averaged over ``groups``."""
    import numpy as np

    means = np.stack([group_means(s, labels, groups) for s in per_seed])  # [seeds, groups]
    return float(means.std(0, ddof=1).mean())


def seed_spread_gap(base: Sequence, method: Sequence, labels: Sequence[str], groups: Sequence[str],
                    n_boot: int = 1000, seed: int = 0):  # fmt: skip
    """seed_spread(base) - seed_spread(method) (positive: the method is more stable across
    seeds), paired bootstrap over the prompts that every policy was evaluated on."""
    import numpy as np

    from rsoup_lib.stats import bootstrap

    if len(base) < 2 or len(method) < 2:
        from rsoup_lib.stats import undefined

        return undefined("stability across seeds needs at least two seeds of each method")
    codes = np.array([list(groups).index(x) if x in groups else -1 for x in labels], dtype=float)
    names = [str(i) for i in range(len(groups))]
    nb = len(base)

    def stat(s):
        lab = [str(int(c)) for c in s[-1]]
        return seed_spread(s[:nb], lab, names) - seed_spread(s[nb:-1], lab, names)

    arrays = [np.asarray(x, float) for x in (*base, *method)] + [codes]
    return bootstrap(stat, arrays, n_boot=n_boot, seed=seed)


def inferred_vs_hidden(run: str | Path, result, labels: Sequence[str], reward: str) -> list[dict]:
    """The run's final classifier on an evaluation's completions (``result.samples`` must hold
    every prompt), per hidden label: the mean p_phi(g_high | x, y), the share of samples in the
    hard group (p_high < 0.5) and the label's mean reward."""
    import numpy as np

    ph = p_high(run, [s["prompt"] for s in result.samples], [s["completion"] for s in result.samples])
    lab = np.asarray(labels[: len(ph)])
    scores = result.scores(reward)[: len(ph)]
    return [{"hidden group": g, "mean p_high": float(ph[lab == g].mean()), "share in hard group": float((ph[lab == g] < 0.5).mean()),
             "group's reward": float(scores[lab == g].mean())} for g in sorted(set(lab))]  # fmt: skip


def train_command(rl_config: RLConfig, config: GroupConfig, out: str) -> str:
    """The ``rsoup train`` command line that trains this run (flags for the fields that differ
    from their defaults, and always the method)."""
    from dataclasses import fields

    from rsoup_lib.rl import RLConfig

    parts = ["rsoup train"]
    for prefix, obj, cls in (("--", rl_config, RLConfig), ("--group-", config, GroupConfig)):
        for f in fields(cls):
            value = getattr(obj, f.name)
            if value != f.default or (cls is GroupConfig and f.name == "method"):
                flag = prefix + f.name.replace("_", "-")
                parts.append(flag if value is True else f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    return " ".join(parts + [f"--out {out}"])
