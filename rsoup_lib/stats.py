"""The statistics every verdict of the book is judged with.

Every policy is evaluated on the same held-out prompts with the same sampling seed (common
random numbers), and evaluation returns per-prompt scores. A verdict must use the uncertainty of
the statistic it actually tests, so every function here takes the per-prompt scores and returns
an ``Estimate`` (value, standard error, ~95 % interval):

- scalars: ``mean``, ``paired_difference`` (the right one for two policies on the same prompts),
  ``unpaired_difference`` (for contrast only: it ignores the pairing), ``lmc_gap`` and
  ``lmc_mean_gap`` (linear mode connectivity);
- fronts: a *point* is a 2-D array of shape [n_prompts, n_objectives] (rows aligned: row i is
  prompt i for every point), its position the column means; a *front* a list of such points.
  ``front_gap``, ``hypervolume``, ``hypervolume_difference`` and ``distance_to_front`` apply the
  ``rsoup_lib.pareto`` function to the mean points and take their uncertainty from a paired
  ``bootstrap`` over prompts: every replicate resamples the SAME prompt indices for every point
  of every front involved.

Normal-theory estimates report ``value ± 1.96 se``; bootstrap estimates the 2.5 / 97.5
percentiles of the replicates. Everything is numpy only, deterministic given ``seed``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from rsoup_lib import pareto

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


@dataclass(frozen=True)
class Estimate:
    """A number with its uncertainty: ``value``, standard error ``se``, a ~95 % interval
    ``[lo, hi]``, the number of prompts ``n`` it rests on, the ``method`` ("mean", "paired",
    "unpaired", "bootstrap") and a ``note`` (why a value is NaN, or a caveat)."""

    value: float
    se: float
    lo: float
    hi: float
    n: int
    method: str
    note: str = ""

    def decimals(self) -> int:
        """Decimals that show two significant digits of the standard error (at least 3)."""
        if not (math.isfinite(self.se) and self.se > 0):
            return 3
        return int(min(8, max(3, 1 - math.floor(math.log10(self.se)))))

    def format_value(self, x: float) -> str:
        """``x`` with a sign and ``self.decimals()`` decimals."""
        return f"{x:+.{self.decimals()}f}"

    def interval(self) -> str:
        """``[lo, hi]`` formatted like the value."""
        return f"[{self.format_value(self.lo)}, {self.format_value(self.hi)}]"

    def __str__(self) -> str:
        if math.isnan(self.value):
            return f"NaN ({self.note})" if self.note else "NaN"
        return f"{self.format_value(self.value)} ± {self.se:.{self.decimals()}f}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _normal(value: float, se: float, n: int, method: str, note: str = "") -> Estimate:
    """An estimate with the normal-theory interval value ± 1.96 se."""
    value, se = float(value), float(se)
    return Estimate(value, se, value - Z95 * se, value + Z95 * se, int(n), method, note)


def undefined(note: str, n: int = 0, method: str = "none") -> Estimate:
    """A NaN estimate that says why (``note``); judged "untested" by the verdict rule."""
    nan = float("nan")
    return Estimate(nan, nan, nan, nan, int(n), method, note)


def _scores(x, name: str) -> np.ndarray:
    """Per-prompt scores as a 1-D float array of at least 2 finite values."""
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{name} must be per-prompt scores (1-D), got shape {a.shape}")
    if len(a) < 2:
        raise ValueError(f"{name} needs at least 2 prompts for a standard error, got {len(a)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite scores")
    return a


def _same_prompts(arrays: Sequence[np.ndarray], names: Sequence[str]) -> int:
    """The common number of prompts (first dimension); ValueError naming the culprits."""
    ns = {name: len(a) for a, name in zip(arrays, names)}
    if len(set(ns.values())) > 1:
        listed = ", ".join(f"{k}: {v}" for k, v in ns.items())
        raise ValueError(f"per-prompt arrays must cover the same prompts, got lengths {listed}")
    return next(iter(ns.values()))


def mean(x) -> Estimate:
    """Mean over prompts: value = mean(x), se = std(x, ddof=1) / sqrt(n)."""
    x = _scores(x, "x")
    return _normal(x.mean(), x.std(ddof=1) / math.sqrt(len(x)), len(x), "mean")


def paired_difference(a, b) -> Estimate:
    """Mean of a - b over the same prompts: d_i = a_i - b_i, value = mean(d),
    se = std(d, ddof=1) / sqrt(n). The prompt-to-prompt variation shared by a and b cancels."""
    a, b = _scores(a, "a"), _scores(b, "b")
    _same_prompts([a, b], ["a", "b"])
    e = mean(a - b)
    return dataclasses.replace(e, method="paired")


def unpaired_difference(a, b) -> Estimate:
    """mean(a) - mean(b) as if a and b came from different prompts: se = sqrt(se_a^2 + se_b^2).
    For contrast only: on common prompts it ignores the covariance, so it overstates the
    uncertainty when the two policies' per-prompt scores are positively correlated (the usual
    case) and understates it when they are negatively correlated."""
    ea, eb = mean(_scores(a, "a")), mean(_scores(b, "b"))
    return _normal(ea.value - eb.value, math.hypot(ea.se, eb.se), min(ea.n, eb.n), "unpaired")


def _as_samples(samples) -> list[np.ndarray]:
    arrays = [samples] if isinstance(samples, np.ndarray) else list(samples)
    if not arrays:
        raise ValueError("bootstrap needs at least one per-prompt array")
    arrays = [np.asarray(s, dtype=float) for s in arrays]
    if any(s.ndim == 0 for s in arrays):
        raise ValueError("bootstrap samples must be arrays indexed by prompt along their first axis")
    n = _same_prompts(arrays, [f"samples[{i}]" for i in range(len(arrays))])
    if n < 2:
        raise ValueError(f"bootstrap needs at least 2 prompts, got {n}")
    return arrays


def bootstrap(
    statistic: Callable[[list[np.ndarray]], float],
    samples,
    n_boot: int = 1000,
    seed: int = 0,
    nan_note: str = "the statistic is undefined on these data",
) -> Estimate:
    """Paired bootstrap over prompts.

    ``samples`` is a list of arrays sharing their first dimension (prompts; one array is also
    accepted). Replicate b draws ONE index vector I_b of n prompts with replacement and
    evaluates ``statistic([s[I_b] for s in samples])``, so every array is resampled on the same
    prompts. value = statistic(samples); se = std of the replicates (ddof=1);
    [lo, hi] = their 2.5 / 97.5 percentiles. NaN replicates are ignored (the note says how many);
    if the full-data value is NaN, or more than half the replicates are, the estimate is NaN
    with ``nan_note`` as its note. Deterministic given ``seed`` (numpy Generator)."""
    arrays = _as_samples(samples)
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    n = len(arrays[0])
    value = float(statistic(arrays))
    if math.isnan(value):
        return undefined(nan_note, n, "bootstrap")
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        reps[b] = statistic([s[idx] for s in arrays])
    ok = reps[~np.isnan(reps)]
    missing = n_boot - len(ok)
    if len(ok) < 2 or missing > n_boot / 2:
        return undefined(f"{nan_note} ({missing} of {n_boot} bootstrap replicates undefined)", n, "bootstrap")
    note = f"{missing} of {n_boot} bootstrap replicates undefined and ignored" if missing else ""
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return Estimate(value, float(ok.std(ddof=1)), float(lo), float(hi), n, "bootstrap", note)


def lmc_gap(soup, end0, end1, lam: float) -> Estimate:
    """Linear-mode-connectivity gap at one lambda, paired over prompts:
    g_i = soup_i - ((1 - lam) end0_i + lam end1_i). Positive when the soup beats the straight
    line between the endpoints' scores (no barrier)."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    soup, end0, end1 = _scores(soup, "soup"), _scores(end0, "end0"), _scores(end1, "end1")
    _same_prompts([soup, end0, end1], ["soup", "end0", "end1"])
    return paired_difference(soup, (1 - lam) * end0 + lam * end1)


