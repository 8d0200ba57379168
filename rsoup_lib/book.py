r"""Regenerating the book: Jupytext -> papermill -> jupyter-book.

For each notebook named in ``_toc.yml``, in order:

1. Jupytext reads ``notebooks/NAME.py`` (percent format) into a notebook;
2. papermill executes it with the profile's parameters injected after its ``parameters`` cell
   (only the names the notebook declares, then the user's overrides), with the repository root
   as working directory, and writes the executed copy into the build tree
   (``execute_notebook``);
3. ``finish_executed_notebook`` readies that copy for the page (below);

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

``check_in_browser`` opens every built page in headless Chromium with the network blocked and
reports figures drawn, equations typeset, JavaScript errors, remote requests and broken links
(``rsoup book --check-only``; ``tests/test_browser.py``).
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
import threading
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

    tmp = notebook_path.parent / f".tmp-{notebook_path.stem}.ipynb"
    try:
        jupytext.write(read_notebook(notebook_path), tmp)
        info = papermill.inspect_notebook(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
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

    source = root / f"{entry}.py"
    params = notebook_parameters(source, profile, overrides)
    target = out_dir / f"{entry}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    unexecuted = target.with_name(f".in-{target.name}")
    jupytext.write(read_notebook(source), unexecuted)
    os.environ["PLOTLY_RENDERER"] = PLOTLY_RENDERER  # inherited by the kernel
    try:
        papermill.execute_notebook(
            str(unexecuted),
            str(target),
            parameters=params,
            kernel_name="python3",
            cwd=str(root),
            progress_bar=progress,
            language="python",
        )
    except PapermillExecutionError as err:
        first_line = (err.source or "").strip().splitlines()[-1:] or [""]
        raise NotebookError(
            f"notebook {entry} failed in cell [{err.exec_count}] ({first_line[0][:80]}) "
            f"with profile {profile.name}:\n{err.ename}: {err.evalue}\n"
            f"(the executed copy, with the full traceback, is {target})"
        ) from None
    finally:
        unexecuted.unlink(missing_ok=True)
    return target


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
    nbformat.write(nb, path)


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
    """Run jupyter-book 1.x on the staged tree, Sphinx warnings as errors."""
    cmd = [
        sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(build_src),
        "--path-output", str(build_dir), "--warningiserror", "--keep-going",
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
    stage_sources(build_src, root)
    entries = notebooks(root)
    selected = [resolve_notebook(n, root) for n in only] if only else entries
    result = BookResult(html_dir=build_dir / "_build" / "html")
    for entry in entries:
        target = build_src / f"{entry}.ipynb"
        if entry in selected:
            print(f"[rsoup book] executing {entry} (profile {profile.name})", flush=True)
            t0 = time.perf_counter()
            executed = execute_notebook(entry, profile, build_src, overrides, root, progress)
            finish_executed_notebook(executed, entry, profile, overrides)
            result.seconds[entry] = time.perf_counter() - t0
            print(f"[rsoup book] {entry}: {result.seconds[entry]:.1f} s", flush=True)
        elif not target.exists():
            import jupytext

            target.parent.mkdir(parents=True, exist_ok=True)
            jupytext.write(read_notebook(root / f"{entry}.py"), target)
    if html:
        t0 = time.perf_counter()
        result.html_dir = build_html(build_src, build_dir)
        result.seconds["jupyter-book"] = time.perf_counter() - t0
    return result


# The book in a real browser ------------------------------------------------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """$RSOUP_CHROMIUM, or the first Chromium or Chrome on the PATH."""
    if os.environ.get("RSOUP_CHROMIUM"):
        return os.environ["RSOUP_CHROMIUM"]
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


class Chromium:
    """Headless Chromium driven with the DevTools protocol over a pipe (``--remote-debugging-pipe``:
    JSON messages separated by NUL bytes on file descriptors 3 and 4), so no websocket library
    and no open port. The network is cut: every http(s) request goes to a proxy that does not
    exist (file:// pages are unaffected) and host names resolve to nothing."""

    def __init__(self, executable: str | None = None, width: int = 1280, height: int = 900):
        executable = executable or find_chromium()
        if not executable:
            raise UserError(
                "no Chromium found (looked for " + ", ".join(CHROMIUM_NAMES) + "); "
                "install it (Debian: apt-get install chromium) or set RSOUP_CHROMIUM"
            )
        self.width, self.height = width, height
        self.profile_dir = tempfile.mkdtemp(prefix="rsoup-chromium-")
        args = [
            executable, "--headless", "--remote-debugging-pipe", "--no-first-run", "--no-default-browser-check",
            f"--user-data-dir={self.profile_dir}", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
            "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
            "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={width},{height}", "about:blank",
        ]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to sandbox as root (CI containers)
        import fcntl

        def high(fd: int) -> int:  # out of the way of 0-4, close-on-exec like every Python fd
            out = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
            os.close(fd)
            return out

        to_child_r, self._to_child = map(high, os.pipe())
        self._from_child, from_child_w = map(high, os.pipe())

        def child_fds():  # Chromium reads commands on fd 3 and writes replies on fd 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        # close_fds=False only lets 3 and 4 through: every other fd Python opened is close-on-exec.
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            close_fds=False, preexec_fn=child_fds,
        )  # fmt: skip
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._lock = threading.Lock()
        self._replies: dict[int, dict] = {}
        self._events: list[dict] = []
        self._changed = threading.Condition()
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.version = self.call("Browser.getVersion")["product"]

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._changed:
                    self._replies[-1] = {"error": {"message": "Chromium exited"}}
                    self._changed.notify_all()
                return
            buffer += chunk
            if b"\0" not in chunk:  # a message is still arriving (screenshots run to megabytes)
                continue
            *messages, buffer = buffer.split(b"\0")
            with self._changed:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self._events.append(message)
                self._changed.notify_all()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line.decode(errors="replace").rstrip())
            del self._stderr[:-50]

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60):
        with self._lock:
            self._next_id += 1
            ident = self._next_id
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = memoryview(json.dumps(message).encode() + b"\0")
        with self._lock:
            while data:
                data = data[os.write(self._to_child, data) :]
        deadline = time.monotonic() + timeout
        with self._changed:
            while ident not in self._replies:
                if -1 in self._replies:
                    raise UserError(f"Chromium exited while answering {method}:\n" + "\n".join(self._stderr[-10:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise UserError(f"Chromium did not answer {method} within {timeout:.0f} s")
                self._changed.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise UserError(f"Chromium: {method} failed: {reply['error'].get('message')}")
        return reply.get("result", {})

    def events(self, session: str) -> list[dict]:
        with self._changed:
            return [e for e in self._events if e.get("sessionId") == session]

    def wait_event(self, session: str, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self._events:
                    if event.get("sessionId") == session and event["method"] == method:
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or -1 in self._replies:
                    raise UserError(f"Chromium: no {method} within {timeout:.0f} s")
                self._changed.wait(left)

    def open(self, url: str) -> str:
        """A new tab with the page loading; returns its session."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        self.call("Page.navigate", {"url": url}, session=session)
        self.wait_event(session, "Page.loadEventFired")
        return session

    def evaluate(self, session: str, expression: str, timeout: float = 60):
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=session,
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise UserError(f"Chromium: {result['exceptionDetails'].get('text')} in {expression[:60]}...")
        return result["result"].get("value")

    def screenshot(self, session: str, path: Path, max_height: int = 6000) -> None:
        """The page from its top, at most ``max_height`` pixels of it, as a PNG. The viewport is
        made that tall for the capture (``captureBeyondViewport`` drew the book's layout shifted
        off the left edge), then set back."""
        size = self.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        height = int(min(max(size["height"], 1), max_height))
        metrics = {"width": self.width, "deviceScaleFactor": 1, "mobile": False}
        self.call("Emulation.setDeviceMetricsOverride", {**metrics, "height": height}, session=session)
        try:
            self.evaluate(session, "new Promise(r => requestAnimationFrame(() => setTimeout(r, 300)))")
            shot = self.call("Page.captureScreenshot", {"format": "png"}, session=session)
        finally:
            self.call("Emulation.setDeviceMetricsOverride", {**metrics, "height": self.height}, session=session)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close_page(self, session: str) -> None:
        self.call("Page.close", session=session)
        with self._changed:
            self._events = [e for e in self._events if e.get("sessionId") != session]

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except UserError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        os.close(self._to_child)
        if not self._reader.is_alive():
            os.close(self._from_child)
        shutil.rmtree(self.profile_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# Run in each page once it has loaded: wait for the figures and MathJax, then describe the page.
_PAGE_REPORT_JS = r"""
(async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const deadline = Date.now() + %(timeout_ms)d;
  const until = async (p) => Promise.race([Promise.resolve(p).catch((e) => String(e)), sleep(Math.max(0, deadline - Date.now()))]);
  const figures = () => Array.from(document.querySelectorAll(".plotly-graph-div"));
  while (Date.now() < deadline && figures().some((gd) => !gd.querySelector(".main-svg"))) await sleep(100);
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await until(MathJax.startup.promise);
  if (window.rsoupPlotlyMath) await until(window.rsoupPlotlyMath);
  await sleep(50);
  const TEX = /[$][^$]+[$]/;
  const labels = figures().flatMap((gd) => Array.from(gd.querySelectorAll(".main-svg text[data-unformatted]")));
  const texLabels = labels.filter((t) => TEX.test(t.getAttribute("data-unformatted")));
  // rendered text outside code: raw TeX delimiters there mean an equation was not typeset
  const skip = "pre, code, script, style, textarea, mjx-container, .highlight, .cell_input, .plotly-graph-div";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  const RAW = /\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{/;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest(skip) || !el.checkVisibility()) continue;
    const m = node.nodeValue.match(RAW);
    if (m) raw.push(node.nodeValue.slice(Math.max(0, m.index - 40), m.index + 40));
  }
  const math = Array.from(document.querySelectorAll(".math"));
  const samePage = location.href.split("#")[0];
  return {
    title: document.title,
    figures: figures().length,
    drawn: figures().filter((gd) => gd.querySelector(".main-svg")).length,
    equations: math.length,
    typeset: math.filter((m) => m.querySelector("mjx-container")).length,
    mjx: document.querySelectorAll("mjx-container").length,
    tex_labels: texLabels.length,
    // plotly.js hides a TeX label's text once MathJax has drawn it (as an svg beside it)
    tex_labels_typeset: texLabels.filter((t) => getComputedStyle(t).display === "none").length,
    raw_tex: raw,
    links: Array.from(document.querySelectorAll("a[href]")).map((a) => a.href),
    toc_links: Array.from(document.querySelectorAll(".bd-docs-nav a[href], nav.bd-links a[href]")).map((a) => a.href),
    broken_anchors: Array.from(document.querySelectorAll("a[href]"))
      .filter((a) => a.href.split("#")[0] === samePage && a.hash.length > 1)
      .filter((a) => !document.getElementById(decodeURIComponent(a.hash.slice(1))))
      .map((a) => a.getAttribute("href")),
    hidden_inputs: document.querySelectorAll(".tag_hide-input").length,
    hidden_inputs_folded: Array.from(document.querySelectorAll(".tag_hide-input")).filter((c) => {
      const source = c.querySelector(".cell_input");
      const output = c.querySelector(".cell_output");
      return source && !source.checkVisibility() && (!output || output.checkVisibility());
    }).length,
    mathjax_version: window.MathJax && MathJax.version || null,
    waited_ms: %(timeout_ms)d - (deadline - Date.now()),
  };
})()
"""

LOCAL_SCHEMES = ("file", "data", "blob", "about", "chrome", "chrome-extension", "devtools")


@dataclass
class PageReport:
    page: str  # path relative to the HTML folder
    figures: int
    drawn: int
    equations: int  # Sphinx math nodes
    typeset: int  # ... with a MathJax mjx-container inside
    tex_labels: int  # plotly labels holding $...$
    tex_labels_typeset: int
    raw_tex: list[str]  # rendered text with TeX delimiters left in it
    errors: list[str]  # JavaScript exceptions, console errors, resources that failed to load
    remote: list[str]  # URLs the page tried to fetch from the network
    broken_links: list[str]  # internal links to a file that does not exist, or a missing anchor
    links: int
    toc_links: int
    hidden_inputs: int
    hidden_inputs_folded: int
    mathjax_version: str | None
    screenshot: Path | None = None

    def problems(self) -> list[str]:
        out = []
        if self.drawn < self.figures:
            out.append(f"{self.figures - self.drawn} of {self.figures} plotly figures not drawn")
        if self.typeset < self.equations:
            out.append(f"{self.equations - self.typeset} of {self.equations} equations not typeset")
        if self.tex_labels_typeset < self.tex_labels:
            out.append(f"{self.tex_labels - self.tex_labels_typeset} of {self.tex_labels} TeX figure labels not typeset")
        if self.hidden_inputs_folded < self.hidden_inputs:
            out.append(f"{self.hidden_inputs - self.hidden_inputs_folded} hide-input cells show their code")
        out += [f"raw TeX in the text: ...{' '.join(t.split())}..." for t in self.raw_tex]
        out += [f"JavaScript: {e}" for e in self.errors]
        out += [f"remote request: {u}" for u in self.remote]
        out += [f"broken link: {u}" for u in self.broken_links]
        return [f"{self.page}: {p}" for p in out]


@dataclass
class BrowserReport:
    html_dir: Path
    browser: str
    pages: list[PageReport]
    seconds: float

    def problems(self) -> list[str]:
        return [p for page in self.pages for p in page.problems()]

    def summary(self) -> str:
        total = lambda attr: sum(getattr(p, attr) for p in self.pages)  # noqa: E731
        shots = sum(p.screenshot is not None for p in self.pages)
        return (
            f"{len(self.pages)} pages, {total('drawn')}/{total('figures')} figures drawn, "
            f"{total('typeset')}/{total('equations')} equations typeset"
            + (f" (+{total('tex_labels_typeset')}/{total('tex_labels')} TeX figure labels)" if total("tex_labels") else "")
            + f", {total('links')} links checked, {sum(len(p.errors) for p in self.pages)} JavaScript errors, "
            f"{sum(len(p.remote) for p in self.pages)} remote requests, {shots} screenshots "
            f"({self.browser}, {self.seconds:.0f} s)"
        )


def built_pages(html_dir: Path) -> list[Path]:
    """Every HTML page of a built book (not the redirecting index.html)."""
    pages = sorted(p for p in html_dir.rglob("*.html") if not p.relative_to(html_dir).parts[0].startswith("_"))
    return [p for p in pages if p.name != "index.html" or p.parent != html_dir] or pages


def _file_of(url: str) -> Path | None:
    parts = urllib.parse.urlsplit(url)
    return Path(urllib.parse.unquote(parts.path)) if parts.scheme == "file" else None


def _page_problems(browser: Chromium, session: str) -> tuple[list[str], list[str]]:
    """JavaScript errors and remote requests recorded for one page."""
    errors, remote = [], []
    for event in browser.events(session):
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append((details.get("exception") or {}).get("description") or details.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            if urllib.parse.urlsplit(entry.get("url", "")).scheme in LOCAL_SCHEMES + ("",):
                errors.append(f"{entry['text']} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if urllib.parse.urlsplit(url).scheme not in LOCAL_SCHEMES:
                remote.append(url)
    return [e.splitlines()[0][:300] for e in errors], sorted(set(remote))


def check_in_browser(
    html_dir: Path,
    screenshots: Path | None = None,
    pages: list[Path] | None = None,
    executable: str | None = None,
    timeout: float = 30,
    progress: bool = True,
) -> BrowserReport:
    """Open each page of a built book (``pages``, default every page) in headless Chromium
    with the network cut, wait for its figures and MathJax, and report what a reader would see.
    With ``screenshots``, saves ``NAME.png`` there for each notebook page (the chapters)."""
    html_dir = Path(html_dir).resolve()
    if not (html_dir / "index.html").is_file():
        raise UserError(f"no built book in {html_dir}; run `rsoup book` first")
    pages = [Path(p).resolve() for p in (pages or built_pages(html_dir))]
    reports = []
    t0 = time.perf_counter()
    with Chromium(executable) as browser:
        for page in pages:
            rel = page.relative_to(html_dir).as_posix()
            session = browser.open(page.as_uri())
            info = browser.evaluate(session, _PAGE_REPORT_JS % {"timeout_ms": int(timeout * 1000)}, timeout + 30)
            shot = None
            if screenshots is not None and rel.startswith("notebooks/"):
                shot = Path(screenshots) / f"{page.stem}.png"
                browser.screenshot(session, shot)
            errors, remote = _page_problems(browser, session)
            broken = sorted(
                {u for u in info["links"] if (f := _file_of(u)) is not None and not f.exists()}
                | set(info["broken_anchors"])
            )
            browser.close_page(session)
            report = PageReport(
                page=rel, figures=info["figures"], drawn=info["drawn"], equations=info["equations"],
                typeset=info["typeset"], tex_labels=info["tex_labels"], tex_labels_typeset=info["tex_labels_typeset"],
                raw_tex=info["raw_tex"], errors=errors, remote=remote, broken_links=broken,
                links=len(info["links"]), toc_links=len(info["toc_links"]), hidden_inputs=info["hidden_inputs"],
                hidden_inputs_folded=info["hidden_inputs_folded"], mathjax_version=info["mathjax_version"],
                screenshot=shot,
            )  # fmt: skip
            reports.append(report)
            if progress:
                print(
                    f"[rsoup book] {rel}: {report.drawn}/{report.figures} figures drawn, "
                    f"{report.typeset}/{report.equations} equations typeset, {len(errors)} JS errors, "
                    f"{len(remote)} remote requests, {len(broken)} broken links in {report.links}"
                    + (f", screenshot {shot}" if shot else ""),
                    flush=True,
                )
        browser_name = browser.version
    return BrowserReport(html_dir, browser_name, reports, time.perf_counter() - t0)
