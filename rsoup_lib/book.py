r"""Regenerating the book: Jupytext -> papermill -> jupyter-book.

For each notebook named in ``_toc.yml``, in order:

1. Jupytext reads ``notebooks/NAME.py`` (percent format) into a notebook;
2. papermill executes it with the profile's parameters injected after its ``parameters`` cell
   (only the names the notebook declares, then the user's overrides), with the repository root
   as working directory, and writes the executed copy into the build tree
   (``execute_notebook``);
3. ``finish_executed_notebook`` readies that copy for the page (below);

With the profile's ``jobs`` above 1 (the cpu profile: 2), that many notebooks execute at once,
each in its own process and kernel, the longest first (``execute_in_parallel``); a run that two
chapters share is still computed once, the run cache's lock making the second wait for it.

then jupyter-book 1.x renders the build tree to HTML with its own execution off and Sphinx
warnings treated as errors. A failing notebook stops the build with the notebook's name and the
failing cell's error.

The book reads right offline, with nothing fetched from the network:

- **MathJax is served by the book.** ``stage_sources`` copies MathJax 3's single-file
  ``es5/tex-svg-full.js`` (every TeX extension, SVG output with its glyphs inside: no font files,
  nothing loaded lazily) into ``book/_static/mathjax/`` of the build tree, and ``_config.yml``
  points Sphinx's ``mathjax_path`` at it. The file comes from the npm registry's ``mathjax``
  tarball (pinned version and sha512), downloaded once into ``~/.cache/rsoup`` (or
  ``$RSOUP_ASSET_DIR``); ``make setup`` fetches it so a build needs no network.
  SVG output, not CHTML, because plotly.js typesets ``$...$`` in figure labels with
  ``MathJax._.output.svg_ts``, which only the SVG components carry.
- **plotly.js is embedded once per page.** The kernels run with ``PLOTLY_RENDERER=notebook``
  (plotly >= 6 defaults to a mimetype renderer whose output jupyter-book 1 drops): its first
  ``fig.show()`` in a kernel outputs plotly.js itself, each figure then outputs a div and a
  script. That renderer also puts a ``<script src>`` for MathJax on cdnjs (and a MathJax 2
  config line) in front of *every* figure; ``clean_html_outputs`` deletes those from the
  executed notebook, and the build stops if any output still loads a remote script.
- **TeX in figure labels.** plotly draws a figure as soon as the page parses it, before the
  deferred MathJax has loaded, so ``book/_static/rsoup-plotly-math.js`` redraws, once MathJax is
  ready, the figures whose labels hold TeX (and loads the local MathJax on a page that has such
  a figure but no equation of its own: Sphinx loads MathJax only on pages with equations).
  plotly.js typesets a label holding ``$...$`` as a whole and drops any text outside the
  dollars: write ``r"$\text{reward at } \lambda$"``, not ``"reward at $\lambda$"``.

One parameters cell per chapter: papermill injects an ``injected-parameters`` cell after the
notebook's ``parameters`` cell; ``fold_parameters`` writes the values the build used into the
``parameters`` cell itself (same names, order and comments, under a comment naming the profile)
and deletes the injected cell, so each chapter shows one cell with the values it ran with. The
cell keeps its ``parameters`` tag: the executed notebook can be run again with papermill.

Boilerplate folded away: a cell tagged ``hide-input`` (``# %% tags=["hide-input"]`` in the
Jupytext file) shows its outputs with its code folded behind a "Show code cell source" toggle
(myst-nb and sphinx-togglebutton); ``hide-output`` folds the outputs, ``hide-cell`` both, and
``remove-input``/``remove-output``/``remove-cell`` drop them from the page.

``rsoup_lib.browser.check_in_browser`` opens every built page in headless Chromium with the
network blocked and reports figures drawn, equations typeset, JavaScript errors, remote requests
and broken links (``rsoup book --check-only``; ``tests/test_browser.py``).
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rsoup_lib.errors import UserError
from rsoup_lib.profiles import Profile

REPO_ROOT = Path(__file__).resolve().parent.parent
PLOTLY_RENDERER = "notebook"


@dataclass
class BookResult:
    html_dir: Path
    seconds: dict[str, float] = field(default_factory=dict)  # per notebook, plus "jupyter-book"
    wall_seconds: float = 0.0  # executing the notebooks (less than their sum with jobs > 1)


def toc_files(root: Path = REPO_ROOT) -> list[str]:
    """Every file entry of ``_toc.yml`` (root first), in reading order, without extension."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def notebooks(root: Path = REPO_ROOT) -> list[str]:
    """The toc entries that are Jupytext notebooks (``notebooks/NAME``), in order."""
    out = []
    for entry in toc_files(root):
        if (root / f"{entry}.py").is_file():
            out.append(entry)
        elif not (root / f"{entry}.md").is_file():
            raise UserError(f"_toc.yml names {entry!r}, but neither {entry}.py nor {entry}.md exists")
    return out


