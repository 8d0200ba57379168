"""Running a command again after a kill or on an existing output (issue #15): the pieces that
``tests/test_kills.py`` exercises with real processes, one by one and fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from rsoup_lib import cache
from rsoup_lib.errors import UserError
from rsoup_lib.io import _tmp_prefix, atomic_dir, atomic_write_text, remove_stale_temporaries


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    out = tmp_path / "model"
    dead = _tmp_prefix(out).replace(f"pid{os.getpid()}@", f"pid{_dead_pid()}@") + "abcd1234"
    live = _tmp_prefix(out) + "efgh5678"  # this process: alive
    other = ".tmp-model-2-pid1@elsewhere-abcd1234"  # another name, another host: not ours to judge
    for name in (dead, live, other, f".old-model-{_dead_pid()}"):
        (tmp_path / name).mkdir()
    remove_stale_temporaries(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live, other])
    with atomic_dir(out) as d:  # a write cleans up the same way
        (d / "w").write_text("x")
    assert (out / "w").read_text() == "x"


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "one")
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_a_metrics_line_torn_by_a_kill_is_dropped_on_resume(tmp_path):
    from rsoup_lib.runs import start_metrics

    rows = [json.dumps({"step": i, "reward": 0.1 * i}) for i in range(4)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(rows[:3]) + "\n" + rows[3][:9])
    start_metrics(tmp_path, 2)
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == rows[:2]


def test_a_run_folder_of_the_same_config_is_reused_and_of_another_refused(tmp_path):
    from rsoup_lib.rl import RLConfig
    from rsoup_lib.runs import check_run_folder

    config = asdict(RLConfig(policy="tiny-random", steps=3))
    check_run_folder(tmp_path / "new", config)  # nothing there yet
    (tmp_path / "run").mkdir()
    older = {k: v for k, v in config.items() if k not in ("snapshot_every", "reference")}  # before those fields
    (tmp_path / "run" / "config.json").write_text(json.dumps(older))
    check_run_folder(tmp_path / "run", config)
    with pytest.raises(UserError, match=r"holds a run of another config \(steps=3 there, 4 now\)"):
        check_run_folder(tmp_path / "run", {**config, "steps": 4})


def test_cache_clear_keeps_the_work_folder_of_a_running_computation(tmp_path, monkeypatch):
    import fcntl

    monkeypatch.setenv("RSOUP_CACHE_DIR", str(tmp_path))
    cache.cached_run("rl", {"seed": 0}, lambda d: (d / "w").write_text("w"))
    key = cache.cache_key("rl", {"seed": 1})
    (tmp_path / f"{cache.PARTIAL}{key}").mkdir()  # being computed by someone holding the lock
    (tmp_path / f"{cache.PARTIAL}dead").mkdir()  # left by a killed computation
    with open(tmp_path / cache.LOCKS / f"{key}.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        assert cache.clear() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [cache.LOCKS, f"{cache.PARTIAL}{key}"]


def test_a_cached_computation_resumes_from_what_a_killed_one_wrote(tmp_path):
    calls = []

    def fn(d: Path) -> None:
        calls.append(sorted(p.name for p in d.iterdir()))
        (d / "second").write_text("2")

    key = cache.cache_key("rl", {"seed": 0})
    (tmp_path / f"{cache.PARTIAL}{key}").mkdir()
    (tmp_path / f"{cache.PARTIAL}{key}" / "first").write_text("1")  # what the killed one wrote
    entry = cache.cached_run("rl", {"seed": 0}, fn, root=tmp_path)
    assert calls == [["first"]] and sorted(p.name for p in entry.iterdir()) == [cache.ENTRY_FILE, "first", "second"]


def _model(folder: Path, seed: int) -> Path:
    from rsoup_lib.checkpoints import write_safetensors

    folder.mkdir(parents=True)
    write_safetensors(folder / "model.safetensors", {"w": np.random.default_rng(seed).standard_normal(8).astype(np.float32)}, {})
    (folder / "config.json").write_text("{}")
    return folder


def test_merge_reruns_into_its_own_output_but_not_into_another(tmp_path):
    from rsoup_lib.merge_files import merge_folders

    a, b = _model(tmp_path / "a", 0), _model(tmp_path / "b", 1)
    merge_folders("lerp", [a, b], tmp_path / "out", weights=[0.3, 0.7])
    first = (tmp_path / "out" / "model.safetensors").read_bytes()
    merge_folders("lerp", [a, b], tmp_path / "out", weights=[0.3, 0.7])  # the same merge again: fine
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == first
    with pytest.raises(UserError, match="exists: choose a new folder or pass --overwrite"):
        merge_folders("lerp", [a, b], tmp_path / "out", weights=[0.5, 0.5])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "out"]


def test_tokenizers_saved_two_ways_still_match(tmp_path):
    from rsoup_lib.checkpoints import Checkpoint
    from rsoup_lib.merge_files import _check_same_tokenizer

    a, b = _model(tmp_path / "a", 0), _model(tmp_path / "b", 1)
    tok = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}, "added_tokens": []}
    (a / "tokenizer.json").write_text(json.dumps(tok))
    tok["model"]["merges"] = [["a", "b"]]  # the newer tokenizers format of the same merges
    (b / "tokenizer.json").write_text(json.dumps(tok))
    (b / "vocab.json").write_text("{}")  # a file only one of them has is not compared
    _check_same_tokenizer([Checkpoint(a), Checkpoint(b)])
    tok["model"]["vocab"] = {"a": 1, "b": 0, "ab": 2}
    (b / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(UserError, match="different tokenizers"):
        _check_same_tokenizer([Checkpoint(a), Checkpoint(b)])


def test_warp_output_of_the_same_config_is_replaced_and_of_another_refused(tmp_path):
    from rsoup_lib.warp import WarpConfig, check_output

    config = WarpConfig.from_dict({"rl": {"policy": "tiny-random", "steps": 1}})
    check_output(config, tmp_path / "new")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "warp.json").write_text(json.dumps({"config": json.loads(json.dumps(asdict(config)))}))
    check_output(config, tmp_path / "w")
    other = WarpConfig.from_dict({"rl": {"policy": "tiny-random", "steps": 2}})
    with pytest.raises(UserError, match="holds the output of another WARP config"):
        check_output(other, tmp_path / "w")