def lmc_mean_gap(soups: Sequence, end0, end1, lams: Sequence[float]) -> Estimate:
    """Mean LMC gap over the interior lambdas (0 < lam < 1; at 0 and 1 the gap is 0 by
    construction), paired over prompts. The lambda points share their prompts, so they are not
    independent: per prompt, G_i = mean_j g_ij with g_ij = soup_j,i - ((1 - lam_j) end0_i +
    lam_j end1_i); value = mean(G), se = std(G, ddof=1) / sqrt(n)."""
    if len(soups) != len(lams):
        raise ValueError(f"one soup per lambda: got {len(soups)} soups and {len(lams)} lambdas")
    end0, end1 = _scores(end0, "end0"), _scores(end1, "end1")
    interior = [(s, lam) for s, lam in zip(soups, lams) if 0.0 < lam < 1.0]
    if not interior:
        return undefined("no interior lambda (0 < λ < 1) to measure a gap at", len(end0), "paired")
    gaps = []
    for j, (s, lam) in enumerate(interior):
        s = _scores(s, f"soups[{j}]")
        _same_prompts([s, end0, end1], [f"soups[{j}]", "end0", "end1"])
        gaps.append(s - ((1 - lam) * end0 + lam * end1))
    return dataclasses.replace(mean(np.mean(gaps, axis=0)), method="paired")


# --- fronts ----------------------------------------------------------------------------------


