import subprocess
from pathlib import Path

import pytest

from rsoup_lib import book
from rsoup_lib.errors import UserError
from rsoup_lib.profiles import get_profile

ROOT = Path(__file__).resolve().parent.parent

NOTEBOOK = '''# %% [markdown]
# # A test notebook

# %% tags=["parameters"]
profile = "cpu"
steps = 100
mine = "default"

# %%
print(f"profile={profile} steps={steps} mine={mine}")
'''


def make_book(root: Path, body: str = NOTEBOOK) -> Path:
    (root / "notebooks").mkdir(parents=True)
    (root / "book").mkdir()
    (root / "book" / "intro.md").write_text("# Intro\n")
    (root / "notebooks" / "01_x.py").write_text(body)
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: C\n    chapters:\n      - file: notebooks/01_x\n"
    )
    (root / "_config.yml").write_text((ROOT / "_config.yml").read_text().replace("  - book/references.bib\n", "  []\n"))
    return root


def test_every_toc_entry_exists_and_notebooks_are_in_order():
    files = book.toc_files(ROOT)
    assert files[0] == "book/intro"
    for entry in files:
        assert (ROOT / f"{entry}.py").is_file() or (ROOT / f"{entry}.md").is_file(), entry
    nbs = book.notebooks(ROOT)
    assert nbs[0] == "notebooks/00_setup"
    assert nbs == sorted(nbs), "chapters are numbered in reading order"


def test_every_notebook_has_a_parameters_cell_and_reads_the_profile():
    for entry in book.notebooks(ROOT):
        declared = book.declared_parameters(ROOT / f"{entry}.py")
        assert "profile" in declared, f"{entry} should declare `profile`"


def test_only_declared_parameters_are_injected_and_overrides_win(tmp_path):
    root = make_book(tmp_path)
    params = book.notebook_parameters(root / "notebooks" / "01_x.py", get_profile("smoke"), {"mine": "x"})
    assert params == {"profile": "smoke", "steps": get_profile("smoke").steps, "mine": "x"}


def test_override_of_an_unknown_parameter_names_the_real_ones(tmp_path):
    root = make_book(tmp_path)
    with pytest.raises(UserError, match="no parameter 'stepz'.*profile, steps, mine"):
        book.notebook_parameters(root / "notebooks" / "01_x.py", get_profile("smoke"), {"stepz": 3})


def test_notebook_without_parameters_cell_is_refused(tmp_path):
    root = make_book(tmp_path, body="# %%\nx = 1\n")
    with pytest.raises(UserError, match="parameters"):
        book.notebook_parameters(root / "notebooks" / "01_x.py", get_profile("smoke"))


def test_unknown_notebook_lists_the_known_ones():
    with pytest.raises(UserError, match="00_setup"):
        book.resolve_notebook("99_nothing", ROOT)
    assert book.resolve_notebook("00_setup.py", ROOT) == "notebooks/00_setup"


@pytest.mark.slow
def test_failing_notebook_stops_with_its_name_and_cell(tmp_path):
    body = NOTEBOOK + '\n# %%\nraise ValueError("boom in the cell")\n'
    root = make_book(tmp_path / "src", body=body)
    with pytest.raises(book.NotebookError, match=r"notebooks/01_x failed in cell \[\d+\] \(raise ValueError.*\nValueError: boom in the cell"):
        book.regenerate(get_profile("smoke"), build_dir=tmp_path / "b", root=root, progress=False)


@pytest.mark.slow
def test_built_page_injects_parameters_and_has_plotly(tmp_path):
    """The real chapter 0 in the smoke profile, rendered: parameters injected, plotly embedded."""
    result = book.regenerate(
        get_profile("smoke"), only=["00_setup"], build_dir=tmp_path / "b", root=ROOT, progress=False
    )
    page = (result.html_dir / "notebooks" / "00_setup.html").read_text()
    assert "Plotly.newPlot" in page, "the figure's HTML output was dropped"
    assert "plotly.js v" in page, "plotly.js itself is not embedded, the figure would not draw offline"
    assert "tiny-random" in page  # the smoke profile's policy reached the notebook
    assert (result.html_dir / "index.html").is_file()


def test_no_executed_notebook_is_committed():
    proc = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    assert proc.stdout.strip() == ""
