"""The helpers chapter 2 (rewarded soups) adds to rsoup_lib.chapter and rsoup_lib.figures."""

import math

import numpy as np
import pytest
import torch

from rsoup_lib import chapter, figures
from rsoup_lib.stats import Estimate, hypervolume
from rsoup_lib.verdicts import verdict


def point(x, y, n=6):
    return np.stack([np.full(n, float(x)), np.full(n, float(y))], axis=1)


def test_hv_reference_is_below_every_point_by_a_margin_of_the_range():
    a, b = [point(0, 1), point(1, 0)], [point(0.5, 0.5), point(2, -1)]
    ref = chapter.hv_reference([a, b], margin=0.1)
    assert ref == pytest.approx((0 - 0.2, -1 - 0.2))
    # every point adds area: the extreme ones too
    assert hypervolume([point(2, -1)], ref, n_boot=10).value > 0
    assert chapter.hv_reference([[point(1, 1)]], margin=0.1) == pytest.approx((0.9, 0.9))
    assert chapter.hv_reference([a], margin=0.1, maximize=(False, True)) == pytest.approx((1.1, -0.1))


def test_relative_difference_of_tensor_dicts():
    b = {"w": torch.tensor([3.0, 4.0]), "v": torch.zeros(2)}
    a = {"w": torch.tensor([3.0, 4.0]), "v": torch.tensor([0.0, 0.5])}
    assert chapter.relative_difference(a, b) == pytest.approx(0.1)
    assert chapter.relative_difference(b, b) == 0.0
    z = {"w": torch.zeros(2)}
    assert chapter.relative_difference(z, z) == 0.0
    assert math.isinf(chapter.relative_difference({"w": torch.ones(2)}, z))


def test_compare_with_paper_follows_the_outcome():
    readings = {"holds": "the soup is above", "not confirmed": "no difference", "opposite": "the soup is below"}
    up = verdict("x", "claim", Estimate(1.0, 0.1, 0.8, 1.2, 8, "paired"), "s")
    flat = verdict("x", "claim", Estimate(0.1, 0.1, -0.1, 0.3, 8, "paired"), "s")
    nan = float("nan")
    none = verdict("x", "claim", Estimate(nan, nan, nan, nan, 8, "bootstrap", "no overlap"), "s")
    assert chapter.compare_with_paper(up, "P", ["holds"], readings).endswith("the soup is above, so this build agrees with it.")
    assert "does not agree" in chapter.compare_with_paper(flat, "P", ["holds"], readings)
    assert "cannot say: no overlap" in chapter.compare_with_paper(none, "P", ["holds"], readings)
    assert "+1.000 ± 0.100 is more than two standard errors above zero" in chapter.compare_with_paper(up, "P", ["holds"])


def fake_result(**means):
    from rsoup_lib.evaluate import EvalResult

    return EvalResult(n=2, seed=1, rewards={k: {"mean": v, "stderr": 0.1} for k, v in means.items()}, kl_to_sft=1.234,
                      kl_to_sft_stderr=0.2, distinct_1=1, distinct_2=1, repetition=0, empty_rate=0, mean_words=7.25)  # fmt: skip


def test_ternary_and_lmc_figures():
    w = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    res = [fake_result(alpha=0.1 * i, beta=i, gamma=0) for i in range(3)]
    fig = figures.ternary("t", w, res, ["alpha", "beta", "gamma"], ring=[True, False, False])
    assert len(fig.data) == 3 and fig.layout.ternary2.caxis.title.text == "gamma"
    assert list(fig.data[1].marker.color) == [0, 1, 2] and list(fig.data[0].marker.line.width) == [2.5, 0, 0]
    gap = Estimate(0.1, 0.02, 0.06, 0.14, 8, "paired")
    fig = figures.lmc("t", [0, 0.5, 1], {"a": ([0, 2, 1], [0.1] * 3, [gap] * 3), "b": ([1, 1, 1], [0.1] * 3, [gap] * 3)})
    assert len(fig.data) == 6 and list(fig.data[1].y) == [0, 0.5, 1]  # the chord between the endpoints
    assert fig.data[2].type == "bar" and list(fig.data[2].error_y.array) == [0.02] * 3

