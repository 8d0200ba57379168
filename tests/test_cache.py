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
    monkeypatch.setitem(cache.ALGO_VERSIONS, "rl", "2")
    assert cache.cache_key("rl", base) != key


def test_killed_run_leaves_no_trusted_entry(tmp_path):
    def dies(d):
        (d / "half.bin").write_bytes(b"x" * 10)
        raise KeyboardInterrupt  # as if killed mid-way

    with pytest.raises(KeyboardInterrupt):
        cache.cached_run("rl", {"seed": 0}, dies, root=tmp_path)
    assert cache.lookup("rl", {"seed": 0}, root=tmp_path) is None
    assert cache.entries(tmp_path) == []
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too
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
