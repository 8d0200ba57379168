"""The shared verdict rule of the chapters."""

import math
import re

import numpy as np
import pytest

from rsoup_lib.stats import Estimate, undefined
from rsoup_lib.verdicts import OUTCOMES, VERDICT_PATTERN, Verdict, judge, outcome, smooth, verdict, verdict_table

# the pattern the book's tests grep executed chapters with
BOOK_REGEX = r"^Verdict \[([a-z0-9-]+)\]: (holds|opposite|not confirmed|untested)"


def est(value, se, note=""):
    return Estimate(value, se, value - 1.96 * se, value + 1.96 * se, 128, "paired", note)


@pytest.mark.parametrize(
    "value, se, expected",
    [(0.05, 0.01, "holds"), (-0.05, 0.01, "opposite"), (0.015, 0.01, "not confirmed"),
     (-0.02, 0.01, "not confirmed"), (float("nan"), 0.01, "untested"), (None, 0.01, "untested")],
)
def test_outcome_uses_two_standard_errors(value, se, expected):
    assert outcome(value, se) == expected
    if value is not None:
        assert outcome(est(value, se)) == expected


def test_outcome_rejects_a_bad_standard_error_and_ambiguous_calls():
    with pytest.raises(ValueError):
        outcome(0.1, -1.0)
    with pytest.raises(ValueError):
        outcome(0.1)
    with pytest.raises(ValueError):
        outcome(est(0.1, 0.01), 0.01)
    assert outcome(est(0.025, 0.01), k=3) == "not confirmed"


def test_judge_sentences_name_the_claim_and_the_band():
    assert judge(0.1, 0.01, "A beats B").startswith("A beats B: the claim holds")
    assert "opposite" in judge(-0.1, 0.01, "A beats B")
    assert "(0.020)" in judge(0.0, 0.01, "A beats B")
    assert "untested" in judge(math.nan, 0.01, "A beats B")
    assert judge(est(0.1, 0.01), "A beats B").startswith("A beats B: the claim holds")


def test_judge_names_the_real_cause_of_an_untested_claim():
    """Regression: every NaN used to be blamed on 'the curves share no KL range'."""
    generic = judge(math.nan, 0.01, "A beats B")
    assert "KL range" not in generic and "nothing was measured" in generic
    assert "(no LMC run)" in judge(math.nan, 0.01, "A beats B", why="no LMC run")
    fronts = undefined("the fronts share no KL range")
    assert "(the fronts share no KL range)" in judge(fronts, "A beats B")
    assert "(nothing was measured)" in judge(undefined(""), "A beats B")


@pytest.mark.parametrize(
    "e, expected",
    [(est(0.097, 0.021), "holds"), (est(-0.097, 0.021), "opposite"), (est(0.01, 0.021), "not confirmed"),
     (undefined("the fronts share no KL range", 128, "bootstrap"), "untested")],
)
def test_verdict_line_format(e, expected):
    v = verdict("ema-anchor", "the EMA anchor's front lies above the SFT anchor's", e,
                "paired bootstrap over 128 prompts")
    assert v.outcome == expected
    for text in (str(v), v._repr_markdown_()):
        assert "\n" not in text
        m = re.match(BOOK_REGEX, text)
        assert m and m.groups() == ("ema-anchor", expected)
        assert VERDICT_PATTERN.match(text)
        assert text.endswith("; paired bootstrap over 128 prompts)")
        assert "the EMA anchor's front lies above the SFT anchor's" in text
    if expected == "untested":
        assert "the fronts share no KL range" in str(v)
    else:
        assert str(e) in str(v) and "95% interval [" in str(v)


def test_verdict_line_example():
    e = Estimate(0.097, 0.021, 0.055, 0.139, 128, "bootstrap")
    v = verdict("ema-anchor", "the EMA anchor's front lies above the SFT anchor's", e, "paired bootstrap over 128 prompts")
    assert str(v) == (
        "Verdict [ema-anchor]: holds — the EMA anchor's front lies above the SFT anchor's "
        "(+0.097 ± 0.021, 95% interval [+0.055, +0.139]; paired bootstrap over 128 prompts)"
    )


def test_verdict_validates_its_fields():
    with pytest.raises(ValueError):
        verdict("EMA anchor", "c", est(0.1, 0.01), "s")
    with pytest.raises(ValueError):
        Verdict("x", "c", est(0.1, 0.01), "maybe", "s")
    with pytest.raises(TypeError):
        verdict("x", "c", 0.1, "s")
    assert set(OUTCOMES) == {"holds", "opposite", "not confirmed", "untested"}


def test_verdict_table_has_one_row_per_verdict():
    vs = [verdict("a", "A | B", est(0.1, 0.01), "paired difference over 128 prompts"),
          verdict("b", "C", undefined("no run"), "bootstrap")]
    lines = verdict_table(vs).splitlines()
    assert lines[0] == "| claim | outcome | value ± se | 95% interval | statistic |"
    assert len(lines) == 4
    assert "| holds |" in lines[2] and "A \\| B" in lines[2] and "+0.100 ± 0.010" in lines[2]
    assert "| untested |" in lines[3] and "no run" in lines[3]


def test_smooth_is_a_moving_average():
    np.testing.assert_allclose(smooth([0, 2, 4, 6], window=2), [1, 3, 5])
    np.testing.assert_allclose(smooth([1, 2], window=5), [1, 2])


def test_a_verdict_whose_interval_disagrees_with_the_rule_says_it_is_borderline():
    from rsoup_lib.stats import Estimate
    from rsoup_lib.verdicts import verdict

    skewed = Estimate(0.027, 0.013, -0.003, 0.047, 128, "bootstrap")  # > 2 se, but the interval holds 0
    assert "borderline: the interval includes 0" in str(verdict("x", "claim", skewed, "bootstrap"))
    clear = Estimate(0.05, 0.01, 0.03, 0.07, 128, "bootstrap")
    assert "borderline" not in str(verdict("x", "claim", clear, "bootstrap"))
    inside = Estimate(0.019, 0.01, 0.001, 0.04, 128, "bootstrap")  # within 2 se, interval above 0
    assert "borderline: the interval excludes 0" in str(verdict("x", "claim", inside, "bootstrap"))
