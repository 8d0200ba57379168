"""The chapter-3 helpers of rsoup_lib/chapter.py and rsoup_lib/figures.py (WARP)."""

import math

import numpy as np
import pytest
import torch

from rsoup_lib import chapter, figures
from rsoup_lib.evaluate import EvalResult
from rsoup_lib.stats import Estimate
from rsoup_lib.verdicts import VERDICT_PATTERN, verdict


def result(n=4, seed=1, kl=0.0):
    return EvalResult(n=n, seed=seed, rewards={"sentiment": {"mean": 0.1, "stderr": 0.01}}, kl_to_sft=kl,
                      kl_to_sft_stderr=0.0, distinct_1=1.0, distinct_2=1.0, repetition=0.0, empty_rate=0.0,
                      mean_words=3.0, per_prompt={"sentiment": [0.1] * n}, kl_per_prompt=[kl] * n)  # fmt: skip


def test_eval_result_comes_back_from_a_front_points_dict():
    r = result(kl=0.5)
    back = chapter.eval_result({"eta": 0.3, **r.to_dict()})
    assert back == r
    assert chapter.per_prompt(back, ["kl", "sentiment"]).shape == (4, 2)


class _Config:
    eval_prompts, eval_seed = 4, 1


def test_liti_front_reuses_the_sft_evaluation_at_eta_zero(monkeypatch):
    import rsoup_lib.warp as warp

    asked = []

    def fake_front(config, slerp_policy, etas):
        asked.append(tuple(etas))
        return [{"eta": e, **result(kl=e).to_dict()} for e in etas]

    monkeypatch.setattr(warp, "evaluate_front", fake_front)
    sft = result(kl=0.0)
    points = chapter.liti_front(_Config(), "cache:x/slerp", [0.0, 0.5, 1.0], at_zero=sft)
    assert asked == [(0.5, 1.0)]  # eta = 0 is not evaluated again
    assert points[0] is sft and [p.kl_to_sft for p in points[1:]] == [0.5, 1.0]
    asked.clear()
    assert [p.kl_to_sft for p in chapter.liti_front(_Config(), "s", [0.0, 1.0])] == [0.0, 1.0]
    assert asked == [(0.0, 1.0)]
    with pytest.raises(ValueError, match="pair by prompt"):
        chapter.liti_front(_Config(), "s", [0.0, 1.0], at_zero=result(n=8))


def test_angles_per_tensor_and_whole_model_cosine():
    a = {"w": torch.tensor([1.0, 0.0]), "v": torch.tensor([1.0, 1.0]), "z": torch.zeros(2)}
    b = {"w": torch.tensor([0.0, 2.0]), "v": torch.tensor([3.0, 3.0]), "z": torch.ones(2)}
    assert chapter.angles_per_tensor(a, b) == pytest.approx([90.0, 0.0])  # "z" is zero in a: no angle
    assert chapter.whole_model_cosine({"w": a["w"]}, b) == pytest.approx(0.0)
    assert math.isnan(chapter.whole_model_cosine({"z": a["z"]}, b))


def test_lerp_norm_formula_and_measured_norms_of_orthogonal_task_vectors():
    assert chapter.lerp_norm_ratio(1.0, 0.5) == pytest.approx(1.0)
    assert chapter.lerp_norm_ratio(0.0, 0.5) == pytest.approx(math.sqrt(0.5))
    init = {"w": torch.zeros(3), "step": torch.tensor(1)}
    models = [{"w": torch.tensor([1.0, 0.0, 0.0]), "step": torch.tensor(1)},
              {"w": torch.tensor([0.0, 1.0, 0.0]), "step": torch.tensor(1)}]  # fmt: skip
    (d1,) = chapter.task_vectors(init, models[:1])
    assert list(d1) == ["w"]  # integer tensors are not part of a task vector
    lams = [0.0, 0.25, 0.5, 1.0]
    norms = chapter.merged_norms(init, models, lams)
    assert norms["slerp"] == pytest.approx([1.0] * 4)  # SLERP keeps the norm
    assert norms["lerp"] == pytest.approx([chapter.lerp_norm_ratio(0.0, lam) for lam in lams])


def test_agreement_follows_the_outcome():
    def v(value, se, note=""):
        return verdict("x-y", "A beats B", Estimate(value, se, value - 2 * se, value + 2 * se, 10, "paired", note), "s")

    assert "agrees" in chapter.agreement(v(1.0, 0.1), "The paper says A beats B")
    assert "disagrees" in chapter.agreement(v(-1.0, 0.1), "p")
    assert "within two standard errors" in chapter.agreement(v(0.1, 0.1), "p")
    untested = chapter.agreement(v(float("nan"), float("nan"), note="no common KL range"), "p")
    assert "could not test" in untested and "no common KL range" in untested
    assert chapter.agreement(v(1.0, 0.1), "The paper says A beats B").startswith("The paper says A beats B; ")


def test_show_verdict_prints_one_verdict_line(monkeypatch):
    shown = []
    monkeypatch.setattr(chapter, "markdown", shown.append)
    chapter.show_verdict(verdict("x-y", "A beats B", Estimate(1.0, 0.1, 0.8, 1.2, 10, "paired"), "s"), "p")
    lines = [l for l in shown[0].splitlines() if VERDICT_PATTERN.match(l)]
    assert len(lines) == 1 and lines[0].startswith("Verdict [x-y]: holds")


def test_training_path_draws_the_smoothed_metrics():
    rows = [{"kl_sft": float(i), "reward": float(2 * i)} for i in range(12)]
    fig = figures.training_path(figures.new("t", "x", "y"), rows, "run", window=10)
    (trace,) = fig.data
    assert trace.mode == "lines" and len(trace.x) == 3
    assert np.allclose(trace.x, [4.5, 5.5, 6.5]) and np.allclose(trace.y, [9.0, 11.0, 13.0])


def test_tensor_angles_skip_tensors_a_run_did_not_move():
    init = {"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([5.0, 0.0])}
    m1 = {"a": torch.tensor([2.0, 1.0]), "b": torch.tensor([5.0, 0.0])}  # b unchanged
    m2 = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([5.0, 1.0])}
    angles = chapter.tensor_angles(init, [m1, m2])
    assert angles["task vectors"] == pytest.approx([90.0])
    assert angles["weights"] == pytest.approx([math.degrees(math.acos(4 / 5))])
    assert math.isnan(chapter.lerp_norm_ratio(float("nan"), 0.5))


def test_chapter_3_figures_have_their_panels_and_axis_titles():
    res = [result(kl=k) for k in (0.0, 0.5, 1.0)]
    fig = figures.merges_by_lambda("t", [0, 0.5, 1], {"slerp": res, "lerp": res}, "sentiment")
    assert len(fig.data) == 6 and sum(t.showlegend is not False for t in fig.data) == 2
    assert fig.layout.xaxis3.title.text == figures.KL_AXIS and fig.layout.yaxis2.title.text == figures.KL_AXIS
    fig = figures.task_vector_geometry([0, 1], {"slerp": [1, 1], "lerp": [1, 1]}, [1, 1], {"task vectors": [80.0], "weights": [2.0]})
    assert [t.type for t in fig.data] == ["scatter"] * 3 + ["histogram"] * 2
    assert fig.layout.xaxis2.title.text == "angle (degrees)"
