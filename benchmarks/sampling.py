"""Sampling benchmark: 64 reviews of 48 new tokens from a policy, side by side in one run.

(a) ``rsoup_lib.sampling.sample`` (our KV-cached loop; top-k over the logits, multinomial
    over k entries) vs transformers ``generate`` (the same temperature, full-vocabulary
    sampling) on the same prompts, both forced to produce all 48 tokens (no early stop), so the
    work is identical. Target for ``tiny``: at most 5 s for the 64 reviews on 2 cores.
(b) The same for SmolLM2-135M-Instruct (--smollm2), where the 49k-token vocabulary makes the
    library sampler's per-step sort and multinomial a large share of the time.

The 1-minute load average is printed: the machine is shared, so only the ratio of two numbers
measured in the same run means much.

    python benchmarks/sampling.py                       # tiny
    python benchmarks/sampling.py --policy smollm2-135m-instruct --batch 64
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", default="tiny")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from rsoup_lib.sampling import sample_ids
    from rsoup_lib.models import load_policy, render_prompt
    from rsoup_lib.prompts import load_prompts

    model, tok = load_policy(args.policy)
    prompts = [p["prompt"] for p in load_prompts("test")[: args.batch]]
    enc = tok([render_prompt(tok, p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
    never = -1  # an eos id no token has: every row runs the full length

    def ours():
        return sample_ids(model, enc["input_ids"], enc["attention_mask"], args.new_tokens, never,
                          tok.pad_token_id, temperature=1.0, top_k=0, generator=torch.Generator().manual_seed(0))

    def library():
        with torch.no_grad():
            return model.generate(**enc, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                  do_sample=True, top_k=0, top_p=1.0, temperature=1.0, pad_token_id=tok.pad_token_id)

    times = {"sampling": [], "generate": []}
    ours(), library()  # warm-up
    for _ in range(args.repeats):
        for name, fn in (("sampling", ours), ("generate", library)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    print(json.dumps({
        "policy": args.policy, "batch": args.batch, "new_tokens": args.new_tokens,
        "torch_threads": torch.get_num_threads(), "load_average_1min": os.getloadavg()[0],
        "seconds_best": best, "seconds_all": times,
        "generate_over_sampling": best["generate"] / best["sampling"],
    }, indent=2))


if __name__ == "__main__":
    main()