def _front(front, name: str, width: int | None = 2) -> list[np.ndarray]:
    """A front as a list of [n_prompts, n_objectives] arrays with the same shape."""
    points = [np.asarray(p, dtype=float) for p in front]
    if not points:
        raise ValueError(f"{name} has no points")
    for i, p in enumerate(points):
        if p.ndim != 2 or (width is not None and p.shape[1] != width):
            want = f"[n_prompts, {width}]" if width else "[n_prompts, n_objectives]"
            raise ValueError(f"{name}[{i}] must be per-prompt samples of shape {want}, got {p.shape}")
        if not np.all(np.isfinite(p)):
            raise ValueError(f"{name}[{i}] contains NaN or infinite scores")
    n = _same_prompts(points, [f"{name}[{i}]" for i in range(len(points))])
    if n < 2:
        raise ValueError(f"{name} needs at least 2 prompts, got {n}")
    return points


def positions(front) -> np.ndarray:
    """The mean points of a front: array [n_points, n_objectives] of column means."""
    return np.stack([p.mean(axis=0) for p in _front(front, "front", width=None)])


def _check_shared(fronts: dict[str, list[np.ndarray]]) -> None:
    firsts = {name: pts[0] for name, pts in fronts.items()}
    _same_prompts(list(firsts.values()), list(firsts))


def front_gap(front_a, front_b, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """``pareto.front_gap`` of the mean points of two (kl, reward) fronts (mean of
    R_A(kl) - R_B(kl) over the KL range both cover; positive when A lies above B), with a
    paired bootstrap over prompts: each replicate resamples the same prompts for every point of
    both fronts and recomputes the means and the gap; replicates whose fronts share no KL range
    are ignored."""
    return _bootstrap_pair(front_a, front_b, pareto.front_gap, n_boot, seed, nan_note="the fronts share no KL range")


def _bootstrap_pair(front_a, front_b, statistic, n_boot: int, seed: int, **kw) -> Estimate:
    """``statistic(mean points of A, mean points of B)`` with a paired bootstrap over prompts
    (the same prompts resampled for every point of both fronts)."""
    a, b = _front(front_a, "front_a"), _front(front_b, "front_b")
    _check_shared({"front_a": a, "front_b": b})
    k = len(a)

    def stat(s: list[np.ndarray]) -> float:
        m = [p.mean(axis=0) for p in s]
        return statistic(m[:k], m[k:])

    return bootstrap(stat, a + b, n_boot, seed, **kw)


def hypervolume(front, ref, maximize: Sequence[bool] = (True, True), n_boot: int = 1000, seed: int = 0) -> Estimate:
    """``pareto.hypervolume_2d`` of the front's mean points against the fixed reference ``ref``,
    with a paired bootstrap over prompts (every point resampled on the same prompts)."""
    pts = _front(front, "front")
    return bootstrap(lambda s: pareto.hypervolume_2d([p.mean(axis=0) for p in s], ref, maximize), pts, n_boot, seed)


def hypervolume_difference(
    front_a, front_b, ref, maximize: Sequence[bool] = (True, True), n_boot: int = 1000, seed: int = 0
) -> Estimate:
    """HV(A) - HV(B) of the mean points against the same fixed ``ref``, with a paired bootstrap
    over prompts (the same prompts for every point of both fronts); positive when A dominates
    more area."""
    def diff(a, b) -> float:
        return pareto.hypervolume_2d(a, ref, maximize) - pareto.hypervolume_2d(b, ref, maximize)

    return _bootstrap_pair(front_a, front_b, diff, n_boot, seed)


def distance_to_front(
    point, front, maximize: Sequence[bool] = (True, True), n_boot: int = 1000, seed: int = 0
) -> Estimate:
    """``pareto.distance_to_front`` of the point's mean to the polyline of the front's mean
    points (positive beyond the front, negative behind it), with the point and the front
    bootstrapped jointly on the same prompts."""
    (q,) = _front([point], "point")
    f = _front(front, "front")
    _check_shared({"point": [q], "front": f})

    def dist(s: list[np.ndarray]) -> float:
        return pareto.distance_to_front(s[0].mean(axis=0), [p.mean(axis=0) for p in s[1:]], maximize)

    return bootstrap(dist, [q] + f, n_boot, seed)


def mean_distance_to_front(
    points, front, maximize: Sequence[bool] = (True, True), n_boot: int = 1000, seed: int = 0
) -> Estimate:
    """Mean over ``points`` of ``pareto.distance_to_front`` (signed: positive beyond the front,
    negative behind it) of each point's mean to the polyline of the front's mean points, with
    every point and the front bootstrapped jointly on the same prompts. The points share their
    prompts, so their distances are not independent: the mean is recomputed per replicate
    rather than combined from separate standard errors (chapter 2: are the MORL policies
    beyond the rewarded-soup front?)."""
    qs, f = _front(points, "points"), _front(front, "front")
    _check_shared({"points": qs, "front": f})
    k = len(qs)

    def mean_dist(s: list[np.ndarray]) -> float:
        curve = [p.mean(axis=0) for p in s[k:]]
        return float(np.mean([pareto.distance_to_front(q.mean(axis=0), curve, maximize) for q in s[:k]]))

    return bootstrap(mean_dist, qs + f, n_boot, seed)
