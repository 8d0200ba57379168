import dataclasses
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from _smoke_book import smoke_book as build_smoke_book

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
    for folder in ("_static", "_ext"):  # named by _config.yml
        shutil.copytree(ROOT / "book" / folder, root / "book" / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    return build_smoke_book(tmp_path_factory)


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
def test_built_page_injects_parameters_and_has_plotly(smoke_book):
    """The real chapter 0 in the smoke profile, rendered: parameters injected, plotly embedded."""
    html_dir = smoke_book / "_build" / "html"
    page = (html_dir / "notebooks" / "00_setup.html").read_text()
    assert "Plotly.newPlot" in page, "the figure's HTML output was dropped"
    assert "plotly.js v" in page, "plotly.js itself is not embedded, the figure would not draw offline"
    assert "tiny-random" in page  # the smoke profile's policy reached the notebook
    assert (html_dir / "index.html").is_file()


@pytest.mark.slow
def test_built_pages_load_nothing_remote_and_serve_mathjax(smoke_book):
    html_dir = smoke_book / "_build" / "html"
    assert (html_dir / "_static" / "mathjax" / "tex-svg-full.js").is_file()
    for entry in book.notebooks(ROOT):
        page = (html_dir / f"{entry}.html").read_text()
        remote = [m.group(0) for m in book._REMOTE_CODE.finditer(page)]
        assert remote == [], f"{entry}: {remote}"
        assert "cdnjs" not in page and "MathJax.Hub" not in page
        assert page.count("plotly.js v") <= 1, "plotly.js embedded more than once"
        if "$" in (ROOT / f"{entry}.py").read_text():
            assert '_static/mathjax/tex-svg-full.js' in page


@pytest.mark.slow
def test_each_chapter_has_one_parameters_cell_with_the_build_values(smoke_book):
    import ast

    from papermill.translators import PythonTranslator

    smoke = get_profile("smoke").parameters()
    for entry in book.notebooks(ROOT):
        nb = nbformat.read(smoke_book / "src" / f"{entry}.ipynb", as_version=4)
        tags = [c.metadata.get("tags", []) for c in nb.cells]
        assert sum("parameters" in t for t in tags) == 1, entry
        assert not any("injected-parameters" in t for t in tags), entry
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assert cell.source.startswith("# Parameters of this build (rsoup book --profile smoke)"), entry
        assigned = {n.targets[0].id: n for n in ast.parse(cell.source).body if isinstance(n, ast.Assign)}
        declared = book.declared_parameters(ROOT / f"{entry}.py")
        assert set(declared) <= set(assigned), f"{entry}: a declared parameter is no longer assigned"
        for name in declared:
            if name in smoke:
                line = cell.source.splitlines()[assigned[name].lineno - 1]
                assert line.startswith(f"{name} = {PythonTranslator.translate(smoke[name])}"), (entry, line)


PARAMS_CELL = """profile = "cpu"  # the profile's name
steps = 100  # optimiser steps
mine = "déjà"  # not a profile field: keeps its default
rewards = [
    "sentiment",  # multi-line value
    "conciseness",
]
lr: float = 3e-4
"""


def test_substitute_parameters_keeps_names_order_and_comments():
    out = book.substitute_parameters(PARAMS_CELL, {"profile": "smoke", "steps": 3, "rewards": ["a"], "lr": 1e-3})
    assert out == (
        'profile = "smoke"  # the profile\'s name\n'
        "steps = 3  # optimiser steps\n"
        'mine = "déjà"  # not a profile field: keeps its default\n'
        'rewards = ["a"]\n'
        "lr: float = 0.001\n"
    )
    assert book.substitute_parameters("a = 1\n", {"b": True}) == "a = 1\nb = True\n"


def _notebook_with_injected_cell():
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": dict(book.KERNELSPEC)})
    params = nbformat.v4.new_code_cell(PARAMS_CELL, metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell('# Parameters\nprofile = "smoke"\nsteps = 3\n', metadata={"tags": ["injected-parameters"]})
    nb.cells = [nbformat.v4.new_markdown_cell("# T"), params, injected, nbformat.v4.new_code_cell("print(steps)")]
    return nb


def test_fold_parameters_leaves_one_parameters_cell():
    nb = _notebook_with_injected_cell()
    assert book.fold_parameters(nb, {"profile": "smoke", "steps": 3}, "# header\n")
    assert [c.metadata.get("tags", []) for c in nb.cells] == [[], ["parameters"], []]
    assert nb.cells[1].source.startswith('# header\nprofile = "smoke"  # the profile\'s name\nsteps = 3  #')
    assert 'mine = "déjà"' in nb.cells[1].source
    assert not book.fold_parameters(nb, {})  # nothing left to fold


def test_folded_notebook_is_still_a_papermill_notebook(tmp_path):
    import papermill

    nb = _notebook_with_injected_cell()
    book.fold_parameters(nb, {"profile": "smoke", "steps": 3}, "# header\n")
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert papermill.inspect_notebook(str(path))["steps"]["default"] == "3"


PLOTLY_FIGURE_OUTPUT = (
    '<div>            <script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/3.2.2/es5/tex-svg.min.js"></script>'
    '<script>if (window.MathJax && window.MathJax.Hub && window.MathJax.Hub.Config) '
    '{window.MathJax.Hub.Config({SVG: {font: "STIX-Web"}});}</script>                '
    '<div id="f" class="plotly-graph-div"></div><script>Plotly.newPlot("f", [])</script></div>'
)


def test_clean_html_drops_plotly_mathjax_from_a_cdn():
    out = book.clean_html(PLOTLY_FIGURE_OUTPUT)
    assert "mathjax" not in out.lower() and "https://" not in out
    assert '<div id="f" class="plotly-graph-div"></div><script>Plotly.newPlot("f", [])</script>' in out


def test_an_output_loading_a_remote_script_stops_the_build():
    nb = nbformat.v4.new_notebook()
    out = nbformat.v4.new_output("display_data", data={"text/html": '<script src="https://cdn.plot.ly/plotly-3.0.1.min.js"></script>'})
    nb.cells = [nbformat.v4.new_code_cell("fig.show()", outputs=[out])]
    with pytest.raises(UserError, match="cell 0 loads https://cdn.plot.ly/plotly-3.0.1.min.js"):
        book.clean_html_outputs(nb, "notebooks/01_x")
    nb.cells[0].outputs[0].data["text/html"] = PLOTLY_FIGURE_OUTPUT
    assert book.clean_html_outputs(nb) == 1


def test_staged_sources_carry_mathjax(tmp_path):
    book.stage_sources(tmp_path / "src")
    js = tmp_path / "src" / book.STATIC_DIR / "mathjax" / "tex-svg-full.js"
    assert js.stat().st_size > 1_000_000
    assert (tmp_path / "src" / book.STATIC_DIR / "rsoup-plotly-math.js").is_file()


def test_no_executed_notebook_is_committed():
    proc = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    assert proc.stdout.strip() == ""


def _two_notebook_book(root: Path, second: str) -> Path:
    make_book(root)
    (root / "notebooks" / "02_y.py").write_text(second)
    toc = root / "_toc.yml"
    toc.write_text(toc.read_text() + "      - file: notebooks/02_y\n")
    return root


def test_expected_seconds_prefer_the_build_trees_record_then_the_shipped_one(tmp_path):
    import json

    root, build = tmp_path / "src", tmp_path / "b"
    (root / "book").mkdir(parents=True)
    build.mkdir()
    assert book.expected_seconds(build, get_profile("cpu"), root) == {}
    (root / "book" / book.SECONDS_FILE).write_text(json.dumps({"cpu": {"notebooks/01_x": 3.0}}))
    assert book.expected_seconds(build, get_profile("cpu"), root) == {"notebooks/01_x": 3.0}
    assert book.expected_seconds(build, get_profile("smoke"), root) == {}
    (build / book.SECONDS_FILE).write_text(json.dumps({"notebooks/01_x": 7.0}))
    assert book.expected_seconds(build, get_profile("cpu"), root) == {"notebooks/01_x": 7.0}


@pytest.mark.slow
def test_parallel_build_starts_the_longest_first_and_records_each_notebooks_time(tmp_path, capsys):
    import json

    root = _two_notebook_book(tmp_path / "src", NOTEBOOK)
    build = tmp_path / "b"
    build.mkdir()
    (build / book.SECONDS_FILE).write_text(json.dumps({"notebooks/01_x": 1.0, "notebooks/02_y": 5.0}))
    two_jobs = dataclasses.replace(get_profile("smoke"), jobs=2)
    result = book.regenerate(two_jobs, build_dir=build, root=root, html=False, progress=False)
    assert "2 at a time (profile smoke): notebooks/02_y, notebooks/01_x" in capsys.readouterr().out
    assert json.loads((build / book.SECONDS_FILE).read_text()) == result.seconds
    for entry in ("01_x", "02_y"):
        nb = nbformat.read(build / "src" / "notebooks" / f"{entry}.ipynb", as_version=4)
        assert "profile=smoke" in str(nb.cells[-1].outputs)


@pytest.mark.slow
def test_parallel_build_stops_with_the_failing_notebooks_name(tmp_path):
    body = NOTEBOOK + '\n# %%\nraise ValueError("boom in the cell")\n'
    root = _two_notebook_book(tmp_path / "src", body)
    with pytest.raises(book.NotebookError, match=r"notebooks/02_y failed in cell .*\nValueError: boom in the cell"):
        book.regenerate(dataclasses.replace(get_profile("smoke"), jobs=2), build_dir=tmp_path / "b", root=root,
                        html=False, progress=False)  # fmt: skip
