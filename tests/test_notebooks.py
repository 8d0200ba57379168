"""Every notebook of the book runs through papermill in the smoke profile."""

import pytest

from rsoup_lib import book
from rsoup_lib.profiles import get_profile


@pytest.mark.slow
@pytest.mark.parametrize("entry", book.notebooks())
def test_notebook_runs_in_smoke_profile(entry, tmp_path):
    out = book.execute_notebook(entry, get_profile("smoke"), tmp_path, progress=False)
    import nbformat

    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "profile = \"smoke\"" in injected[0].source
