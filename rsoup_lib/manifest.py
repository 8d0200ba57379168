"""The data manifest: checksums of the committed artifacts and the config that made each.

``data/MANIFEST.json`` looks like

    {"artifacts": {"tiny": {"files": ["tiny/config.json", ...], "config": {...}, "seconds": 812.3}, ...},
     "files": {"tiny/model.safetensors": {"sha256": "...", "bytes": 27000000}, ...}}

Every file an artifact consists of is listed with its SHA-256. ``verified_dir(artifact)`` checks
them before anything loads the artifact, so a corrupt, truncated or missing file fails with a
message naming it instead of a confusing error deep inside transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rsoup_lib.errors import UserError
from rsoup_lib.io import atomic_write_json, sha256_file

DATA_DIR = Path(__file__).resolve().parent.parent / "data"  # the repository's data/: the one definition
MANIFEST = "MANIFEST.json"
REBUILD_HINT = "restore it with `git checkout -- data/` or rebuild it with `rsoup data build`"


def read_manifest(data_dir: Path = DATA_DIR) -> dict:
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"{path} is missing: {REBUILD_HINT}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is corrupt ({err}): {REBUILD_HINT}")


def verify_artifact(artifact: str, data_dir: Path = DATA_DIR) -> list[Path]:
    """Check every file of ``artifact`` against its checksum; returns their paths."""
    manifest = read_manifest(data_dir)
    if artifact not in manifest.get("artifacts", {}):
        raise UserError(f"artifact {artifact!r} is not in {Path(data_dir) / MANIFEST}: {REBUILD_HINT}")
    paths = []
    for rel in manifest["artifacts"][artifact]["files"]:
        path = Path(data_dir) / rel
        expected = manifest["files"][rel]["sha256"]
        if not path.is_file():
            raise UserError(f"{path} is missing: {REBUILD_HINT}")
        if sha256_file(path) != expected:
            raise UserError(f"{path} is corrupt (its SHA-256 differs from {MANIFEST}): {REBUILD_HINT}")
        paths.append(path)
    return paths


def verified_dir(artifact: str, data_dir: Path = DATA_DIR) -> Path:
    """The folder ``data_dir/artifact`` after checking its files (see ``verify_artifact``)."""
    verify_artifact(artifact, data_dir)
    return Path(data_dir) / artifact


def record_artifact(
    data_dir: Path, artifact: str, files: list[Path], config: dict[str, Any], seconds: float | None = None, **extra
) -> None:
    """Add (or replace) ``artifact`` in the manifest with the checksums of ``files``."""
    data_dir = Path(data_dir)
    path = data_dir / MANIFEST
    manifest = json.loads(path.read_text()) if path.is_file() else {"artifacts": {}, "files": {}}
    old = manifest["artifacts"].get(artifact, {})
    for rel in old.get("files", []):
        manifest["files"].pop(rel, None)
    rels = []
    for f in sorted(Path(f) for f in files):
        rel = f.resolve().relative_to(data_dir.resolve()).as_posix()
        manifest["files"][rel] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
        rels.append(rel)
    manifest["artifacts"][artifact] = {"files": rels, "config": config, "seconds": seconds, **extra}
    atomic_write_json(path, manifest)
