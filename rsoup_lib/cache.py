"""The run cache: trained policies stored under a key hashed from their whole configuration.

A chapter that needs "the sentiment policy, tiny init, seed 0, 150 steps, beta 0.05, ..." asks
the cache; if any earlier notebook (or an earlier build) trained exactly that run, it is reused,
so no regeneration trains the same policy twice.

The key is ``sha256(kind, config, ALGO_VERSIONS[kind])``: every hyperparameter is in ``config``
and the algorithm's version string is bumped whenever its code changes what it computes, which
invalidates old entries. Entries are folders written atomically (built under a temporary name,
renamed when complete), so a killed run never leaves an entry that a later run trusts. The
temporary name is fixed per key (``.partial-KEY``): the next process to compute that entry (it
holds the lock, so nobody else writes there) resumes from what a killed one wrote, an RL run
from its last checkpoint. ``clear`` leaves the lock files and the work folder of a computation
that is running.

Concurrency: two processes asking for the same missing entry do not both compute it. The
first takes an exclusive lock on ``.locks/KEY.lock`` in the cache folder (``fcntl.flock``) and computes;
the second waits on the lock, then finds the finished entry and reuses it. The stale-lock rule is
the kernel's: a lock dies with the process that held it (a ``kill -9`` included), so a lock file
left behind by a killed run never blocks anyone, and the next process simply takes it.

Location: ``$RSOUP_CACHE_DIR`` if set, else ``~/.cache/rsoup``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rsoup_lib.errors import UserError
from rsoup_lib.io import atomic_dir, atomic_write_json, canonical_json, config_hash

# Bump the version of a kind when its code changes the result for the same config.
ALGO_VERSIONS: dict[str, str] = {
    # rl 2: log-probs through one fused log-softmax per chunk; 3: the decoding step's own matmuls
    # and attention (rsoup_lib.decode_step) and the fused AdamW, the same numbers up to rounding
    "rl": "3",  # rsoup_lib.rl.train
    "group_rl": "2",  # rsoup_lib.group_robust.train (2: samples through the new decoding step)
    "warp-merge": "1",  # rsoup_lib.warp.warp_iteration's SLERP + LITI
    "aihf-data": "2",  # rsoup_lib.preferences.build (chapter 4's D, P pool, held-out pairs; 2: decoding step)
    "reward-model": "2",  # rsoup_lib.aihf.cached_reward_model (2: the joint fit samples through the decoding step)
    "aihf": "2",  # rsoup_lib.aihf.train (chapter 4's methods; 2: sampling through the decoding step)
}

ENTRY_FILE = "cache_entry.json"
LOCKS = ".locks"  # lock files (never removed: removing a lock file another process waits on races)
PARTIAL = ".partial-"  # .partial-KEY: the entry being computed (or left by a killed computation)


def cache_dir() -> Path:
    path = Path(os.environ.get("RSOUP_CACHE_DIR") or Path.home() / ".cache" / "rsoup")
    if path.exists() and not path.is_dir():
        raise UserError(f"the run cache {path} is not a folder: point RSOUP_CACHE_DIR at a folder")
    return path


def cache_key(kind: str, config: dict[str, Any]) -> str:
    version = ALGO_VERSIONS.get(kind, "1")
    return f"{kind}-{config_hash({'kind': kind, 'version': version, 'config': config})}"


@dataclass
class Entry:
    key: str
    path: Path
    kind: str
    config: dict[str, Any]
    created: float
    seconds: float  # how long the run took when it was made
    size_bytes: int


def lookup(kind: str, config: dict[str, Any], root: Path | None = None) -> Path | None:
    path = (root or cache_dir()) / cache_key(kind, config)
    return path if (path / ENTRY_FILE).is_file() else None


def cached_run(
    kind: str,
    config: dict[str, Any],
    fn: Callable[[Path], Any],
    root: Path | None = None,
) -> Path:
    """Return the cache folder for ``(kind, config)``, running ``fn(tmp_dir)`` first if needed.

    ``fn`` writes its outputs into the folder it is given; the folder becomes the entry only
    after ``fn`` returns, with ``cache_entry.json`` (kind, config, seconds) written last.
    ``config`` must be JSON-serialisable and hold everything that changes the result.
    """
    root = root or cache_dir()
    key = cache_key(kind, config)
    path = root / key
    if (path / ENTRY_FILE).is_file():
        return path
    (root / LOCKS).mkdir(parents=True, exist_ok=True)
    with _locked(root / LOCKS / f"{key}.lock", f"{kind} {key}"):
        if (path / ENTRY_FILE).is_file():  # another process finished it while we waited
            return path
        # A folder without its entry file is debris from a killed run: never trusted.
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        for debris in root.glob(f".tmp-{key}-*"):  # temporary folders of killed writers (we hold the lock)
            shutil.rmtree(debris, ignore_errors=True)
        t0 = time.perf_counter()
        # The work folder has a fixed name: after a kill -9 the next run (holding the lock) finds
        # what the killed one wrote and ``fn`` resumes from it (an RL run from its last
        # checkpoint); an exception removes it.
        with atomic_dir(path, work=root / f"{PARTIAL}{key}") as tmp:
            fn(tmp)
            atomic_write_json(
                tmp / ENTRY_FILE,
                {
                    "key": key,
                    "kind": kind,
                    "version": ALGO_VERSIONS.get(kind, "1"),
                    "config": json.loads(canonical_json(config)),
                    "created": time.time(),
                    "seconds": time.perf_counter() - t0,
                },
            )
    return path


@contextlib.contextmanager
def _locked(lock_path: Path, what: str):
    """Hold an exclusive ``flock`` on ``lock_path`` (waiting, with a message, if another process
    holds it). The kernel releases it when the holder exits or is killed."""
    import fcntl
    import sys

    with open(lock_path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[rsoup cache] another process is computing {what}; waiting for it", file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def entries(root: Path | None = None) -> list[Entry]:
    root = root or cache_dir()
    out = []
    if not root.is_dir():
        return out
    for child in sorted(root.iterdir()):
        meta_path = child / ENTRY_FILE
        if child.name.startswith(".") or not meta_path.is_file():  # locks, work folders
            continue
        meta = _read_entry(meta_path)
        size = sum(f.stat().st_size for f in child.rglob("*") if f.is_file())
        out.append(
            Entry(
                key=meta["key"],
                path=child,
                kind=meta["kind"],
                config=meta["config"],
                created=meta["created"],
                seconds=meta["seconds"],
                size_bytes=size,
            )
        )
    return out


def _read_entry(meta_path: Path) -> dict:
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or not {"key", "kind", "config", "created", "seconds"} <= set(meta):
            raise ValueError("fields are missing")
    except (OSError, ValueError) as err:
        raise UserError(f"cache entry {meta_path} is corrupt ({err}): delete {meta_path.parent} "
                        "(the next run that needs it recomputes it)") from None  # fmt: skip
    return meta


def clear(root: Path | None = None, kind: str | None = None) -> int:
    """Delete entries (all, or those of one kind) and any debris; returns how many entries went."""
    root = root or cache_dir()
    if kind is not None and kind not in ALGO_VERSIONS and kind not in {e.kind for e in entries(root)}:
        raise UserError(f"unknown kind {kind!r}: the kinds are {', '.join(ALGO_VERSIONS)} (see `rsoup cache ls`)")
    if not root.is_dir():
        return 0
    removed = 0
    for child in list(root.iterdir()):
        meta_path = child / ENTRY_FILE
        if child.name == LOCKS:
            continue  # lock files stay (see LOCKS)
        if child.name.startswith("."):  # a work folder: removed unless its computation is running
            key = child.name.removeprefix(PARTIAL).removeprefix(".tmp-").split("-pid")[0]
            if kind is None and not _busy(root / LOCKS / f"{key}.lock"):
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
            continue
        if kind is not None:
            if not meta_path.is_file() or _read_entry(meta_path)["kind"] != kind:
                continue
        if meta_path.is_file():
            removed += 1
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
    return removed


def _busy(lock_path: Path) -> bool:
    """True while a process holds the lock ``lock_path`` (it is computing that entry)."""
    import fcntl

    if not lock_path.is_file():
        return False
    with open(lock_path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


CACHE_REF = "cache:"


def ref(path: Path) -> str:
    """A location-independent name for something inside the cache: ``cache:KEY/sub/path``.

    Configs that point at cached policies (a WARP iteration's init, say) use these names, so
    their own cache keys are the same wherever the cache lives."""
    return CACHE_REF + Path(path).resolve().relative_to(cache_dir().resolve()).as_posix()


def resolve(name: str) -> str:
    """``cache:KEY/sub`` -> the path inside the cache folder; any other name is returned as is."""
    if not name.startswith(CACHE_REF):
        return name
    path = cache_dir() / name[len(CACHE_REF) :]
    if not path.exists():
        raise UserError(
            f"{name} is not in the cache at {cache_dir()}: it was cleared or built elsewhere; "
            "re-run the step that makes it"
        )
    return str(path)
