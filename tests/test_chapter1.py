"""The chapter-1 helpers of rsoup_lib.chapter and rsoup_lib.figures (the chapter's tables,
figures and computed sentences), on hand-made inputs."""

import numpy as np
import pytest

from rsoup_lib import chapter, figures, hacking, rewards
from rsoup_lib.evaluate import EvalResult
from rsoup_lib.hacking import Finding


def test_smoothed_aligns_x_with_the_moving_average():
    x, y = figures.smoothed(range(10, 15), [0, 1, 2, 3, 4], window=3)
    assert x == [12, 13, 14]
    assert np.allclose(y, [1, 2, 3])
    # shorter than the window: unchanged
    assert figures.smoothed([1, 2], [5, 6], window=3) == ([1, 2], [5.0, 6.0])


def test_learning_curves_and_trajectories_plot_every_run_in_range():
    metrics = {
        "sentiment": {"step": list(range(12)), "reward/sentiment": np.linspace(-1, 1, 12), "kl_sft": np.arange(12.0)},
        "conciseness": {"step": list(range(12)), "reward/conciseness": np.linspace(0, 1, 12), "kl_sft": np.ones(12)},
    }
    fig = figures.learning_curves(metrics, window=3)
    assert [t.name for t in fig.data] == ["sentiment", "sentiment", "conciseness", "conciseness"]
    assert [t.showlegend for t in fig.data] == [True, False, True, False]
    traj = figures.kl_reward_trajectories(metrics, window=1)
    assert [t.name for t in traj.data] == ["sentiment", "conciseness"]
    for t in traj.data:  # rescaled by the reward's documented range
        assert min(t.y) == pytest.approx(0.0) and max(t.y) == pytest.approx(1.0)
    assert traj.data[0].text[-1] == "step 11"


def test_show_constant_reads_the_assignment_from_the_library(monkeypatch):
    shown = []
    monkeypatch.setattr(chapter, "markdown", shown.append)
    chapter.show_constant(hacking, "RULES", "thresholds")
    assert "rsoup_lib/hacking.py" in shown[0] and "thresholds" in shown[0]
    assert shown[0].count("Rule(") == len(hacking.RULES)
    chapter.show_constant(rewards, "CONCISE_WORDS")
    assert "CONCISE_WORDS = 48" in shown[1]
    with pytest.raises(ValueError, match="no 'NOPE'"):
        chapter.show_constant(rewards, "NOPE")


def _result(scores, kl):
    n = len(kl)
    return EvalResult(
        n=n, seed=1, rewards={r: {"mean": float(np.mean(s)), "stderr": 0.1} for r, s in scores.items()},
        kl_to_sft=float(np.mean(kl)), kl_to_sft_stderr=0.2, distinct_1=1.0, distinct_2=0.9, repetition=0.0,
        empty_rate=0.0, mean_words=12.5, per_prompt={r: list(s) for r, s in scores.items()}, kl_per_prompt=list(kl),
    )  # fmt: skip


def test_results_table_has_one_row_per_policy():
    results = {"sft": _result({"sentiment": [0.1, 0.3]}, [0.0, 0.0]),
               "sentiment": _result({"sentiment": [0.5, 0.7]}, [1.0, 2.0])}
    df = chapter.results_table(results, ["sentiment"])
    assert list(df.index) == ["sft", "sentiment"]
    assert df.loc["sentiment", "sentiment"] == "+0.600 ± 0.100"
    assert df.loc["sentiment", "KL to SFT"] == "1.50 ± 0.20"


def test_findings_and_counts_read_as_sentences():
    example = {"prompt": "Review a film.", "completion": " "}
    f = Finding("conciseness", "empty answers", "answers nearly nothing", example)
    assert chapter.findings_markdown([f]) == (
        '- **`conciseness` policy: empty answers** (answers nearly nothing). Example: *Review a film.* → "(empty)"'
    )
    assert chapter.count_phrase(4, 4, "rewards") == "all 4 rewards"
    assert chapter.count_phrase(0, 4, "rewards") == "none of the 4 rewards"
    assert chapter.count_phrase(3, 4, "rewards") == "3 of the 4 rewards"


def test_key_values_timed_and_machine_facts():
    df = chapter.key_values({"a": 1, "b": "x"}, key="k")
    assert df.loc["a", "value"] == "1" and df.index.name == "k"
    out, seconds = chapter.timed(sum, [1, 2])
    assert out == 3 and seconds >= 0
    assert {"rsoup", "torch", "CPU cores", "GPU"} <= set(chapter.machine_facts())


def test_sampling_speed_counts_max_new_tokens_per_prompt():
    from rsoup_lib.models import load_policy

    model, tok = load_policy("tiny-random")
    outs, speed = chapter.sampling_speed(model, tok, ["Write a review.", "Review a film."], max_new_tokens=4)
    assert len(outs) == 2 and speed > 0


def test_pairing_sentence_follows_the_ratio_and_counts_changed_verdicts():
    from rsoup_lib.stats import Estimate

    def est(value, se):
        return Estimate(value, se, value - 2 * se, value + 2 * se, 100, "x")

    paired = {"a": est(0.5, 0.1), "b": est(0.1, 0.1), "c": est(0.15, 0.1)}
    unpaired = {"a": est(0.5, 0.4), "b": est(0.1, 0.1), "c": est(0.15, 0.05)}
    text = chapter.pairing_sentence(paired, unpaired, noun="rewards")
    assert text.startswith("Here the unpaired standard error is 0.5 to 4.0 times the paired one.")
    assert "For `a`, pairing removes" in text and "For `b` it makes no difference" in text
    assert "For `c` pairing widens the error" in text
    # a: holds paired (0.5 > 0.2), not confirmed unpaired (0.5 < 0.8); c: not confirmed vs holds
    assert text.endswith("the verdict on 2 of the 3 rewards would change (`a`, `c`).")
    flat = {"a": est(0.0, 0.0), "b": est(0.0, 0.0)}
    same = chapter.pairing_sentence(flat, flat)
    assert "no ratio" in same and same.endswith("the verdict on none of the 2 comparisons would change.")
