"""Verdicts on the papers' claims, computed from the numbers a chapter measured.

Every chapter ends a stage with a sentence that says whether a claim held at our scale. The
rule is the same everywhere, so it lives here rather than in the notebooks: a signed difference
``value`` (positive when the claim's side wins) with standard error ``se`` (both usually from an
``rsoup_lib.stats.Estimate`` of the statistic actually tested)

    holds          value >  k * se
    opposite       value < -k * se
    not confirmed  |value| <= k * se
    untested       value is NaN (the estimate's note says why, e.g. the fronts share no KL range)

with k = 2 by default (about a 95 % two-sided band for a normal estimate).

A ``Verdict`` renders as one line that starts with ``Verdict [claim-id]: <outcome>``, e.g.

    Verdict [ema-anchor]: holds — the EMA anchor's front lies above the SFT anchor's
    (+0.097 ± 0.021, 95% interval [+0.055, +0.139]; paired bootstrap over 128 prompts)

(on one line), so that the book's tests can find every verdict of an executed chapter with
``VERDICT_PATTERN``; ``verdict_table`` lists a chapter's verdicts as a markdown table.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rsoup_lib.stats import Estimate

OUTCOMES = ("holds", "opposite", "not confirmed", "untested")
VERDICT_PATTERN = re.compile(r"^Verdict \[([a-z0-9-]+)\]: (holds|opposite|not confirmed|untested)")
_CLAIM_ID = re.compile(r"[a-z0-9-]+")
NOTHING_MEASURED = "nothing was measured"


def _value_se(value, se) -> tuple[float | None, float | None]:
    """(value, se) from either an Estimate or two numbers."""
    if isinstance(value, Estimate):
        if se is not None:
            raise ValueError("give either an Estimate or a value and its se, not both")
        return value.value, value.se
    return value, se


def outcome(value: float | Estimate | None, se: float | None = None, k: float = 2.0) -> str:
    """One of ``OUTCOMES`` for a signed difference ``value`` with standard error ``se``
    (or an ``Estimate`` in place of both): holds if value > k se, opposite if value < -k se,
    not confirmed in between, untested if value is NaN or None."""
    value, se = _value_se(value, se)
    if value is None or math.isnan(value):
        return "untested"
    if se is None or math.isnan(se) or se < 0:
        raise ValueError(f"a standard error must be >= 0, got {se}")
    if value > k * se:
        return "holds"
    if value < -k * se:
        return "opposite"
    return "not confirmed"


def judge(value, se=None, claim: str = "", k: float = 2.0, why: str | None = None) -> str:
    """The verdict as a sentence about ``claim`` (e.g. "SLERP gives more reward than LERP").

    Call as ``judge(value, se, claim)`` or ``judge(estimate, claim)``. An untested claim names
    its cause: ``why`` if given, else the Estimate's ``note``, else "nothing was measured"."""
    if isinstance(value, Estimate) and isinstance(se, str):
        se, claim = None, se
    note = value.note if isinstance(value, Estimate) else ""
    result = outcome(value, se, k)
    if result == "untested":
        cause = why or note or NOTHING_MEASURED
        return f"cannot be judged here ({cause}), so the claim that {claim} is untested"
    if result == "holds":
        return f"{claim}: the claim holds at this scale"
    if result == "opposite":
        return f"the opposite of the claim ({claim}) is what we measure: it does not hold at this scale"
    _, se = _value_se(value, se)
    return (
        f"the difference is within {k:g} standard errors ({k * se:.3f}), so the claim that {claim} "
        "is not confirmed at this scale"
    )


@dataclass(frozen=True)
class Verdict:
    """A claim judged from an estimate: ``claim_id`` (lower-case letters, digits and dashes),
    the ``claim`` (a sentence that is true when ``estimate.value`` > 0), the ``estimate``, the
    ``outcome`` (one of OUTCOMES) and ``statistic`` (what was computed, e.g. "paired difference
    over 128 prompts")."""

    claim_id: str
    claim: str
    estimate: Estimate
    outcome: str
    statistic: str

    def __post_init__(self):
        if not _CLAIM_ID.fullmatch(self.claim_id):
            raise ValueError(f"a claim id is lower-case letters, digits and dashes, got {self.claim_id!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"an outcome is one of {OUTCOMES}, got {self.outcome!r}")

    def measured(self) -> str:
        """value ± se and the interval, or the reason there is no value."""
        e = self.estimate
        if self.outcome == "untested":
            return f"not measured: {e.note or NOTHING_MEASURED}"
        return f"{e}, 95% interval {e.interval()}{self.borderline()}"

    def borderline(self) -> str:
        """A warning when the rule (value against 2 se) and the 95% interval disagree, as they can
        for a skewed bootstrap distribution: the reader sees both, and which way each points."""
        e = self.estimate
        excludes_zero = e.lo > 0 or e.hi < 0
        if self.outcome in ("holds", "opposite") and not excludes_zero:
            return "; borderline: the interval includes 0"
        if self.outcome == "not confirmed" and excludes_zero:
            return "; borderline: the interval excludes 0"
        return ""

    def __str__(self) -> str:
        line = f"Verdict [{self.claim_id}]: {self.outcome} — {self.claim} ({self.measured()}; {self.statistic})"
        return " ".join(line.split())  # one line, whatever the claim contains

    def _repr_markdown_(self) -> str:
        return str(self)

    def _repr_pretty_(self, p, cycle) -> None:  # IPython's text/plain
        p.text(str(self))


def verdict(claim_id: str, claim: str, estimate: Estimate, statistic: str, k: float = 2.0) -> Verdict:
    """Judge ``claim`` (true when the estimate is positive) by the rule of ``outcome``."""
    if not isinstance(estimate, Estimate):
        raise TypeError(f"verdict needs an rsoup_lib.stats.Estimate, got {type(estimate).__name__}")
    return Verdict(claim_id, claim, estimate, outcome(estimate, k=k), statistic)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def verdict_table(verdicts: Sequence[Verdict]) -> str:
    """A markdown table of verdicts: claim, outcome, value ± se, 95% interval, statistic."""
    rows = ["| claim | outcome | value ± se | 95% interval | statistic |", "|---|---|---|---|---|"]
    for v in verdicts:
        e = v.estimate
        untested = v.outcome == "untested"
        value = f"— ({e.note or NOTHING_MEASURED})" if untested else str(e)
        interval = "—" if untested else e.interval()
        cells = [f"{v.claim} [{v.claim_id}]", v.outcome, value, interval, v.statistic]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)


def smooth(values, window: int = 10) -> np.ndarray:
    """Moving average over ``window`` consecutive values (for noisy per-step training logs);
    the input unchanged when it is shorter than the window."""
    xs = np.asarray(values, dtype=float)
    return np.convolve(xs, np.ones(window) / window, mode="valid") if len(xs) >= window else xs
