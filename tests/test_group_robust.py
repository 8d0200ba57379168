"""Group-invariant RLHF (rsoup_lib.group_robust, book chapter 5): the variance objective, its
gradient, the advantage weights, the adaptive KL, the hooks in the trainer, and `--by group`."""

import json

import numpy as np
import pytest
import torch

from rsoup_lib import group_robust as gr
from rsoup_lib.rl import RLConfig, rloo_loss

# A toy batch: samples 0-3 in group A (rewards high), 4-7 in group B (low).
R = torch.tensor([0.9, 0.8, 1.0, 0.7, -0.5, -0.2, 0.0, -0.3])
HARD = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4)


def test_group_variance_is_the_mass_weighted_between_group_variance():
    returns, share = gr.group_returns(HARD, R)
    assert torch.allclose(returns, torch.tensor([0.85, -0.25]))
    assert torch.allclose(share, torch.tensor([0.5, 0.5]))
    assert float(gr.group_variance(HARD, R)) == pytest.approx(0.5 * 0.55**2 * 2)
    # one group holding everything: no variance; uniform memberships: no variance
    assert float(gr.group_variance(torch.tensor([[1.0, 0.0]] * 8), R)) == pytest.approx(0.0, abs=1e-7)
    assert float(gr.group_variance(torch.full((8, 2), 0.5), R)) == pytest.approx(0.0, abs=1e-7)


def test_variance_gradient_matches_autograd_and_pushes_the_hard_group():
    p = torch.softmax(torch.randn(8, 2, generator=torch.Generator().manual_seed(0)), -1)
    r = R.clone().requires_grad_(True)
    gr.group_variance(p, r).backward()
    assert torch.allclose(gr.variance_gradient(p, R), r.grad, atol=1e-6)
    # on the toy split: raising an easy sample's reward raises the variance, a hard one's lowers it
    g = gr.variance_gradient(HARD, R)
    assert (g[:4] > 0).all() and (g[4:] < 0).all()
    # so the penalty -alpha Var weights hard samples' advantages up and easy ones down
    returns, share = gr.group_returns(HARD, R)
    w = gr.advantage_weights(HARD, returns, float((share * returns).sum()), alpha=1.0)
    assert (w[4:] > 1).all() and (w[:4] < 1).all()
    assert torch.allclose(w, 1 - len(R) * 1.0 * g, atol=1e-6)  # w_i = 1 - alpha n dVar/dR_i
    assert torch.allclose(gr.advantage_weights(HARD, returns, 0.3, alpha=0.0), torch.ones(8))


def test_classifier_ascent_finds_the_split_of_the_toy_batch():
    config = gr.GroupConfig(classifier_steps=50, features=16, buffer_batches=1)
    clf = gr.GroupClassifier(config, seed=0)
    feats = torch.cat([torch.eye(16)[:4] * 0 + torch.eye(16)[0], torch.eye(16)[4:8] * 0 + torch.eye(16)[1]])
    clf.push(feats, R, ["a"] * 4 + ["b"] * 4)
    before = float(gr.group_variance(clf.probs(feats).detach(), R))
    after = clf.fit()
    assert after > before
    p = clf.probs(feats).detach()
    high = int(torch.argmax(gr.group_returns(p, R)[0]))
    assert (p[:4, high] > 0.5).all() and (p[4:, high] < 0.5).all()


def test_adaptive_kl_coefficients():
    betas = gr.adaptive_kl(torch.tensor([0.0, 0.5, 1.0]), beta=0.1, c0=0.5, c1=1.0)
    assert torch.allclose(betas, torch.tensor([0.05, 0.10, 0.15]))
    assert torch.allclose(gr.adaptive_kl(torch.tensor([0.2]), 0.1, 1.0, 0.0), torch.tensor([0.1]))


def test_unit_weights_leave_the_rloo_loss_unchanged():
    g = torch.Generator().manual_seed(1)
    logp = torch.randn(8, 5, generator=g).requires_grad_(True)
    mask = torch.ones(8, 5)
    anchor, scores, betas = torch.randn(8, 5, generator=g), torch.randn(8, generator=g), torch.full((8,), 0.1)
    plain, _ = rloo_loss(logp, mask, anchor, anchor, scores, betas, 4, "sequence", 8)
    weighted, _ = rloo_loss(logp, mask, anchor, anchor, scores, betas, 4, "sequence", 8, torch.ones(8))
    assert torch.allclose(plain, weighted, atol=1e-6)
    doubled, _ = rloo_loss(logp, mask, anchor, anchor, scores, torch.zeros(8), 4, "sequence", 8, torch.full((8,), 2.0))
    single, _ = rloo_loss(logp, mask, anchor, anchor, scores, torch.zeros(8), 4, "sequence", 8)
    assert torch.allclose(doubled, 2 * single, atol=1e-6)


