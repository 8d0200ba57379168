"""``rsoup generate``: sample completions of a policy for the test prompts."""

from __future__ import annotations

HELP = "print a policy's completions for test prompts (tiny, smollm2-135m-instruct or a folder)"
DESCRIPTION = """\
Samples one completion per test prompt (data/prompts/test.jsonl, in order) with temperature 1.

examples:
  rsoup generate --policy tiny --n 5
  rsoup generate --policy smollm2-135m-instruct --n 2 --max-new-tokens 80
  rsoup generate --policy runs/my-policy --n 64 --seed 1 --json > samples.json
"""


def add_arguments(p) -> None:
    p.add_argument("--policy", default="tiny",
                   help="tiny, smollm2-135m-instruct, tiny-random, a model folder or a run folder of `rsoup train`")
    p.add_argument("--n", type=int, default=8, help="number of test prompts (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0: all)")
    p.add_argument("--split", default="test", help="prompt split (test or train)")
    p.add_argument("--json", action="store_true", help='print a JSON list of {"prompt", "completion"}')


def run(args) -> int:
    import json

    from rsoup_lib.cli import check_at_least
    from rsoup_lib.errors import UserError
    from rsoup_lib.sampling import sample
    from rsoup_lib.models import load_policy
    from rsoup_lib.prompts import load_prompts

    check_at_least(args, n=1, temperature=0, max_new_tokens=1, top_k=0)
    prompts = [p["prompt"] for p in load_prompts(args.split)]
    if args.n > len(prompts):
        raise UserError(f"--n {args.n} is more than the {len(prompts)} {args.split} prompts")
    prompts = prompts[: args.n]
    model, tokenizer = load_policy(args.policy, seed=args.seed)
    completions = sample(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    if args.json:
        print(json.dumps([{"prompt": p, "completion": c} for p, c in zip(prompts, completions)], indent=2))
    else:
        for p, c in zip(prompts, completions):
            print(f"## {p}\n{c}\n")
    return 0
