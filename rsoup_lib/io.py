"""Atomic writes and checksums.

Nothing rsoup writes (a checkpoint, a merged model, a cache entry) is ever seen half-written:
files go to a temporary name in the same folder and are renamed into place, and folders are
built under a temporary name and renamed as a whole. A killed process leaves at worst a
``.tmp-*`` entry that nothing trusts; the temporary names carry the writer's host and process
id (``.tmp-NAME-pidPID@HOST-XXXXXXXX``), so the next write of the same name removes what a dead
writer left (a live writer's temporary folder is never touched).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

from rsoup_lib.errors import UserError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _tmp_prefix(path: Path) -> str:
    """``.tmp-NAME-pidPID@HOST-``: mkstemp/mkdtemp append 8 random characters."""
    return f".tmp-{path.name}-pid{os.getpid()}@{_host()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Remove what killed writers of ``path`` left beside it: ``.tmp-NAME-pidPID@HOST-*`` and
    ``.old-NAME-PID`` entries whose process (on this host) is gone. Entries of live processes,
    of other hosts, and anything not named this way are left alone."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    name, host = re.escape(path.name), re.escape(_host())
    tmp = re.compile(rf"\.tmp-{name}-pid(\d+)@{host}-[A-Za-z0-9_]{{8}}(\.[A-Za-z0-9]+)?")
    old = re.compile(rf"\.old-{name}-(\d+)")
    for sibling in path.parent.iterdir():
        m, o = tmp.fullmatch(sibling.name), old.fullmatch(sibling.name)
        pid = int((m or o).group(1)) if (m or o) else None
        # this process's own .old- entry is a dead process's too (a reused pid): ours are gone by now
        if pid is not None and ((o and pid == os.getpid()) or (pid != os.getpid() and not _pid_alive(pid))):
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    sibling.unlink()


def temporary_file(path: str | os.PathLike, suffix: str = "") -> Path:
    """A new empty file beside ``path`` under a temporary name (``remove_stale_temporaries``
    removes it once its process is gone), for writers that need a path rather than a file;
    ``suffix`` for those that look at the extension."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, work: str | os.PathLike | None = None) -> Iterator[Path]:
    """Build a folder under a temporary name; on success it replaces ``path`` in one rename.

    >>> with atomic_dir("out/model") as tmp:
    ...     model.save_pretrained(tmp)

    ``work``: build in this folder instead of a fresh temporary one, keeping what is already
    there (the run cache passes a fixed name, under its lock, so that a computation killed
    half-way resumes from what it had written). Removed, like a temporary folder, on an error.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    if work is not None:
        tmp = Path(work)
        tmp.mkdir(parents=True, exist_ok=True)
    else:
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".old-{path.name}-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def canonical_json(obj: Any) -> str:
    """A stable text form of a config: sorted keys, no whitespace, so equal configs hash equal."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(obj: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def read_config_file(path: str | os.PathLike, what: str, example: str) -> Any:
    """The contents of a YAML (.yaml/.yml) or TOML (.toml) config file, or a ``UserError`` that
    says what is wrong with it (missing, a folder, unreadable, not UTF-8, invalid syntax, another
    extension), naming ``what`` it is and an ``example`` file to start from."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder: give a .yaml or .toml file (see {example})")
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist (see {example} for one)")
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise UserError(f"{what} {path}: use a .yaml, .yml or .toml file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{what} {path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise UserError(f"{what} {path} cannot be read ({err.strerror})") from None
    if path.suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise UserError(f"{what} {path} is not valid TOML ({err})") from None
    import yaml

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise UserError(f"{what} {path} is not valid YAML ({problem}{at})") from None
    return {} if raw is None else raw
