"""``rsoup book``: regenerate the book."""

from __future__ import annotations

HELP = "regenerate the book: execute the notebooks with a profile, then render the HTML"
DESCRIPTION = """\
Regenerate the book. Each notebook named in _toc.yml is converted from its Jupytext .py file,
executed by papermill with the profile's parameters (and your -p overrides) injected after its
`parameters` cell, and rendered by jupyter-book into _build/PROFILE/_build/html.

Trained policies are reused from the run cache (see `rsoup cache ls`), so a second build is
much faster than the first. The book reads offline: MathJax and plotly.js are served by the
book itself (MathJax is fetched once from the npm registry into ~/.cache/rsoup).

--check opens every page in headless Chromium with the network cut and checks what a reader
sees: each plotly figure drawn, each equation typeset by MathJax, no JavaScript error, no
remote request, no broken link; it saves a screenshot of each chapter in
_build/PROFILE/screenshots/ and exits 1 on any problem. --check-only does that on the
existing build without executing or rendering anything.

examples:
  rsoup book                                  the published book (cpu profile, ~30 min on 2 cores)
  rsoup book --profile smoke                  every notebook in seconds, tiny random models
  rsoup book --only 01_rlhf_per_reward        re-run one notebook, keep the others' outputs
  rsoup book --profile gpu -p policy=HuggingFaceTB/SmolLM2-360M-Instruct -p steps=500
  rsoup book --profile smoke --check          build, then check the pages in Chromium
  rsoup book --check-only                     check the cpu book already in _build/cpu
"""


def add_arguments(p) -> None:
    from rsoup_lib.profiles import DEFAULT_PROFILE, PROFILES

    p.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        choices=list(PROFILES),
        help=f"parameter profile (default: {DEFAULT_PROFILE}; `rsoup profiles` lists them)",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="NOTEBOOK",
        help="execute only this notebook (repeatable), e.g. 01_rlhf_per_reward",
    )
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a notebook parameter (repeatable); VALUE is read as JSON if it parses",
    )
    p.add_argument("--build-dir", default=None, help="build tree (default: _build/PROFILE)")
    p.add_argument("--no-html", action="store_true", help="execute the notebooks but skip jupyter-book")
    p.add_argument(
        "--check",
        action="store_true",
        help="after the build, open every page in headless Chromium (network cut) and check it",
    )
    p.add_argument(
        "--check-only",
        action="store_true",
        help="only check the existing build in headless Chromium; execute and render nothing",
    )


def run(args) -> int:
    from pathlib import Path

    from rsoup_lib.book import REPO_ROOT, regenerate
    from rsoup_lib.profiles import get_profile, parse_override

    profile = get_profile(args.profile)
    build_dir = Path(args.build_dir or REPO_ROOT / "_build" / profile.name)
    if args.check_only:
        return check(build_dir)
    overrides = dict(parse_override(p) for p in args.param)
    result = regenerate(
        profile,
        only=args.only,
        overrides=overrides,
        build_dir=build_dir,
        html=not args.no_html,
    )
    total = sum(result.seconds.values())
    print("[rsoup book] timings:")
    for name, seconds in result.seconds.items():
        print(f"  {name:40s} {seconds:8.1f} s")
    print(f"  {'total':40s} {total:8.1f} s")
    if result.wall_seconds and result.wall_seconds < total - 1:
        print(f"  {'wall time (notebooks run in parallel)':40s} {result.wall_seconds + result.seconds.get('jupyter-book', 0):8.1f} s")
    if not args.no_html:
        print(f"[rsoup book] HTML: {result.html_dir / 'index.html'}")
        if args.check:
            return check(build_dir)
    return 0


def check(build_dir) -> int:
    """Check a built book in headless Chromium; 1 if a reader would see a problem."""
    from rsoup_lib.browser import check_in_browser

    report = check_in_browser(build_dir / "_build" / "html", screenshots=build_dir / "screenshots")
    print(f"[rsoup book] browser check: {report.summary()}")
    problems = report.problems()
    for problem in problems:
        print(f"  PROBLEM {problem}")
    return 1 if problems else 0
