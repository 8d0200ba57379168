"""evaluate(): means and standard errors, KL to SFT, diversity, determinism, JSON output."""

import json

import pytest
import torch

from rsoup_lib.evaluate import distinct_n, evaluate, mean_stderr, repetition_rate
from rsoup_lib.models import tiny_random

PROMPTS = ["Write a review of a horror movie.", "Review a comedy.", "A short review of a drama."]


def test_diversity_and_repetition_detectors():
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert distinct_n([""], 2) == 0.0
    assert repetition_rate("great great great film") == pytest.approx(0.5)
    assert repetition_rate("great") == 0.0
    m, se = mean_stderr([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5 and se == pytest.approx((5 / 3 / 4) ** 0.5)


def test_evaluate_is_deterministic_and_json(tmp_path):
    pair = tiny_random(seed=0)
    a = evaluate(pair, ["sentiment", "conciseness"], PROMPTS, n=10, seed=5, sft=pair, max_new_tokens=6, batch_size=4)
    state = torch.get_rng_state()
    b = evaluate(pair, "sentiment,conciseness", PROMPTS, n=10, seed=5, sft=pair, max_new_tokens=6, batch_size=4)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    assert a.to_dict() == b.to_dict()
    d = json.loads(a.to_json())
    assert set(d["rewards"]) == {"sentiment", "conciseness"}
    assert d["n"] == 10 and len(d["samples"]) == 8
    assert d["kl_to_sft"] == pytest.approx(0.0, abs=1e-5)  # policy == SFT
    c = evaluate(pair, ["conciseness"], PROMPTS, n=10, seed=6, max_new_tokens=6)
    assert c.kl_to_sft is None
    assert [s["completion"] for s in c.samples] != [s["completion"] for s in a.samples]


def test_kl_to_a_different_policy_is_positive_on_average():
    policy, sft = tiny_random(seed=0), tiny_random(seed=0)
    with torch.no_grad():  # a sharper policy than the (near-uniform) random SFT model
        policy[0].model.norm.weight.mul_(40.0)
    r = evaluate(policy, ["readability"], PROMPTS, n=32, seed=0, sft=sft, max_new_tokens=8)
    assert r.kl_to_sft > 3 * r.kl_to_sft_stderr


def test_cli_train_then_eval_json(tmp_path, capsys):
    from rsoup_lib.cli import main

    out = tmp_path / "run"
    assert main(["train", "--policy", "tiny-random", "--reward", "sentiment:0.5,conciseness:0.5", "--steps", "2",
                 "--batch-prompts", "2", "--k", "2", "--max-new-tokens", "4", "--out", str(out), "--no-progress"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    assert main(["eval", "--policy", str(out / "policy"), "--rewards", "sentiment,conciseness", "--n", "6",
                 "--seed", "3", "--max-new-tokens", "4", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d["rewards"]) == {"sentiment", "conciseness"} and d["n"] == 6
    assert {"mean", "stderr"} <= set(d["rewards"]["sentiment"]) and d["kl_to_sft"] is not None
    assert main(["eval", "--policy", "tiny-random", "--rewards", "bogus", "--n", "2"]) == 2


def test_kl_of_the_reference_itself_is_zero_without_the_forward_passes():
    """The evaluated model passed as its own reference: the KL terms are 0.0 without computing
    the log-probs, the very numbers the forward passes give with an identical copy of it."""
    pair, copy = tiny_random(seed=0), tiny_random(seed=0)
    same = evaluate(pair, ["sentiment"], PROMPTS, n=10, seed=5, sft=pair, max_new_tokens=6, batch_size=4)
    twin = evaluate(pair, ["sentiment"], PROMPTS, n=10, seed=5, sft=copy, max_new_tokens=6, batch_size=4)
    assert same.kl_per_prompt == [0.0] * 10 == twin.kl_per_prompt
    assert same.to_dict() == twin.to_dict()
