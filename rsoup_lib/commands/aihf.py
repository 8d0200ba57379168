"""``rsoup aihf``: train and evaluate the methods of book chapter 4 from a config file."""

from __future__ import annotations

HELP = "run AIHF (joint reward and policy learning from demonstrations and preferences) and its baselines"
DESCRIPTION = """\
Train the methods of book chapter 4 (rsoup_lib/aihf.py) on one data budget and evaluate each on
held-out prompts under the gold utility u* (rsoup_lib/preferences.py): the mean u* with its paired
standard error against the SFT policy, the win rate against SFT and the KL to SFT; and, for the
methods with an explicit reward model (rlhf, aihf-explicit), its accuracy on held-out
gold-labelled pairs.

Methods: sft (TRL SFTTrainer on D), dpo (TRL DPOTrainer on P), sft-dpo, rlhf (TRL RewardTrainer
on P, then RLOO), aihf-dpo (the DPO form: lambda_P DPO + lambda_D DPO(demo, own sample)),
aihf-explicit (alternating: sample, weighted reward fit, RLOO steps).

The config is a YAML or TOML file of AIHFConfig keys (method, n_demos, n_pairs,
label_temperature, lam_d, lam_p, iterations, steps, ...) and `methods:`, a list of methods to run
on the same data. The preference data, reward models and policies go through the run cache, so
the book's chapter 4 and this command share them. OUT gets aihf.json (one row per method) and
every policy under OUT/METHOD/.

examples:
  rsoup aihf --config configs/aihf_tiny.yaml --out runs/aihf-tiny
  rsoup aihf --config configs/aihf_smollm2_gpu.yaml --out runs/aihf-smollm2   (on a GPU)
"""


def add_arguments(p) -> None:
    from rsoup_lib.cli import add_threads_flag

    p.add_argument("--config", required=True, help="YAML or TOML file (see configs/aihf_tiny.yaml)")
    p.add_argument("--out", default="runs/aihf", help="output folder (default: runs/aihf)")
    p.add_argument("--eval-prompts", type=int, default=128, help="held-out prompts to evaluate on (default 128)")
    add_threads_flag(p)


def _check_out(out) -> None:
    from rsoup_lib.errors import UserError

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is not a folder: name a new or an earlier `rsoup aihf` output folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "aihf.json").is_file():
        raise UserError(f"--out {out} holds other files and is not an `rsoup aihf` output folder: name a new folder")


def run(args) -> int:
    import json
    import shutil
    from pathlib import Path

    from rsoup_lib import aihf
    from rsoup_lib.cli import check_at_least
    from rsoup_lib.evaluate import evaluate
    from rsoup_lib.models import load_policy
    from rsoup_lib.preferences import GOLD_UTILITY, cached_preference_data
    from rsoup_lib.profiles import set_threads
    from rsoup_lib.stats import mean, paired_difference

    check_at_least(args, eval_prompts=1)
    config, methods = aihf.read_config(args.config)
    out = Path(args.out)
    _check_out(out)
    set_threads(args.threads)
    data = cached_preference_data(config.data_config())
    sft = load_policy(config.policy, device=config.device, dtype=config.dtype)

    def held_out(policy):
        return evaluate(policy, [GOLD_UTILITY], n=args.eval_prompts, seed=config.seed + 1, sft=sft,
                        max_new_tokens=config.max_new_tokens, device=config.device, dtype=config.dtype)  # fmt: skip

    base = held_out(sft).scores(GOLD_UTILITY)
    rows = []
    for method in methods:
        run_dir = aihf.cached(aihf.with_changes(config, method=method), data)
        res = held_out(str(run_dir / "policy"))
        u = res.scores(GOLD_UTILITY)
        row = {"method": method, "u_star": mean(u).to_dict(), "u_star_minus_sft": paired_difference(u, base).to_dict(),
               "win_rate_vs_sft": aihf.win_rate(u, base).to_dict(), "kl_to_sft": res.kl_to_sft}  # fmt: skip
        if (run_dir / "rm").is_dir():
            row["rm_accuracy"] = mean(aihf.reward_model_accuracy(run_dir, data)).to_dict()
        rows.append(row)
        shutil.copytree(run_dir / "policy", out / method, dirs_exist_ok=True)
        print(json.dumps({"method": method, "u*-sft": row["u_star_minus_sft"]["value"],
                          "se": row["u_star_minus_sft"]["se"], "kl_to_sft": res.kl_to_sft}))  # fmt: skip
    path = aihf.write_results(out, [{"config": config.__dict__, "methods": methods}] + rows)
    print(f"[rsoup aihf] wrote {path}")
    return 0
