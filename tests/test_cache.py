import json

import pytest

from rsoup_lib import cache
from rsoup_lib.errors import UserError


def _write(value):
    def fn(d):
        (d / "out.txt").write_text(value)

    return fn


def test_same_config_runs_once(tmp_path):
    calls = []

    def fn(d):
        calls.append(1)
        (d / "w.txt").write_text("weights")

    a = cache.cached_run("rl", {"lr": 1e-3, "seed": 0}, fn, root=tmp_path)
    b = cache.cached_run("rl", {"seed": 0, "lr": 1e-3}, fn, root=tmp_path)  # key order irrelevant
    assert a == b and len(calls) == 1
    assert (a / "w.txt").read_text() == "weights"
    meta = json.loads((a / cache.ENTRY_FILE).read_text())
    assert meta["kind"] == "rl" and meta["config"] == {"lr": 1e-3, "seed": 0}


def test_any_hyperparameter_or_version_changes_the_key(monkeypatch):
    base = {"lr": 1e-3, "seed": 0}
    key = cache.cache_key("rl", base)
    assert cache.cache_key("rl", {**base, "seed": 1}) != key
    assert cache.cache_key("rl", {**base, "lr": 2e-3}) != key
    assert cache.cache_key("merge", base) != key
    monkeypatch.setitem(cache.ALGO_VERSIONS, "rl", "99")
    assert cache.cache_key("rl", base) != key


def test_killed_run_leaves_no_trusted_entry(tmp_path):
    def dies(d):
        (d / "half.bin").write_bytes(b"x" * 10)
        raise KeyboardInterrupt  # as if killed mid-way

    with pytest.raises(KeyboardInterrupt):
        cache.cached_run("rl", {"seed": 0}, dies, root=tmp_path)
    assert cache.lookup("rl", {"seed": 0}, root=tmp_path) is None
    assert cache.entries(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == [cache.LOCKS]  # the temporary folder is gone too
    # and the next run does the work
    path = cache.cached_run("rl", {"seed": 0}, _write("ok"), root=tmp_path)
    assert (path / "out.txt").read_text() == "ok"


def test_folder_without_entry_file_is_not_trusted(tmp_path):
    debris = tmp_path / cache.cache_key("rl", {"seed": 0})
    debris.mkdir()
    (debris / "out.txt").write_text("stale")
    path = cache.cached_run("rl", {"seed": 0}, _write("fresh"), root=tmp_path)
    assert (path / "out.txt").read_text() == "fresh"


def test_ls_and_clear(tmp_path):
    cache.cached_run("rl", {"seed": 0}, _write("a"), root=tmp_path)
    cache.cached_run("rl", {"seed": 1}, _write("b"), root=tmp_path)
    cache.cached_run("merge", {"lam": 0.5}, _write("c"), root=tmp_path)
    entries = cache.entries(tmp_path)
    assert sorted(e.kind for e in entries) == ["merge", "rl", "rl"]
    assert all(e.size_bytes > 0 for e in entries)
    assert cache.clear(tmp_path, kind="rl") == 2
    assert [e.kind for e in cache.entries(tmp_path)] == ["merge"]
    assert cache.clear(tmp_path) == 1
    assert cache.entries(tmp_path) == []


def test_default_location_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RSOUP_CACHE_DIR", str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c"


def test_refs_resolve_inside_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("RSOUP_CACHE_DIR", str(tmp_path))
    path = cache.cached_run("rl", {"seed": 0}, lambda d: (d / "policy").mkdir())
    name = cache.ref(path / "policy")
    assert name == f"cache:{path.name}/policy"
    assert cache.resolve(name) == str(path / "policy")
    assert cache.resolve("tiny") == "tiny"
    cache.clear()
    with pytest.raises(UserError, match="not in the cache"):
        cache.resolve(name)


_CONCURRENT = """
import sys, time
from pathlib import Path
from rsoup_lib import cache

def fn(d):
    with open(sys.argv[2], "a") as log:
        log.write("computed\\n")
    time.sleep(1.5)
    (d / "w.txt").write_text("weights")

print(cache.cached_run("rl", {"seed": 0}, fn, root=Path(sys.argv[1])))
"""


def test_two_processes_asking_for_the_same_entry_compute_it_once(tmp_path):
    """One process computes, the other waits on the lock and reuses the entry."""
    import subprocess
    import sys

    script, log = tmp_path / "run.py", tmp_path / "calls.log"
    script.write_text(_CONCURRENT)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"), str(log)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert log.read_text().count("computed") == 1
    assert outs[0][0].strip() == outs[1][0].strip()  # both got the same entry
    assert "waiting for it" in outs[0][1] + outs[1][1]
    entry = [c for c in (tmp_path / "cache").iterdir() if c.name != cache.LOCKS]
    assert len(entry) == 1 and (entry[0] / cache.ENTRY_FILE).is_file()


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    """kill -9 while computing: the lock file stays, the lock does not; the next run computes."""
    import signal
    import subprocess
    import sys
    import time

    script, log = tmp_path / "run.py", tmp_path / "calls.log"
    script.write_text(_CONCURRENT)
    p = subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"), str(log)])
    deadline = time.time() + 30
    while not (log.is_file() and log.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert list((tmp_path / "cache" / cache.LOCKS).glob("*.lock"))  # the file is left behind
    got = cache.cached_run("rl", {"seed": 0}, lambda d: (d / "w.txt").write_text("again"), root=tmp_path / "cache")
    assert (got / "w.txt").read_text() == "again"
