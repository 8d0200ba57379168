import pytest

from rsoup_lib.io import atomic_dir, atomic_write_json, atomic_write_text, config_hash, sha256_file


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "a" / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [x.name for x in p.parent.iterdir()] == ["f.txt"]


def test_atomic_dir_failure_keeps_the_old_folder(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as d:
        (d / "w").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as d:
            (d / "w").write_text("half")
            raise RuntimeError("killed")
    assert (out / "w").read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["model"]


def test_hashes(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"b": 1, "a": 2})
    assert len(sha256_file(tmp_path / "x.json")) == 64
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