def resolve_notebook(name: str, root: Path = REPO_ROOT) -> str:
    """Accept ``01_rlhf_per_reward``, ``notebooks/01_rlhf_per_reward`` or ``....py``."""
    stem = Path(name).with_suffix("").name if name.endswith(".py") else Path(name).name
    for entry in notebooks(root):
        if Path(entry).name == stem or entry == name:
            return entry
    raise UserError(
        f"no notebook {name!r} in _toc.yml; the notebooks are: "
        + ", ".join(Path(e).name for e in notebooks(root))
    )


KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def read_notebook(path: Path):
    """A Jupytext file as a notebook, with the python3 kernel named if the file names none."""
    import jupytext

    nb = jupytext.read(path)
    nb.metadata.setdefault("kernelspec", dict(KERNELSPEC))
    return nb


def declared_parameters(notebook_path: Path) -> dict[str, Any]:
    """Names and default values of a notebook's ``parameters`` cell."""
    import jupytext
    import papermill

    # A private temporary folder: two builds (two profiles) inspecting the same notebook at
    # once must not write and delete each other's copy.
    with tempfile.TemporaryDirectory(prefix="rsoup-inspect-") as tmp:
        path = Path(tmp) / f"{notebook_path.stem}.ipynb"
        jupytext.write(read_notebook(notebook_path), path)
        info = papermill.inspect_notebook(str(path))
    return {name: spec["default"] for name, spec in info.items()}


