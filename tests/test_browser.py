"""The book in a real browser: headless Chromium opens every built page with the network cut.

A reader must see every plotly figure drawn, every equation typeset (MathJax served by the book
itself), no JavaScript error, nothing fetched from the network and no broken link. The chapters'
screenshots land in the build folder's screenshots/ for a person to look at.

Needs Chromium (Debian: `apt-get install chromium`; .ci/run installs it). Without one these
tests skip, unless RSOUP_REQUIRE_BROWSER=1 (CI), where they fail.
"""

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from _smoke_book import smoke_book as build_smoke_book

from rsoup_lib import book, browser
from rsoup_lib.profiles import get_profile

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _chromium():
    if browser.find_chromium() is None:
        message = "no Chromium on this machine (apt-get install chromium, or set RSOUP_CHROMIUM)"
        if os.environ.get("RSOUP_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    return build_smoke_book(tmp_path_factory)


def test_every_page_of_the_smoke_book_reads_right_offline(smoke_book):
    html_dir = smoke_book / "_build" / "html"
    report = browser.check_in_browser(html_dir, screenshots=smoke_book / "screenshots", progress=False)
    print(report.summary())
    assert report.problems() == []
    pages = {p.page: p for p in report.pages}
    for entry in book.toc_files(ROOT):
        assert f"{entry}.html" in pages, f"{entry} was not built"
    for entry in book.notebooks(ROOT):
        page = pages[f"{entry}.html"]
        assert page.figures > 0 and page.drawn == page.figures, entry
        if "$" in (ROOT / f"{entry}.py").read_text():
            assert page.equations > 0 and page.mathjax_version == book.MATHJAX_VERSION, entry
        assert page.toc_links >= len(book.toc_files(ROOT)), f"{entry}: the table of contents is missing links"
        shot = smoke_book / "screenshots" / f"{Path(entry).name}.png"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot


MATH_NOTEBOOK = r'''# %% [markdown]
# # Mechanisms
#
# Inline $a^2 + b^2 = c^2$ and a display equation:
#
# $$\int_0^1 x\,dx = \frac{1}{2}$$

# %% tags=["parameters"]
profile = "cpu"
steps = 100  # optimiser steps
mine = "default"

# %% tags=["hide-input"]
print("output of a folded cell")

# %%
import plotly.graph_objects as go

fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0], name=r"$\lambda$"))
fig.update_layout(title=r"$\text{soup at } \lambda = 0.5$", xaxis_title=r"$\lambda$", yaxis_title="reward")
fig.show()
'''

NO_MATH_NOTEBOOK = r'''# %% [markdown]
# # No equation in the text, TeX in a figure

# %% tags=["parameters"]
profile = "cpu"
mine = "default"

# %%
import plotly.graph_objects as go

fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
fig.update_layout(title=r"$\beta\text{ sweep}$", xaxis_title="a plain label")
fig.show()
'''


def test_mechanisms_on_a_small_book(tmp_path):
    """One parameters cell, hide-input, equations and TeX figure labels, on a page with equations
    and on one without (where the book's MathJax is loaded for the figure alone)."""
    root = tmp_path / "root"
    (root / "notebooks").mkdir(parents=True)
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "book" / "intro.md").write_text("# Intro\n")
    (root / "book" / "references.bib").write_text("")
    (root / "notebooks" / "01_math.py").write_text(MATH_NOTEBOOK)
    (root / "notebooks" / "02_nomath.py").write_text(NO_MATH_NOTEBOOK)
    (root / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: C\n    chapters:\n"
        "      - file: notebooks/01_math\n      - file: notebooks/02_nomath\n"
    )
    result = book.regenerate(
        get_profile("smoke"), build_dir=tmp_path / "b", root=root, overrides={"mine": "x"}, progress=False
    )

    nb = nbformat.read(tmp_path / "b" / "src" / "notebooks" / "01_math.ipynb", as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert params[0].source == (
        '# Parameters of this build (rsoup book --profile smoke -p mine="x"), set by papermill;\n'
        "# the notebook's defaults are in notebooks/01_math.py.\n"
        f'profile = "smoke"\nsteps = {get_profile("smoke").steps}  # optimiser steps\nmine = "x"'
    )

    report = browser.check_in_browser(result.html_dir, screenshots=tmp_path / "shots", progress=False)
    assert report.problems() == []
    pages = {p.page: p for p in report.pages}
    math, nomath = pages["notebooks/01_math.html"], pages["notebooks/02_nomath.html"]
    assert (math.equations, math.typeset) == (2, 2)
    assert math.tex_labels == math.tex_labels_typeset == 2  # title and x-axis title
    assert math.hidden_inputs == math.hidden_inputs_folded == 1
    assert "output of a folded cell" in (result.html_dir / "notebooks" / "01_math.html").read_text()
    assert nomath.equations == 0 and nomath.tex_labels == nomath.tex_labels_typeset == 1
    assert nomath.mathjax_version == book.MATHJAX_VERSION
    assert sorted(p.name for p in (tmp_path / "shots").iterdir()) == ["01_math.png", "02_nomath.png"]


def test_the_check_sees_what_a_reader_would_miss(tmp_path):
    """The checks fail where they should: raw TeX, a figure that never draws, a JavaScript
    error, a remote script and a broken link."""
    html = tmp_path / "html"
    (html / "notebooks").mkdir(parents=True)
    (html / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=notebooks/bad.html" />')
    (html / "notebooks" / "bad.html").write_text(
        "<html><body><p>raw \\(x^2\\) here</p><span class='math'>\\(y\\)</span>"
        "<div class='plotly-graph-div'></div><script>undefinedFunction()</script>"
        "<script src='https://cdn.example.com/x.js'></script><a href='missing.html'>x</a></body></html>"
    )
    report = browser.check_in_browser(html, timeout=2, progress=False)
    problems = "\n".join(report.problems())
    assert "1 of 1 plotly figures not drawn" in problems
    assert "1 of 1 equations not typeset" in problems
    assert "raw TeX in the text" in problems
    assert "undefinedFunction is not defined" in problems
    assert "remote request: https://cdn.example.com/x.js" in problems
    assert "broken link: file://" in problems and "missing.html" in problems
