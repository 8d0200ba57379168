"""Chapter 6's library (rsoup_lib/locomotion.py): the whole pipeline at tiny budgets, and the soup
as exactly merge.lerp of the two policies' state dicts."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from rsoup_lib import cache, locomotion as L, merge, stats

TINY = L.budget("smoke")


def test_smoke_pipeline_trains_caches_and_evaluates(tmp_path):
    cfg = dataclasses.replace(TINY, seeds=(0,), eval_episodes=2, episode_steps=20)
    runs = L.train_all(cfg)
    assert len(runs.inits) == 2 and runs.inits[0] != runs.inits[1]
    for path in [*runs.inits, runs.risky[0], runs.cautious[0], runs.cautious_other[0], runs.morl[0.5][0]]:
        assert (path / "policy.pt").is_file() and (path / cache.ENTRY_FILE).is_file()
    # the fine-tunes start from the shared init (cache reference) with the frozen normaliser
    risky_cfg = json.loads((runs.risky[0] / "config.json").read_text())
    assert risky_cfg["init"] == cache.ref(runs.inits[0]) and risky_cfg["ctrl_cost_weight"] == cfg.risky_ctrl
    init, risky, cautious = (L.load_policy(p) for p in (runs.inits[0], runs.risky[0], runs.cautious[0]))
    for p in (risky, cautious):
        assert torch.equal(p.obs_mean, init.obs_mean) and torch.equal(p.obs_var, init.obs_var)
    other = L.load_policy(runs.cautious_other[0])
    assert not torch.equal(other.obs_mean, init.obs_mean)
    # a second call trains nothing: every run comes from the cache
    assert L.train_all(cfg).risky[0] == runs.risky[0]
    # evaluation: per-episode arrays, deterministic, common random numbers across policies
    a = L.evaluate(L.soup([risky, cautious], [0.5, 0.5]), n_episodes=2, seed=7, episode_steps=20, record=True)
    b = L.evaluate(L.soup([risky, cautious], [0.5, 0.5]), n_episodes=2, seed=7, episode_steps=20)
    assert a.forward.shape == a.ctrl.shape == (2,) and np.all(a.ctrl >= 0)
    np.testing.assert_array_equal(a.forward, b.forward)
    assert len(a.trajectory["x"]) == 20 and set(L.JOINTS) <= set(a.trajectory)
    assert a.point().shape == (2, 2)
    np.testing.assert_allclose(a.mixed(0.5), a.forward - 0.5 * a.ctrl)
    assert np.isfinite(stats.paired_difference(a.mixed(0.5), L.evaluate(risky, 2, 7, 20).mixed(0.5)).se)
    named = [name for name, _ in L.evaluate_experiment(dataclasses.replace(cfg, eval_episodes=2, episode_steps=5), runs)]
    assert len(named) == len(cfg.lambdas) + 2 + len(cfg.morl_mus) + 2


def _policy(seed):
    torch.manual_seed(seed)
    p = L.LocoPolicy()
    with torch.no_grad():
        for t in p.policy.parameters():
            t.add_(torch.randn_like(t))
        p.obs_mean.normal_()
        p.obs_var.uniform_(0.5, 2.0)
    return p.eval()


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_soup_is_lerp_of_state_dicts(lam):
    a, b = _policy(0), _policy(1)
    s = L.soup([a, b], [1 - lam, lam])
    expected = merge.lerp([a.state_dict(), b.state_dict()], [1 - lam, lam])
    got = s.state_dict()
    assert set(got) == set(expected) == set(a.state_dict())
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0)
        torch.testing.assert_close(got[k], (1 - lam) * a.state_dict()[k] + lam * b.state_dict()[k])
    # the soup acts as a fresh network loaded with those weights
    fresh = L.LocoPolicy()
    fresh.load_state_dict(expected)
    obs = np.random.default_rng(0).normal(size=(5, 17))
    np.testing.assert_array_equal(s.act(obs), fresh.act(obs))
    assert np.all(np.abs(s.act(obs)) <= 1.0)
    # and the inputs are untouched
    assert not torch.equal(a.obs_mean, b.obs_mean)


def test_config_round_trip_and_yaml(tmp_path):
    from pathlib import Path

    cfg = L.LocoConfig.from_file(Path(__file__).parent.parent / "configs" / "locomotion_halfcheetah.yaml")
    assert cfg == L.budget("cpu") and cfg.mixed_ctrl(0.5) == 0.5 * (cfg.risky_ctrl + cfg.cautious_ctrl)
    assert L.LocoConfig.from_dict(dataclasses.asdict(TINY)) == TINY
    from rsoup_lib.errors import UserError

    with pytest.raises(UserError, match=r"unknown key\(s\) \[.stepz.\]"):
        L.LocoConfig.from_dict({"stepz": 3})


def test_cli_help_lists_locomotion(capsys):
    from rsoup_lib.cli import main

    with pytest.raises(SystemExit):
        main(["locomotion", "--help"])
    assert "--config" in capsys.readouterr().out


def test_front_xy_and_table_row():
    a = L.Episodes(np.array([1.0, 3.0]), np.array([2.0, 4.0]), seed=0)
    b = L.Episodes(np.array([5.0, 5.0]), np.array([0.0, 2.0]), seed=0)
    xs, ys, ex, ey = L.front_xy([a, b])
    assert xs == [2.0, 5.0] and ys == [-3.0, -1.0] and ex[1] == 0.0 and ey[0] == pytest.approx(1.0)
    pooled = L.pooled([a, b])
    np.testing.assert_array_equal(pooled.forward, [1.0, 3.0, 5.0, 5.0])
    row = L.table_row("x", pooled, 0.5, [a, b])
    assert row["F − 0.5 C"].startswith("2.") and row["seed spread"] == f"{np.std([0.5, 4.5], ddof=1):.1f}"
