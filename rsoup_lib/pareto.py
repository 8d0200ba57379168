"""Comparing fronts: Pareto sets, 2-D hypervolume, and how far one front lies above another.

Every chapter ends on a question of the form "is front A better than front B?" (rewarded soups
vs MORL; the EMA anchor vs the SFT anchor; LITI vs a single run). The answers are computed here,
from the points (the *mean* points; ``rsoup_lib.stats`` adds the uncertainty over prompts), with
each objective's direction given explicitly by ``maximize``:

- ``pareto_mask(points, maximize)``: which points no other point dominates.
- ``front_polyline(points, maximize)``: the Pareto points only, sorted along the front: the
  piecewise-linear curve a front is drawn as.
- ``hypervolume_2d(points, ref, maximize)``: the area dominated by the points and bounded by the
  reference point ``ref`` (larger is better); the usual scalar summary of a 2-objective front.
- ``envelope(points, x)`` and ``front_gap(a, b)``: for reward-vs-KL fronts (minimise KL,
  maximise reward), the upper envelope ``R_A(kl)`` (Pareto points sorted by KL, linearly
  interpolated) and the mean of ``R_A - R_B`` over the KL range both fronts cover: positive
  when A lies above B.
- ``distance_to_front(point, front, maximize)``: signed Euclidean distance from a point to a
  front's curve: positive beyond the front, negative behind it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Point = Sequence[float]
KL_REWARD = (False, True)  # (kl, reward) points: minimise KL, maximise reward


def _oriented(points: Sequence[Point], maximize: Sequence[bool]) -> np.ndarray:
    """Points with every objective turned into one to maximise (a sign flip per column, which
    preserves Euclidean distances)."""
    arr = np.asarray(points, dtype=float).reshape(len(points), -1)
    signs = np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    return arr * signs


def pareto_mask(points: Sequence[Point], maximize: Sequence[bool] = (True, True)) -> list[bool]:
    """True for the points that no other point dominates (>= everywhere, > somewhere)."""
    p = _oriented(points, maximize)
    ge, gt = p[:, None, :] >= p[None, :, :], p[:, None, :] > p[None, :, :]
    dominates = ge.all(axis=2) & gt.any(axis=2)  # [j, i]: point j dominates point i
    return [not bool(d) for d in dominates.any(axis=0)]


def front_polyline(points: Sequence[Point], maximize: Sequence[bool] = (True, True)) -> np.ndarray:
    """The front as a curve: the Pareto-optimal points of two objectives, duplicates dropped,
    sorted by the first objective in increasing order (so along the front), shape [m, 2].

    Between consecutive vertices the second objective moves monotonically (it worsens as the
    first improves), so no point of the polyline dominates another."""
    if len(points) == 0:
        raise ValueError("a front needs at least one point")
    p = np.asarray(points, dtype=float).reshape(len(points), -1)
    if p.shape[1] != 2:
        raise ValueError(f"front_polyline is for two objectives, got points of width {p.shape[1]}")
    p = np.unique(p[np.asarray(pareto_mask(p, maximize))], axis=0)  # unique also sorts by column 0
    return p


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


def envelope(points: Sequence[Point], x: Sequence[float]) -> np.ndarray:
    """Upper envelope ``R(kl)`` of (kl, reward) points at each KL in ``x``: the Pareto points
    (KL minimised, reward maximised) sorted by KL and linearly interpolated; NaN outside
    ``[min kl, max kl]`` of those Pareto points. It is not a concave hull: a Pareto point below
    the chord of its neighbours stays a vertex (one policy cannot be mixed into another's KL)."""
    f = front_polyline(points, KL_REWARD)
    x = np.asarray(x, dtype=float)
    out = np.interp(x, f[:, 0], f[:, 1])
    return np.where((x >= f[0, 0]) & (x <= f[-1, 0]), out, np.nan)


def front_gap(a: Sequence[Point], b: Sequence[Point]) -> float:
    """Mean vertical distance between two (kl, reward) fronts at equal KL; positive when A
    lies above B.

    Each front is its upper envelope ``R(kl)`` (see ``envelope``: Pareto points with KL
    minimised and reward maximised, sorted by KL, linearly interpolated). With
    ``[lo, hi]`` the KL range both envelopes cover (lo = the larger of the two smallest KLs,
    hi = the smaller of the two largest KLs),

        gap = 1 / (hi - lo) * integral_lo^hi (R_A(kl) - R_B(kl)) dkl,

    computed exactly by the trapezoid rule on the grid of both fronts' vertices in
    ``[lo, hi]`` (both envelopes are linear between them). When the ranges touch in a single
    KL (lo == hi) the gap is ``R_A(lo) - R_B(lo)``; NaN when they do not overlap."""
    fa, fb = front_polyline(a, KL_REWARD), front_polyline(b, KL_REWARD)
    lo, hi = max(fa[0, 0], fb[0, 0]), min(fa[-1, 0], fb[-1, 0])
    if not hi >= lo:
        return float("nan")
    if hi == lo:
        return float(np.interp(lo, fa[:, 0], fa[:, 1]) - np.interp(lo, fb[:, 0], fb[:, 1]))
    x = np.concatenate([[lo, hi], fa[:, 0], fb[:, 0]])
    x = np.unique(x[(x >= lo) & (x <= hi)])
    d = np.interp(x, fa[:, 0], fa[:, 1]) - np.interp(x, fb[:, 0], fb[:, 1])
    return float(np.sum((d[1:] + d[:-1]) / 2 * np.diff(x)) / (hi - lo))


def _distance_to_piece(q: np.ndarray, start: np.ndarray, direction: np.ndarray, ray: bool) -> float:
    """Distance from q to the segment start + t * direction, t in [0, 1] (or t >= 0 for a ray)."""
    dd = float(np.dot(direction, direction))
    t = 0.0 if dd == 0 else float(np.dot(q - start, direction)) / dd
    t = max(t, 0.0) if ray else float(np.clip(t, 0.0, 1.0))
    return float(np.linalg.norm(q - (start + t * direction)))


def distance_to_front(point: Point, front: Sequence[Point], maximize: Sequence[bool] = (True, True)) -> float:
    """Signed Euclidean distance from ``point`` to the curve of a two-objective ``front``.

    Convention (both objectives maximised by default; ``maximize`` flips a column): the curve is
    ``front_polyline(front)`` (Pareto points only, sorted along the front) extended by the usual
    axis-parallel rays of a staircase at its two ends: from the vertex best in the second
    objective a ray parallel to the first objective's axis, towards worse values of the first;
    from the vertex best in the first objective a ray parallel to the second axis, towards worse
    values of the second. The magnitude is the Euclidean distance to this extended curve. The
    sign is

    - negative when some point of the polyline dominates ``point`` (it lies behind the front,
      including past an end but dominated by the end vertex);
    - positive when ``point`` is neither on nor dominated by the polyline, i.e. it weakly
      dominates some point of the extended curve (it lies beyond the front, between vertices
      or past an end);
    - zero on the curve.

    Example: for the front (0, 1), (1, 0), the point (0.6, 0.6) is at +0.2 / sqrt(2) and
    (-0.5, 0.5) is at -0.5 (dominated by (0, 1), nearest to the ray y = 1, x <= 0)."""
    f = _oriented(front_polyline(front, maximize), maximize)
    f = f[np.argsort(f[:, 0])]  # oriented: first objective increasing, second decreasing
    q = _oriented([point], maximize)[0]
    pieces = [(f[0], np.array([-1.0, 0.0]), True), (f[-1], np.array([0.0, -1.0]), True)]
    pieces += [(s, e - s, False) for s, e in zip(f[:-1], f[1:])]
    dist = min(_distance_to_piece(q, s, d, ray) for s, d, ray in pieces)
    # the best second objective the polyline reaches at a first objective >= q's (-inf past the end)
    height = -np.inf if q[0] > f[-1, 0] else float(np.interp(q[0], f[:, 0], f[:, 1]))
    return -dist if q[1] < height else dist
