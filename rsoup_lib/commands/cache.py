"""``rsoup cache``: list or clear the run cache."""

from __future__ import annotations

HELP = "list or clear the cache of trained policies (ls, clear)"
DESCRIPTION = """\
Trained policies are cached under a key hashed from their whole configuration, so no
regeneration trains the same policy twice. The cache lives in $RSOUP_CACHE_DIR, or
~/.cache/rsoup when that is unset.

examples:
  rsoup cache ls            one line per entry: key, kind, size, seconds it took
  rsoup cache ls --json     the same as a JSON list
  rsoup cache clear         delete every entry
  rsoup cache clear --kind rl
"""


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("ls", help="list the entries")
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    clear = sub.add_parser("clear", help="delete entries")
    clear.add_argument("--kind", default=None, help="only entries of this kind (e.g. rl)")


def run(args) -> int:
    import json

    from rsoup_lib import cache

    if args.action == "ls":
        entries = cache.entries()
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "key": e.key,
                            "kind": e.kind,
                            "path": str(e.path),
                            "size_bytes": e.size_bytes,
                            "seconds": e.seconds,
                            "config": e.config,
                        }
                        for e in entries
                    ],
                    indent=2,
                )
            )
        else:
            print(f"cache: {cache.cache_dir()} ({len(entries)} entries)")
            for e in entries:
                print(f"  {e.key:32s} {e.size_bytes / 1e6:9.1f} MB {e.seconds:8.1f} s")
        return 0
    removed = cache.clear(kind=args.kind)
    print(f"removed {removed} entries from {cache.cache_dir()}")
    return 0