def notebook_parameters(
    notebook_path: Path, profile: Profile, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The parameters papermill injects: the profile's values for the names the notebook
    declares (at least ``profile``), then the overrides. An override of one of the chapter's own
    parameters replaces it; an override of a profile field (``steps=500``, ``policy=...``) goes
    into the notebook's ``overrides`` dict, which ``chapter.setup(profile, overrides)`` applies;
    any other name is an error that lists both."""
    declared = declared_parameters(notebook_path)
    if not declared:
        raise UserError(f"{notebook_path} has no cell tagged `parameters`; add `# %% tags=[\"parameters\"]`")
    params = {k: v for k, v in profile.parameters().items() if k in declared}
    fields = set(profile.parameters()) - {"profile"}
    profile_overrides = None
    if "overrides" in declared:  # papermill reports a default as its source text
        import ast

        default = declared["overrides"]
        profile_overrides = dict(ast.literal_eval(default) if isinstance(default, str) else default or {})
    for name, value in (overrides or {}).items():
        if name in declared and name != "overrides":
            params[name] = value
        elif name in fields and profile_overrides is not None:
            profile_overrides[name] = value
        else:
            raise UserError(
                f"{notebook_path.name} has no parameter {name!r}; its parameters are: {', '.join(declared)}"
                + (f", and the profile fields: {', '.join(sorted(fields))}" if profile_overrides is not None else "")
            )
    if profile_overrides:
        profile.with_overrides(profile_overrides)  # a wrong name or type stops here, before any run
        params["overrides"] = profile_overrides
    return params


def execute_notebook(
    entry: str,
    profile: Profile,
    out_dir: Path,
    overrides: dict[str, Any] | None = None,
    root: Path = REPO_ROOT,
    progress: bool = True,
) -> Path:
    """Execute one notebook with papermill; returns the executed ``.ipynb`` in ``out_dir``."""
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from rsoup_lib.io import remove_stale_temporaries, temporary_file

    source = root / f"{entry}.py"
    params = notebook_parameters(source, profile, overrides)
    target = out_dir / f"{entry}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)  # what a killed build left
    # papermill saves its output after every cell: it writes to a temporary name, renamed to the
    # target once complete, so a killed build never leaves a half-executed page behind.
    unexecuted, executing = temporary_file(target, ".ipynb"), temporary_file(target, ".ipynb")
    jupytext.write(read_notebook(source), unexecuted)
    os.environ["PLOTLY_RENDERER"] = PLOTLY_RENDERER  # inherited by the kernel
    try:
        papermill.execute_notebook(
            str(unexecuted),
            str(executing),
            parameters=params,
            kernel_name="python3",
            cwd=str(root),
            progress_bar=progress,
            language="python",
        )
    except PapermillExecutionError as err:
        os.replace(executing, target)  # the executed copy, with the traceback, for the reader
        first_line = (err.source or "").strip().splitlines()[-1:] or [""]
        raise NotebookError(
            f"notebook {entry} failed in cell [{err.exec_count}] ({first_line[0][:80]}) "
            f"with profile {profile.name}:\n{err.ename}: {err.evalue}\n"
            f"(the executed copy, with the full traceback, is {target})"
        ) from None
    else:
        os.replace(executing, target)
    finally:
        unexecuted.unlink(missing_ok=True)
        executing.unlink(missing_ok=True)
    return target


def _execute_and_finish(entry: str, profile: Profile, build_src: Path, overrides, root: Path,
                        progress: bool = False) -> float:
    """Execute one notebook and ready it for the page; returns its wall seconds."""
    t0 = time.perf_counter()
    executed = execute_notebook(entry, profile, build_src, overrides, root, progress)
    finish_executed_notebook(executed, entry, profile, overrides)
    return time.perf_counter() - t0


SECONDS_FILE = "notebook_seconds.json"  # per build tree; book/notebook_seconds.json is the fallback


def _record_seconds(build_dir: Path, seconds: dict[str, float]) -> None:
    from rsoup_lib.io import atomic_write_text

    path = build_dir / SECONDS_FILE
    known = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_text(path, json.dumps({**known, **seconds}, indent=1, sort_keys=True) + "\n")


def expected_seconds(build_dir: Path, profile: Profile, root: Path = REPO_ROOT) -> dict[str, float]:
    """How long each notebook took last time: the build tree's record, else the repository's
    ``book/notebook_seconds.json`` for this profile (what the published build measured)."""
    local = build_dir / SECONDS_FILE
    if local.is_file():
        return json.loads(local.read_text())
    shipped = root / "book" / SECONDS_FILE
    return json.loads(shipped.read_text()).get(profile.name, {}) if shipped.is_file() else {}


def execute_in_parallel(run: list[str], profile: Profile, build_dir: Path, overrides, root: Path,
                        jobs: int) -> dict[str, float]:
    """Execute ``run`` with ``jobs`` kernels at once, the longest notebooks (by
    ``expected_seconds``) first so that the last to finish starts early. Each worker is a fresh
    process. A failure stops the queue (notebooks already running finish first) and raises."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    expected = expected_seconds(build_dir, profile, root)
    order = sorted(run, key=lambda e: -expected.get(e, 0.0))  # stable: unknown ones in TOC order
    print(f"[rsoup book] executing {len(order)} notebooks, {jobs} at a time (profile {profile.name}): "
          + ", ".join(order), flush=True)
    seconds: dict[str, float] = {}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_execute_and_finish, e, profile, build_dir / "src", overrides, root): e
                   for e in order}  # fmt: skip
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)  # report each as it ends
            for future in done:
                entry = futures[future]
                if future.exception() is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise future.exception()
                seconds[entry] = future.result()
                print(f"[rsoup book] {entry}: {seconds[entry]:.1f} s", flush=True)
                _record_seconds(build_dir, {entry: seconds[entry]})
    return seconds


