"""The whole book built once per test session in the smoke profile, shared by the tests that
need a real build (tests/test_book.py, tests/test_browser.py): one build, not one per module.

RSOUP_TEST_BOOK=PATH reuses an existing build folder instead (e.g. _build/smoke after
`rsoup book --profile smoke`), for iterating on the checks without rebuilding.
"""

from __future__ import annotations

import os
from pathlib import Path

from rsoup_lib import book
from rsoup_lib.profiles import get_profile

ROOT = Path(__file__).resolve().parent.parent
_built: dict[str, Path] = {}


def smoke_book(tmp_path_factory) -> Path:
    """The build folder (``_build/html`` and ``src`` inside) of the whole smoke book."""
    if "smoke" not in _built:
        if os.environ.get("RSOUP_TEST_BOOK"):
            build_dir = Path(os.environ["RSOUP_TEST_BOOK"]).resolve()
        else:
            build_dir = tmp_path_factory.mktemp("smoke-book")
            book.regenerate(get_profile("smoke"), build_dir=build_dir, root=ROOT, progress=False)
        _built["smoke"] = build_dir
    return _built["smoke"]
