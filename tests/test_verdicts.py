"""The shared verdict rule of the chapters."""

import math

import numpy as np
import pytest

from rsoup_lib.verdicts import judge, outcome, smooth


@pytest.mark.parametrize(
    "value, se, expected",
    [(0.05, 0.01, "holds"), (-0.05, 0.01, "opposite"), (0.015, 0.01, "not confirmed"),
     (-0.02, 0.01, "not confirmed"), (float("nan"), 0.01, "untested"), (None, 0.01, "untested")],
)
def test_outcome_uses_two_standard_errors(value, se, expected):
    assert outcome(value, se) == expected


def test_judge_sentences_name_the_claim_and_the_band():
    assert judge(0.1, 0.01, "A beats B").startswith("A beats B: the claim holds")
    assert "opposite" in judge(-0.1, 0.01, "A beats B")
    assert "(0.020)" in judge(0.0, 0.01, "A beats B")
    assert "untested" in judge(math.nan, 0.01, "A beats B")
    with pytest.raises(ValueError):
        outcome(0.1, -1.0)


def test_smooth_is_a_moving_average():
    np.testing.assert_allclose(smooth([0, 2, 4, 6], window=2), [1, 3, 5])
    np.testing.assert_allclose(smooth([1, 2], window=5), [1, 2])
