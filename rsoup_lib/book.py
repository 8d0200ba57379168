"""Regenerating the book: Jupytext -> papermill -> jupyter-book.

For each notebook named in ``_toc.yml``, in order:

1. Jupytext reads ``notebooks/NAME.py`` (percent format) into a notebook;
2. papermill executes it with the profile's parameters injected after its ``parameters`` cell
   (only the names the notebook declares, then the user's overrides), with the repository root
   as working directory, and writes the executed copy into the build tree;

then jupyter-book 1.x renders the build tree to HTML with its own execution off and Sphinx
warnings treated as errors. A failing notebook stops the build with the notebook's name and the
failing cell's error.

Plotly: plotly >= 6 defaults to a mimetype renderer whose output jupyter-book 1 drops, so the
kernels run with ``PLOTLY_RENDERER=notebook``, which embeds plotly.js and the figure as HTML.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
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


def stage_sources(build_src: Path, root: Path = REPO_ROOT) -> None:
    """Copy the book's configuration and markdown pages into the build tree."""
    build_src.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, build_src / name)
    if (build_src / "book").exists():
        shutil.rmtree(build_src / "book")
    shutil.copytree(root / "book", build_src / "book")


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
            execute_notebook(entry, profile, build_src, overrides, root, progress)
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
