"""``rsoup book``: regenerate the book."""

from __future__ import annotations

HELP = "regenerate the book: execute the notebooks with a profile, then render the HTML"
DESCRIPTION = """\
Regenerate the book. Each notebook named in _toc.yml is converted from its Jupytext .py file,
executed by papermill with the profile's parameters (and your -p overrides) injected after its
`parameters` cell, and rendered by jupyter-book into _build/PROFILE/_build/html.

Trained policies are reused from the run cache (see `rsoup cache ls`), so a second build is
much faster than the first.

examples:
  rsoup book                                  the published book (cpu profile, ~30 min on 2 cores)
  rsoup book --profile smoke                  every notebook in seconds, tiny random models
  rsoup book --only 01_rlhf_per_reward        re-run one notebook, keep the others' outputs
  rsoup book --profile gpu -p policy=HuggingFaceTB/SmolLM2-360M-Instruct -p steps=500
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


def run(args) -> int:
    from rsoup_lib.book import regenerate
    from rsoup_lib.profiles import get_profile, parse_override

    overrides = dict(parse_override(p) for p in args.param)
    result = regenerate(
        get_profile(args.profile),
        only=args.only,
        overrides=overrides,
        build_dir=args.build_dir,
        html=not args.no_html,
    )
    total = sum(result.seconds.values())
    print("[rsoup book] timings:")
    for name, seconds in result.seconds.items():
        print(f"  {name:40s} {seconds:8.1f} s")
    print(f"  {'total':40s} {total:8.1f} s")
    if not args.no_html:
        print(f"[rsoup book] HTML: {result.html_dir / 'index.html'}")
    return 0
