"""``rsoup train``: one KL-regularised RLOO run (rsoup_lib.rl) from the command line."""

from __future__ import annotations

import dataclasses

HELP = "train a policy with KL-regularised RLOO on a reward (or a weighted sum of rewards)"
DESCRIPTION = """\
Train a policy with RLOO (k completions per prompt, leave-one-out baseline) on a reward, with a
KL penalty towards an anchor (the frozen SFT policy, or an EMA of the policy as in WARP).
Writes OUT/policy (a Hugging Face model folder), OUT/metrics.jsonl (one line per step),
OUT/config.json and OUT/summary.json. Re-running on an OUT with a checkpoint resumes it.

rewards: sentiment, readability, conciseness, specificity, or a weighted sum such as
"sentiment:0.5,conciseness:0.5".

examples:
  rsoup train --policy tiny --reward sentiment --steps 150 --seed 0 --out runs/sentiment
  rsoup train --policy tiny --reward sentiment:0.5,conciseness:0.5 --anchor ema --out runs/mix
  rsoup train --policy smollm2-135m-instruct --lora --device cuda --dtype bfloat16 --out runs/s
  accelerate launch --multi_gpu --num_processes 2 -m rsoup_lib.cli train ...   (2 CPU processes)

group-invariant RLOO (book chapter 5; rsoup_lib.group_robust): --group-method turns it on.
  rsoup train --reward tone_fidelity --group-method group --group-alpha 1 --group-holdout mixed --out runs/g
  rsoup train --reward tone_fidelity --group-method plain --group-holdout mixed --out runs/p   (same prompts, fixed beta)
  methods: plain, group, no_adaptive_kl, no_variance, oracle (uses the hidden labels: a reference only)
"""


def add_arguments(p) -> None:
    from rsoup_lib.cli import add_threads_flag
    from rsoup_lib.rl import RLConfig

    p.add_argument("--out", required=True, help="output folder (resumed if it holds a checkpoint)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threads_flag(p)
    for f in dataclasses.fields(RLConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f.name, action="store_true", default=f.default, help=_flag_help(f))
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            p.add_argument(flag, dest=f.name, type=kind, default=f.default, help=_flag_help(f))
    _add_group_arguments(p)


def _add_group_arguments(p) -> None:
    """``--group-FIELD`` for every ``group_robust.GroupConfig`` field; --group-method has no
    default (without it the run is plain ``rl.train``)."""
    from rsoup_lib.group_robust import GroupConfig

    g = p.add_argument_group("group-invariant RLOO (book chapter 5)")
    for f in dataclasses.fields(GroupConfig):
        kind = {"int": int, "float": float}.get(str(f.type), str)
        default = None if f.name == "method" else f.default
        help_ = f.metadata.get("help", "") if default is None else _flag_help(f)
        g.add_argument("--group-" + f.name.replace("_", "-"), dest="group_" + f.name, type=kind, default=default,
                       help=help_.replace("%", "%%"))  # fmt: skip


def _group_config(args):
    """The ``GroupConfig`` of the flags, or None without --group-method (then no other
    --group-* flag may be given)."""
    from rsoup_lib.errors import UserError
    from rsoup_lib.group_robust import GroupConfig

    values = {f.name: getattr(args, "group_" + f.name) for f in dataclasses.fields(GroupConfig)}
    if values["method"] is None:
        changed = [f.name for f in dataclasses.fields(GroupConfig) if f.name != "method" and values[f.name] != f.default]
        if changed:
            raise UserError(f"--group-{changed[0].replace('_', '-')} needs --group-method (e.g. --group-method group)")
        return None
    config = GroupConfig(**values)
    config.validate()
    return config


def _flag_help(f: dataclasses.Field) -> str:
    """An RLConfig field's flag help: its ``metadata["help"]`` and its default (escaped for argparse)."""
    default = "''" if f.default == "" else f.default
    return f"{f.metadata.get('help', '')} (default {default})".strip().replace("%", "%%")


def run(args) -> int:
    import json

    from rsoup_lib.rl import RLConfig, policy_dir, train

    from pathlib import Path

    from rsoup_lib.errors import UserError

    config = RLConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RLConfig)})
    config.validate()
    group = _group_config(args)
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise UserError(f"--out {out} is not a run folder and is not empty: give a new folder for the run")
    if group is None:
        out = train(config, out, progress=not args.no_progress, num_threads=args.threads)
    else:
        from rsoup_lib import group_robust

        out = group_robust.train(config, group, out, progress=not args.no_progress, num_threads=args.threads)
    summary = out / "summary.json"
    if summary.is_file():
        print(json.dumps({"policy": str(policy_dir(out)), **json.loads(summary.read_text())}))
    return 0