class NotebookError(UserError):
    """A notebook raised while being executed."""


def finish_executed_notebook(
    path: Path, entry: str, profile: Profile, overrides: dict[str, Any] | None = None
) -> None:
    """Ready an executed notebook (``execute_notebook``'s output, left as papermill wrote it) for
    the book, in place: fold the parameter cells into one, make the HTML outputs offline."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    params = dict(nb.metadata.get("papermill", {}).get("parameters", {}))
    command = " ".join([f"rsoup book --profile {profile.name}"] + [f"-p {k}={json.dumps(v)}" for k, v in (overrides or {}).items()])
    header = f"# Parameters of this build ({command}), set by papermill;\n# the notebook's defaults are in {entry}.py.\n"
    fold_parameters(nb, params, header)
    clean_html_outputs(nb, entry)
    from rsoup_lib.io import atomic_write_text

    text = nbformat.writes(nb)  # what nbformat.write writes, written atomically
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def substitute_parameters(source: str, params: dict[str, Any]) -> str:
    """``source`` (a parameters cell) with the value of each top-level ``name = value`` whose
    name is in ``params`` replaced by papermill's rendering of the new value; comments, order and
    every other line stay. Names the cell does not assign are appended."""
    from papermill.translators import PythonTranslator

    data = source.encode()
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spans = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target = node.target
        else:
            continue
        if isinstance(target, ast.Name) and target.id in params:
            value = node.value
            begin = starts[value.lineno - 1] + value.col_offset  # ast offsets count UTF-8 bytes
            end = starts[value.end_lineno - 1] + value.end_col_offset
            spans.append((begin, end, target.id))
    for begin, end, name in sorted(spans, reverse=True):
        data = data[:begin] + PythonTranslator.translate(params[name]).encode() + data[end:]
    out = data.decode()
    missing = [name for name in params if name not in {n for _, _, n in spans}]
    if missing:
        out = out.rstrip("\n") + "\n" + "".join(f"{n} = {PythonTranslator.translate(params[n])}\n" for n in missing)
    return out


def fold_parameters(nb, params: dict[str, Any], header: str = "") -> bool:
    """Merge papermill's ``injected-parameters`` cell into the notebook's ``parameters`` cell.

    The ``parameters`` cell gets the injected values (see ``substitute_parameters``) under
    ``header``, keeps its tag (so papermill can run the executed notebook again) and the
    injected cell is deleted. Returns False when there was nothing to fold.
    """
    injected = next((i for i, c in enumerate(nb.cells) if "injected-parameters" in _tags(c)), None)
    declared = next((i for i, c in enumerate(nb.cells) if "parameters" in _tags(c)), None)
    if injected is None:
        return False
    if declared is None:  # papermill put it first; it becomes the parameters cell
        cell = nb.cells[injected]
        body = "\n".join(l for l in cell.source.splitlines() if l.strip() != "# Parameters") + "\n"
        cell.metadata["tags"] = ["parameters"] + [t for t in _tags(cell) if t != "injected-parameters"]
        cell.source = header + body
        return True
    cell = nb.cells[declared]
    cell.source = header + substitute_parameters(cell.source, params).rstrip("\n")
    del nb.cells[injected]
    return True


# plotly's "notebook" renderer (see the module docstring) writes these before every figure.
_PLOTLY_MATHJAX_SCRIPT = re.compile(r"<script[^>]*\ssrc=[\"']https?://[^\"']*mathjax[^\"']*[\"'][^>]*>\s*</script>", re.I)
_MATHJAX2_CONFIG = (
    "if (window.MathJax && window.MathJax.Hub && window.MathJax.Hub.Config) "
    '{window.MathJax.Hub.Config({SVG: {font: "STIX-Web"}});}'
)
_MATHJAX2_CONFIG_SCRIPT = re.compile(r"<script[^>]*>\s*" + re.escape(_MATHJAX2_CONFIG) + r"\s*</script>")
# Anything that would still make a page fetch code: <script src="http...">, import "https://...".
_REMOTE_CODE = re.compile(
    r"<script[^>]*\ssrc=[\"']?((?:https?:)?//[^\"'\s>]+)|\bimport\s*\(?\s*[\"']((?:https?:)?//[^\"']+)", re.I
)


def clean_html(html: str) -> str:
    """One HTML output without plotly's MathJax-from-a-CDN tags and MathJax 2 config."""
    html = _PLOTLY_MATHJAX_SCRIPT.sub("", html)
    html = _MATHJAX2_CONFIG_SCRIPT.sub("", html)
    return html.replace(_MATHJAX2_CONFIG, "")


