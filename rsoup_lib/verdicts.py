"""Verdicts on the papers' claims, computed from the numbers a chapter measured.

Every chapter ends a stage with a sentence that says whether a claim held at our scale. The
rule is the same everywhere, so it lives here rather than in the notebooks: a signed difference
``value`` (positive when the claim's side wins) with standard error ``se``

    holds          value >  k * se
    opposite       value < -k * se
    not confirmed  |value| <= k * se
    untested       value is NaN (the curves share no range, or nothing was measured)

with k = 2 by default (about a 95 % two-sided band for a normal estimate).
"""

from __future__ import annotations

import math

import numpy as np

OUTCOMES = ("holds", "opposite", "not confirmed", "untested")


def outcome(value: float | None, se: float, k: float = 2.0) -> str:
    """One of ``OUTCOMES`` for a signed difference ``value`` with standard error ``se``."""
    if value is None or math.isnan(value):
        return "untested"
    if se < 0 or math.isnan(se):
        raise ValueError(f"a standard error must be >= 0, got {se}")
    if value > k * se:
        return "holds"
    if value < -k * se:
        return "opposite"
    return "not confirmed"


def judge(value: float | None, se: float, claim: str, k: float = 2.0) -> str:
    """The verdict as a sentence about ``claim`` (e.g. "SLERP gives more reward than LERP")."""
    result = outcome(value, se, k)
    if result == "untested":
        return f"cannot be judged here (the curves share no KL range), so the claim that {claim} is untested"
    if result == "holds":
        return f"{claim}: the claim holds at this scale"
    if result == "opposite":
        return f"the opposite of the claim ({claim}) is what we measure: it does not hold at this scale"
    return (
        f"the difference is within {k:g} standard errors ({k * se:.3f}), so the claim that {claim} "
        "is not confirmed at this scale"
    )


def smooth(values, window: int = 10) -> np.ndarray:
    """Moving average over ``window`` consecutive values (for noisy per-step training logs);
    the input unchanged when it is shorter than the window."""
    xs = np.asarray(values, dtype=float)
    return np.convolve(xs, np.ones(window) / window, mode="valid") if len(xs) >= window else xs
