"""``rsoup profiles``: list the parameter profiles."""

from __future__ import annotations

HELP = "list the parameter profiles (smoke, cpu, gpu) and their values"


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print the profiles as JSON")


def run(args) -> int:
    import dataclasses
    import json

    from rsoup_lib.profiles import DEFAULT_PROFILE, PROFILES

    if args.json:
        print(json.dumps({n: dataclasses.asdict(p) for n, p in PROFILES.items()}, indent=2))
        return 0
    for name, profile in PROFILES.items():
        default = " (default)" if name == DEFAULT_PROFILE else ""
        print(f"{name}{default}: {profile.description}")
        for key, value in profile.parameters().items():
            if key != "profile":
                print(f"    {key} = {value!r}")
    return 0