def test_worst_group_and_seed_spread_statistics():
    labels = ["a", "b"] * 50
    base = np.where(np.array(labels) == "a", 1.0, 0.0) + np.linspace(0, 0.1, 100)
    better = base + np.where(np.array(labels) == "b", 0.5, 0.0)  # the worst group (b) gains 0.5
    e = gr.worst_group_gap(better, base, labels, ["a", "b"])
    assert e.value == pytest.approx(0.5) and e.se < 0.1
    assert gr.worst_group(base, labels, ["a", "b"]) == pytest.approx(base[1::2].mean())
    assert gr.group_gap(better, base, labels, "b").value == pytest.approx(0.5)
    noisy = [base, base + np.where(np.array(labels) == "b", 0.4, 0.0)]
    steady = [better, better + 0.01]
    s = gr.seed_spread_gap(noisy, steady, labels, ["a", "b"])
    assert s.value > 0
    assert np.isnan(gr.seed_spread_gap([base], steady, labels, ["a", "b"]).value)


CFG = dict(policy="tiny-random", reward="tone_fidelity", steps=3, batch_prompts=2, k=2, max_new_tokens=4, seed=0)


def _weights(run):
    from safetensors.torch import load_file

    return load_file(str(run / "policy" / "model.safetensors"))


def test_plain_method_through_the_hooks_is_plain_rloo(tmp_path):
    from rsoup_lib import rl

    config = RLConfig(**CFG)
    group = gr.GroupConfig(method="plain", holdout="mixed")
    a = gr.train(config, group, tmp_path / "a", progress=False)
    b = rl.train(config, tmp_path / "b", prompts=gr.training_prompts(config, group), progress=False)
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[n], wb[n]) for n in wa)
    rows = gr.read_group_metrics(a)
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert not any(k.endswith("/mixed") for r in rows for k in r)  # held out of training
    assert all(r["beta/" + k.split("/")[1]] == pytest.approx(config.beta) for r in rows for k in r if k.startswith("weight/"))


@pytest.mark.parametrize("method", ["group", "oracle"])
def test_smoke_run_resumes_exactly(tmp_path, method):
    config = RLConfig(**{**CFG, "steps": 4, "checkpoint_every": 2})
    group = gr.GroupConfig(method=method, features=32)
    full = gr.train(config, group, tmp_path / "full", progress=False)
    gr.train(config, group, tmp_path / "killed", progress=False, stop_at_step=3)
    resumed = gr.train(config, group, tmp_path / "killed", progress=False)
    wa, wb = _weights(full), _weights(resumed)
    assert all(torch.equal(wa[n], wb[n]) for n in wa)
    assert gr.read_group_metrics(full) == gr.read_group_metrics(resumed)
    assert (full / "group_state" / "final.pt").is_file()
    p = gr.p_high(full, ["Write a negative review."], ["Awful."])
    assert p.shape == (1,) and 0 <= p[0] <= 1


def test_eval_by_group_prints_and_writes_per_group_means(capsys):
    from rsoup_lib.cli import main

    argv = ["eval", "--policy", "tiny-random", "--rewards", "tone_fidelity", "--n", "8", "--max-new-tokens", "4",
            "--threads", "1", "--by", "group"]  # fmt: skip
    assert main(argv + ["--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["by"]["field"] == "group" and len(d["by"]["labels"]) == 8
    groups = d["by"]["groups"]["tone_fidelity"]
    for label, r in groups.items():
        values = [v for v, x in zip(d["per_prompt"]["tone_fidelity"], d["by"]["labels"]) if x == label]
        assert r["n"] == len(values) and r["mean"] == pytest.approx(np.mean(values))
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "by group:" in text and all(f" {label} " in text for label in groups)


def test_bad_group_configs_are_user_errors(tmp_path):
    from rsoup_lib.errors import UserError

    config = RLConfig(**CFG)
    for bad, msg in ((dict(method="nope"), "method 'nope'"), (dict(alpha=-1.0), "alpha=-1.0"),
                     (dict(c0=0.0, c1=0.0), "c0 + c1"), (dict(classifier_steps=0), "classifier_steps=0"),
                     (dict(holdout="nope"), "holdout 'nope'"), (dict(group_field="nope"), "no field 'nope'")):  # fmt: skip
        with pytest.raises(UserError, match=msg.replace("(", r"\(").replace("+", r"\+")):
            gr.train(config, gr.GroupConfig(**bad), tmp_path / "x", progress=False)


def test_train_command_parses_back_to_the_same_configs():
    import dataclasses
    import shlex

    from rsoup_lib.cli import build_parser
    from rsoup_lib.commands.train import _group_config

    config = RLConfig(reward="tone_fidelity", steps=48, lr=3e-4, seed=1)
    group = gr.GroupConfig(method="no_variance", holdout="mixed", alpha=0.5)
    args = build_parser().parse_args(shlex.split(gr.train_command(config, group, "runs/x"))[1:])
    assert RLConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RLConfig)}) == config
    assert _group_config(args) == group and args.out == "runs/x"


def test_chapter_helpers_word_the_shortcut_from_the_estimates():
    from rsoup_lib import chapter, figures
    from rsoup_lib.stats import Estimate

    up, down, flat = (Estimate(v, 0.01, v - 0.02, v + 0.02, 48, "paired") for v in (0.1, -0.1, 0.005))
    assert "gained on a and lost on b" in chapter.shortcut_sentence({"a": up, "b": down, "c": flat}, "b")
    assert "No group moved" in chapter.shortcut_sentence({"c": flat}, "c")
    fig = figures.log_panels("t", {"p1": {"x": ([0, 1], [1.0, 2.0]), "y": ([0], [0.0])}, "p2": {"x": ([0], [1.0])}})
    assert [t.showlegend for t in fig.data] == [True, True, False]
