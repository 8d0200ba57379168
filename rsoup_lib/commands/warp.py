"""``rsoup warp``: the whole WARP procedure from a config file."""

from __future__ import annotations

HELP = "run WARP (EMA-anchored runs, SLERP, LITI, iterated) from a YAML/TOML config"
DESCRIPTION = """\
Run WARP (Ramé et al., 2024) as rsoup_lib/warp.py implements it: for each of I iterations,
M RL runs with an EMA anchor from the current init (differing only in seed), SLERP of their task
vectors, then LITI towards the init, which becomes the next iteration's init. Finally the front
{(1 - eta) theta_sft + eta theta_slerp^I} is evaluated on held-out prompts (reward and KL to SFT).

Every RL run and merge goes through the run cache, so re-running with more iterations reuses the
earlier ones. OUT gets warp.json (the config, every intermediate policy, the front) and a copy of
every intermediate policy under OUT/iteration-i/ (run-m, slerp, liti).

examples:
  rsoup warp --config configs/warp_tiny.yaml --out runs/warp-tiny
  rsoup warp --config configs/warp_smollm2_gpu.yaml --out runs/warp-smollm2   (on a GPU)
"""


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, help="YAML or TOML file (see configs/warp_tiny.yaml)")
    p.add_argument("--out", default="runs/warp", help="output folder (default: runs/warp)")
    p.add_argument("--no-front", action="store_true", help="train and merge, skip the front evaluation")


def run(args) -> int:
    import json
    from pathlib import Path

    from rsoup_lib.warp import WarpConfig, check_output, evaluate_front, warp, write_outputs

    config = WarpConfig.from_file(args.config)
    check_output(config, Path(args.out))
    iterations = warp(config)
    front = [] if args.no_front else evaluate_front(config, iterations[-1].slerp)
    write_outputs(config, iterations, front, Path(args.out))
    for p in front:
        print(json.dumps({"eta": p["eta"], "kl_to_sft": p["kl_to_sft"], "rewards": p["rewards"]}))
    print(f"[rsoup warp] wrote {Path(args.out) / 'warp.json'}")
    return 0
