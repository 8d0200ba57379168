"""``rsoup eval``: rewards, KL to SFT and diversity of a policy (rsoup_lib.evaluate)."""

from __future__ import annotations

HELP = "evaluate a policy: mean and standard error of rewards, KL to the SFT policy, diversity"
DESCRIPTION = """\
Sample one completion for each of N held-out prompts (the test split) under a seed and score it.
The KL to the SFT policy is a Monte Carlo estimate over the same completions; the SFT policy is
--sft, else the init recorded in the policy folder by `rsoup train`, else none.

--policy takes a policy name, a model folder, or the run folder that `rsoup train --out` wrote
(RUN stands for its trained policy, RUN/policy).

examples:
  rsoup eval --policy tiny --rewards sentiment,conciseness --n 128 --seed 1 --json
  rsoup eval --policy runs/sentiment --rewards sentiment --n 128 --seed 1 --json
  rsoup eval --policy runs/sentiment/policy --rewards sentiment --n 128 --seed 1 --json
  rsoup eval --policy tiny --rewards tone_fidelity --by group     (per requested tone: book chapter 5)
"""


def add_arguments(p) -> None:
    from rsoup_lib.cli import add_threads_flag

    p.add_argument("--policy", required=True,
                   help="tiny, smollm2-135m-instruct, tiny-random, a model folder, or a run folder of "
                        "`rsoup train` (its policy/ is evaluated)")  # fmt: skip
    p.add_argument("--rewards", default="sentiment", help="comma-separated reward names (default sentiment)")
    p.add_argument("--n", type=int, default=128, help="completions, one per prompt (default 128)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sft", default=None, help="the reference policy of the KL (default: the recorded init)")
    p.add_argument("--split", default="test", help="prompt split (default test)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--samples", type=int, default=0, help="include this many sample completions")
    p.add_argument("--by", default=None, metavar="FIELD",
                   help="also report means and standard errors per value of this prompt field, e.g. group "
                        "(the requested tone), genre, length; in the JSON under \"by\"")  # fmt: skip
    add_threads_flag(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    import json

    from rsoup_lib.cli import check_at_least
    from rsoup_lib.evaluate import by_label, evaluate, labels_of
    from rsoup_lib.profiles import set_threads
    from rsoup_lib.prompts import load_prompts

    check_at_least(args, n=1, max_new_tokens=1, samples=0)
    set_threads(args.threads)
    prompts = load_prompts(args.split)
    labels = labels_of(prompts, args.n, args.by) if args.by else None  # a bad --by fails before sampling
    result = evaluate(
        args.policy, args.rewards, prompts, n=args.n, seed=args.seed, sft=args.sft,
        max_new_tokens=args.max_new_tokens, device=args.device, dtype=args.dtype, n_samples=args.samples,
    )
    d = result.to_dict()
    if labels is not None:
        d["by"] = {"field": args.by, "labels": labels, "groups": by_label(result, labels)}
    if args.json:
        print(json.dumps(d))
    else:
        for name, r in d["rewards"].items():
            print(f"{name:12s} {r['mean']:+.4f} +- {r['stderr']:.4f}")
        if d["kl_to_sft"] is not None:
            print(f"{'kl_to_sft':12s} {d['kl_to_sft']:.4f} +- {d['kl_to_sft_stderr']:.4f}")
        print(f"{'distinct-2':12s} {d['distinct_2']:.3f}   n={d['n']}")
        if labels is not None:
            _print_by(d["by"])
    return 0


def _print_by(by: dict) -> None:
    """One line per (value, score): mean +- standard error over that value's prompts."""
    print(f"by {by['field']}:")
    for name, groups in by["groups"].items():
        for label, r in groups.items():
            print(f"  {name:12s} {label:16s} {r['mean']:+.4f} +- {r['stderr']:.4f}  (n={r['n']})")
