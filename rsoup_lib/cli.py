"""The ``rsoup`` command line.

Every subcommand lives in its own module under ``rsoup_lib/commands/`` and exposes

    HELP: str                          one line shown by ``rsoup --help``
    def add_arguments(parser) -> None  its flags
    def run(args) -> int               does the work, returns an exit code

Adding a subcommand means writing that module and naming it in ``COMMANDS`` below.
Heavy imports (torch, transformers) happen inside ``run`` so that ``rsoup --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rsoup_lib.errors import UserError

# (subcommand name, module under rsoup_lib.commands), in the order --help lists them.
COMMANDS: list[tuple[str, str]] = [
    ("book", "book"),
    ("cache", "cache"),
    ("data", "data"),
    ("merge", "merge"),
    ("profiles", "profiles"),
    ("train", "train"),
    ("eval", "eval"),
    ("generate", "generate"),
    ("warp", "warp"),
    ("aihf", "aihf"),
    ("locomotion", "locomotion"),
]

DESCRIPTION = """\
rsoup: a reproducible companion to four alignment papers (Rewarded Soups, WARP, AIHF,
group-robust RLHF). Train small policies with RL, merge them in weight space, and rebuild
the book that shows the results.

Typical first steps:
  rsoup profiles                 list the parameter profiles (smoke, cpu, gpu)
  rsoup book --profile smoke     rebuild the whole book in seconds with tiny random models
  rsoup book                     rebuild it for real (cpu profile, about 30 minutes on 2 cores)

Run `rsoup COMMAND --help` for the flags of one command.
"""


def add_threads_flag(parser) -> None:
    """``--threads N``, shared by the commands that run torch; applied with ``profiles.set_threads``."""
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's; more than the CPU cores are capped)")


def check_at_least(args, **minimums) -> None:
    """A ``UserError`` naming the first flag below its minimum: ``check_at_least(args, n=1,
    max_new_tokens=1)`` checks ``--n >= 1`` and ``--max-new-tokens >= 1``."""
    for name, low in minimums.items():
        value = getattr(args, name)
        if value < low:
            raise UserError(f"--{name.replace('_', '-')} must be at least {low} (got {value})")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what was wrong, where to read the flags), like
    the ``UserError`` messages, instead of the usage block followed by the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rsoup",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from rsoup_lib import __version__

    parser.add_argument("--version", action="version", version=f"rsoup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS:
        module = importlib.import_module(f"rsoup_lib.commands.{module_name}")
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as err:  # a clear message, no traceback
        print(f"rsoup {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