def clean_html_outputs(nb, entry: str = "notebook") -> int:
    """Clean every ``text/html`` output of ``nb`` in place (see ``clean_html``); returns how many
    changed. Raises UserError if an output still loads a remote script."""
    changed = 0
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/html" not in data:
                continue
            html = data["text/html"]
            html = "".join(html) if isinstance(html, list) else html
            cleaned = clean_html(html)
            remote = _REMOTE_CODE.search(cleaned)
            if remote:
                raise UserError(
                    f"{entry}: an output of cell {index} loads {remote.group(1) or remote.group(2)}; the book must "
                    "read offline (plotly: keep PLOTLY_RENDERER=notebook, which embeds plotly.js)"
                )
            if cleaned != html:
                data["text/html"] = cleaned
                changed += 1
    return changed


# MathJax 3, from the npm registry's tarball (see the module docstring).
MATHJAX_VERSION = "3.2.2"
MATHJAX_URL = f"https://registry.npmjs.org/mathjax/-/mathjax-{MATHJAX_VERSION}.tgz"
MATHJAX_SHA512 = "Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
MATHJAX_FILES = {"package/es5/tex-svg-full.js": "tex-svg-full.js", "package/LICENSE": "LICENSE"}
STATIC_DIR = "book/_static"  # html_static_path in _config.yml; MathJax goes to its mathjax/


