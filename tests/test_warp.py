import json

import pytest
import torch

from rsoup_lib.errors import UserError
from rsoup_lib.merge import liti, slerp
from rsoup_lib.rl import RLConfig
from rsoup_lib.checkpoints import load_state_dict, policy_state
from rsoup_lib.warp import WarpConfig, run_seed, warp, write_outputs
from rsoup_lib.cache import resolve


def tiny_rl(**kw):
    base = dict(policy="tiny-random", reward="conciseness", steps=2, batch_prompts=2, k=2, max_new_tokens=6,
                lr=1e-2, anchor="ema", ema_rate=0.1, checkpoint_every=0)
    return RLConfig(**{**base, **kw})


def test_config_from_yaml_and_toml(tmp_path):
    (tmp_path / "w.yaml").write_text("rl:\n  policy: tiny-random\n  steps: 5\nm: 3\niterations: 2\nfront_etas: [0, 0.5, 1]\n")
    c = WarpConfig.from_file(tmp_path / "w.yaml")
    assert c.rl.anchor == "ema" and c.rl.steps == 5 and c.m == 3 and c.front_etas == (0.0, 0.5, 1.0)
    (tmp_path / "w.toml").write_text("m = 2\neta = 0.5\n[rl]\npolicy = 'tiny-random'\nbeta = 0.2\n")
    c = WarpConfig.from_file(tmp_path / "w.toml")
    assert c.eta == 0.5 and c.rl.beta == 0.2


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match=r"unknown key\(s\) \['stepz'\] in the rl"):
        WarpConfig.from_dict({"rl": {"stepz": 3}})
    with pytest.raises(UserError, match=r"unknown key\(s\) \['M'\] in the top level"):
        WarpConfig.from_dict({"M": 3})
    with pytest.raises(UserError, match="EMA anchor"):
        WarpConfig.from_dict({"rl": {"anchor": "sft"}})
    with pytest.raises(UserError, match="at least 2"):
        WarpConfig.from_dict({"m": 1})
    with pytest.raises(UserError, match="does not exist"):
        WarpConfig.from_file(tmp_path / "nope.yaml")


def test_the_shipped_configs_parse():
    from pathlib import Path

    for f in sorted((Path(__file__).parent.parent / "configs").glob("warp_*.yaml")):
        WarpConfig.from_file(f)


def test_run_seeds_are_distinct_and_the_first_is_the_base_seed():
    seeds = {run_seed(7, i, m) for i in range(1, 4) for m in range(3)}
    assert len(seeds) == 9 and run_seed(7, 1, 0) == 7


@pytest.mark.slow
def test_two_iterations_merge_as_the_formulas_say(tmp_path, monkeypatch):
    """Iteration i's SLERP and LITI are exactly merge.slerp / merge.liti of its runs and init,
    iteration 2 starts from iteration 1's LITI, and a second call trains nothing new."""
    monkeypatch.setenv("RSOUP_CACHE_DIR", str(tmp_path / "cache"))
    config = WarpConfig(rl=tiny_rl(), m=2, iterations=2, eta=0.4, front_etas=(0.0, 1.0), eval_prompts=4)
    its = warp(config, progress=False)
    assert [it.index for it in its] == [1, 2]
    assert its[1].init == its[0].liti
    # iteration 2 starts from iteration 1's LITI but measures KL against the SFT policy
    from rsoup_lib.runs import reference_of

    assert all(reference_of(f"{r}/policy") == "tiny-random" for it in its for r in it.runs)
    for it in its:
        init = policy_state(it.init)
        runs = [load_state_dict(f"{r}/policy") for r in it.runs]
        assert any(not torch.equal(runs[0][k], init[k]) for k in init), "the runs should move"
        assert any(not torch.equal(runs[0][k], runs[1][k]) for k in init), "seeds should differ"
        want_slerp = slerp(init, runs, lam=0.5)
        got_slerp = load_state_dict(resolve(it.slerp))
        for k in want_slerp:
            torch.testing.assert_close(got_slerp[k], want_slerp[k], atol=1e-6, rtol=0)
        want_liti = liti(init, want_slerp, 0.4)
        got_liti = load_state_dict(resolve(it.liti))
        for k in want_liti:
            torch.testing.assert_close(got_liti[k], want_liti[k], atol=1e-6, rtol=0)
    # everything is cached: the same call returns the same folders
    again = warp(config, progress=False)
    assert [a.runs for a in again] == [i.runs for i in its]
    out = tmp_path / "out"
    write_outputs(config, its, [{"eta": 1.0}], out)
    meta = json.loads((out / "warp.json").read_text())
    assert len(meta["iterations"]) == 2 and meta["front"] == [{"eta": 1.0}]
    assert (out / "iteration-2" / "liti" / "config.json").is_file()
    assert (out / "iteration-1" / "run-2" / "metrics.jsonl").is_file()


def test_warp_tiny_config_is_the_cpu_books_recipe():
    """configs/warp_tiny.yaml promises to reuse the WARP chapter's cached runs: its RL recipe must
    be the cpu profile's, with the chapter's anchor, reward and snapshots (trajectory_points=4)."""
    from pathlib import Path

    from rsoup_lib.profiles import get_profile
    from rsoup_lib.rl import RLConfig

    cfg = WarpConfig.from_file(Path(__file__).parent.parent / "configs" / "warp_tiny.yaml")
    cpu = get_profile("cpu")
    assert cfg.rl == RLConfig.from_profile(cpu, reward="sentiment", anchor="ema", ema_rate=0.01,
                                           snapshot_every=cpu.steps // 4)
    assert cfg.iterations == 3 and cfg.eval_prompts == cpu.eval_prompts
