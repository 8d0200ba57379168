"""Comparing fronts: Pareto sets, 2-D hypervolume, and how far one front lies above another.

Every chapter ends on a question of the form "is front A better than front B?" (rewarded soups
vs MORL; the EMA anchor vs the SFT anchor; LITI vs a single run). The answers are computed here,
from the points, with each objective's direction given explicitly:

- ``pareto_mask(points, maximize)``: which points no other point dominates.
- ``hypervolume_2d(points, ref, maximize)``: the area dominated by the points and bounded by the
  reference point ``ref`` (larger is better); the usual scalar summary of a 2-objective front.
- ``staircase(points, x)`` and ``front_gap(a, b)``: for reward-vs-KL fronts (minimise KL,
  maximise reward), the best reward a front reaches within a KL budget,
  ``R_A(kappa) = max{ r_i : kl_i <= kappa }``, and the mean of ``R_A - R_B`` over the KL range
  both fronts cover: positive when A lies above B.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Point = Sequence[float]


def _oriented(points: Sequence[Point], maximize: Sequence[bool]) -> np.ndarray:
    """Points with every objective turned into one to maximise."""
    arr = np.asarray(points, dtype=float).reshape(len(points), -1)
    signs = np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    return arr * signs


def pareto_mask(points: Sequence[Point], maximize: Sequence[bool] = (True, True)) -> list[bool]:
    """True for the points that no other point dominates (>= everywhere, > somewhere)."""
    p = _oriented(points, maximize)
    mask = []
    for i in range(len(p)):
        others = np.delete(p, i, axis=0)
        dominated = np.any(np.all(others >= p[i], axis=1) & np.any(others > p[i], axis=1))
        mask.append(not bool(dominated))
    return mask


def hypervolume_2d(points: Sequence[Point], ref: Point, maximize: Sequence[bool] = (True, True)) -> float:
    """Area dominated by ``points`` and bounded by ``ref`` (two objectives).

    Points that do not improve on ``ref`` in both objectives add nothing."""
    p = _oriented(points, maximize)
    r = _oriented([ref], maximize)[0]
    p = p[np.all(p > r, axis=1)]
    if len(p) == 0:
        return 0.0
    p = p[np.argsort(-p[:, 0])]  # by the first objective, best first
    area, best_y = 0.0, r[1]
    for x, y in p:
        if y > best_y:
            area += (x - r[0]) * (y - best_y)
            best_y = y
    return float(area)


def staircase(points: Sequence[Point], x: Sequence[float]) -> np.ndarray:
    """For (kl, reward) points: the best reward reached at KL <= each x (NaN below the
    smallest KL of the front)."""
    p = np.asarray(points, dtype=float)
    out = []
    for xi in x:
        ok = p[:, 0] <= xi
        out.append(p[ok, 1].max() if ok.any() else np.nan)
    return np.asarray(out)


def front_gap(a: Sequence[Point], b: Sequence[Point], grid: int = 200) -> float:
    """Mean of R_A(kl) - R_B(kl) over the KL range both (kl, reward) fronts cover; positive
    when front A reaches more reward than front B at equal KL. NaN when the ranges don't meet."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    lo = max(a[:, 0].min(), b[:, 0].min())
    hi = min(a[:, 0].max(), b[:, 0].max())
    if not hi > lo:
        return float("nan")
    x = np.linspace(lo, hi, grid)
    return float(np.nanmean(staircase(a, x) - staircase(b, x)))


def distance_to_front(point: Point, front: Sequence[Point]) -> float:
    """Signed Euclidean distance from ``point`` to the polyline through ``front`` (points in
    order along the front, both objectives maximised): negative below/inside the front,
    positive above/outside it (the point dominates part of the front)."""
    q = np.asarray(point, dtype=float)
    f = np.asarray(front, dtype=float)
    best = np.inf
    for s, e in zip(f[:-1], f[1:]) if len(f) > 1 else [(f[0], f[0])]:
        d = e - s
        t = 0.0 if not d.any() else float(np.clip(np.dot(q - s, d) / np.dot(d, d), 0.0, 1.0))
        best = min(best, float(np.linalg.norm(q - (s + t * d))))
    dominates = any(np.all(q >= x) and np.any(q > x) for x in f)
    return best if dominates else -best