def asset_dir() -> Path:
    """Where downloaded assets are kept between builds: $RSOUP_ASSET_DIR or ~/.cache/rsoup."""
    if os.environ.get("RSOUP_ASSET_DIR"):
        return Path(os.environ["RSOUP_ASSET_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rsoup"


def _sha512_b64(path: Path) -> str:
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode()


def mathjax_tarball(download: bool = True) -> Path:
    """The MathJax npm tarball, downloaded (and checked against its sha512) on first use."""
    path = asset_dir() / f"mathjax-{MATHJAX_VERSION}.tgz"
    if path.is_file() and _sha512_b64(path) == MATHJAX_SHA512:
        return path
    if not download:
        raise UserError(f"MathJax {MATHJAX_VERSION} is not in {path.parent}; run `make setup`")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    print(f"[rsoup book] downloading MathJax {MATHJAX_VERSION} from {MATHJAX_URL}", flush=True)
    try:
        with urllib.request.urlopen(MATHJAX_URL, timeout=120) as response, open(partial, "wb") as f:
            shutil.copyfileobj(response, f)
        if _sha512_b64(partial) != MATHJAX_SHA512:
            raise UserError(f"{MATHJAX_URL} does not match its published sha512; not using it")
        partial.replace(path)
    except OSError as err:
        raise UserError(
            f"could not download MathJax ({err}). Put {MATHJAX_URL} at {path} "
            f"(or `npm pack mathjax@{MATHJAX_VERSION}` there), or set RSOUP_ASSET_DIR to a folder holding it"
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    return path


def stage_mathjax(static_dir: Path) -> Path:
    """Extract MathJax's files into ``static_dir/mathjax``; returns that folder."""
    out = static_dir / "mathjax"
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(mathjax_tarball()) as tar:
        for member, name in MATHJAX_FILES.items():
            source = tar.extractfile(member)
            if source is None:
                raise UserError(f"{member} is missing from the MathJax tarball")
            (out / name).write_bytes(source.read())
    return out


def stage_sources(build_src: Path, root: Path = REPO_ROOT) -> None:
    """Copy the book's configuration, markdown pages and static files into the build tree,
    with MathJax."""
    build_src.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, build_src / name)
    if (build_src / "book").exists():
        shutil.rmtree(build_src / "book")
    shutil.copytree(root / "book", build_src / "book")
    stage_mathjax(build_src / STATIC_DIR)


def build_html(build_src: Path, build_dir: Path) -> Path:
    """Run jupyter-book 1.x on the staged tree, Sphinx warnings as errors, every page rebuilt
    (``--all``: an environment cached from an earlier build can miss a new bibliography entry,
    and sphinxcontrib-bibtex then fails with a KeyError on it; a rebuild takes seconds)."""
    cmd = [
        sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(build_src),
        "--path-output", str(build_dir), "--warningiserror", "--keep-going", "--all",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        problems = [l for l in lines if "WARNING" in l or "ERROR" in l] or lines[-40:]
        raise UserError(f"jupyter-book failed (exit {proc.returncode}):\n" + "\n".join(problems))
    return build_dir / "_build" / "html"


def regenerate(
    profile: Profile,
    only: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    build_dir: Path | None = None,
    root: Path = REPO_ROOT,
    html: bool = True,
    progress: bool = True,
) -> BookResult:
    """Execute the notebooks (all, or ``only`` these) and render the book.

    With ``only``, the other notebooks keep the executed copies already in the build tree; any
    that was never executed is staged unexecuted (its code shows, its outputs do not) so the
    HTML still builds.
    """
    build_dir = Path(build_dir or root / "_build" / profile.name)
    build_src = build_dir / "src"
    if any(p.exists() and not p.is_dir() for p in (build_dir, build_src, *build_dir.absolute().parents)):
        raise UserError(f"--build-dir {build_dir} is not a folder (or lies under a file): give a folder")
    entries = notebooks(root)
    selected = [resolve_notebook(n, root) for n in only] if only else entries
    for entry in selected:  # a wrong -p stops here, before anything is staged or run
        notebook_parameters(root / f"{entry}.py", profile, overrides)
    stage_sources(build_src, root)
    result = BookResult(html_dir=build_dir / "_build" / "html")
    for entry in entries:
        target = build_src / f"{entry}.ipynb"
        if entry not in selected and not target.exists():
            import jupytext

            target.parent.mkdir(parents=True, exist_ok=True)
            jupytext.write(read_notebook(root / f"{entry}.py"), target)
    run = [e for e in entries if e in selected]
    # -p jobs=N overrides the profile's; the other overrides are the notebooks' business
    jobs = profile.with_overrides({"jobs": overrides["jobs"]}).jobs if "jobs" in (overrides or {}) else profile.jobs
    t0 = time.perf_counter()
    if jobs > 1 and len(run) > 1:
        result.seconds.update(execute_in_parallel(run, profile, build_dir, overrides, root, jobs))
    else:
        for entry in run:
            print(f"[rsoup book] executing {entry} (profile {profile.name})", flush=True)
            result.seconds[entry] = _execute_and_finish(entry, profile, build_src, overrides, root, progress)
            print(f"[rsoup book] {entry}: {result.seconds[entry]:.1f} s", flush=True)
            _record_seconds(build_dir, {entry: result.seconds[entry]})
    result.wall_seconds = time.perf_counter() - t0
    if html:
        t0 = time.perf_counter()
        result.html_dir = build_html(build_src, build_dir)
        result.seconds["jupyter-book"] = time.perf_counter() - t0
    return result
