"""Same numbers before and after a refactor: record what the library computes, then compare.

A change of shape (moving the trainer, the checkpoint reader, the merge registry) must not change
a single number. This script runs a fixed set of small computations through the library's public
entry points and writes every number they produce to JSON:

- RL runs (``rsoup_lib.rl.train``): the smoke recipe on ``tiny-random`` (SFT anchor, EMA anchor,
  LoRA with an EMA anchor, token-mean loss, 2 micro-batches) and a 20-step run of the cpu recipe on
  the shipped ``tiny`` (plus a 10-step EMA run): every metric of every step except timings, and a
  SHA-256 of every trained tensor;
- merges of the two cpu runs: ``rsoup_lib.merge.merge`` (lerp, slerp, liti) on torch tensors and
  ``rsoup merge`` file to file: a SHA-256 of every merged tensor;
- ``rsoup_lib.evaluate.evaluate`` of the cpu run: rewards, KL to SFT, diversity.

    python benchmarks/same_numbers.py record before.json      # on the old code
    python benchmarks/same_numbers.py record after.json       # on the new code
    python benchmarks/same_numbers.py compare before.json after.json

``compare`` prints every difference and exits 1 if there is one. Runs use 1 torch thread, so the
float summation order does not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

TIMING_KEYS = {"seconds", "generate_seconds", "samples_per_s"}
# The repository this script sits in, first on the path: run from a worktree or a copy, it must
# measure that copy's code, not whatever `pip install -e` points at.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def tensor_hashes(state) -> dict[str, str]:
    """name -> dtype, shape and a SHA-256 prefix of the values (exactly representable in float64)."""
    out = {}
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        values = t.double() if t.is_floating_point() else t
        digest = hashlib.sha256(values.numpy().tobytes()).hexdigest()[:16]
        out[name] = f"{t.dtype}:{tuple(t.shape)}:{digest}"
    return out


def folder_hashes(folder: Path) -> dict[str, str]:
    from safetensors.torch import load_file

    state = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        state.update(load_file(f))
    return tensor_hashes(state)


def run_rl(name: str, config, out: Path) -> dict:
    from rsoup_lib.rl import read_metrics, train

    run = train(config, out / name, progress=False, num_threads=1)
    metrics = [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in read_metrics(run)]
    return {"metrics": metrics, "policy": folder_hashes(run / "policy")}


def record(path: Path) -> None:
    import torch

    from rsoup_lib.evaluate import evaluate
    from rsoup_lib.merge import merge
    from rsoup_lib.rl import RLConfig

    torch.set_num_threads(1)
    smoke = dict(policy="tiny-random", reward="sentiment", steps=3, batch_prompts=2, k=2, max_new_tokens=8,
                 lr=1e-3, beta=0.05, seed=0, checkpoint_every=0)
    cpu = dict(policy="tiny", reward="sentiment", steps=20, batch_prompts=8, k=4, max_new_tokens=32, lr=1e-4,
               beta=0.05, seed=0, checkpoint_every=0)
    configs = {
        "smoke-sft": RLConfig(**smoke),
        "smoke-ema": RLConfig(**{**smoke, "anchor": "ema", "ema_rate": 0.1}),
        "smoke-lora-ema": RLConfig(**{**smoke, "lora": True, "lora_rank": 4, "anchor": "ema", "ema_rate": 0.1}),
        "smoke-token-mean-accum": RLConfig(**{**smoke, "batch_prompts": 4, "grad_accum": 2, "loss_aggregation": "token_mean"}),
        "cpu-sft": RLConfig(**cpu),
        "cpu-ema": RLConfig(**{**cpu, "steps": 10, "anchor": "ema", "seed": 1}),
    }
    result: dict = {"rl": {}, "merge": {}, "eval": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, config in configs.items():
            print(f"[same_numbers] {name}", flush=True)
            result["rl"][name] = run_rl(name, config, tmp)

        from safetensors.torch import load_file

        from rsoup_lib.models import load_policy

        init_model, _ = load_policy("tiny")
        init = {k: v.detach().clone() for k, v in init_model.named_parameters()}
        a = load_file(tmp / "cpu-sft" / "policy" / "model.safetensors")
        b = load_file(tmp / "cpu-ema" / "policy" / "model.safetensors")
        a = {k: a[k] for k in init}
        b = {k: b[k] for k in init}
        result["merge"]["lerp"] = tensor_hashes(merge("lerp", [a, b], weights=[0.3, 0.7]))
        result["merge"]["slerp"] = tensor_hashes(merge("slerp", [a, b], init=init, lam=0.3))
        result["merge"]["liti"] = tensor_hashes(merge("liti", [a], init=init, eta=0.3))
        try:
            from rsoup_lib.merge_files import merge_folders
        except ImportError:  # the code before rsoup_lib.merge_files
            from rsoup_lib.commands.merge import merge_folders
        for method, kw in (("lerp", {"weights": [0.3, 0.7]}), ("slerp", {"lam": 0.3, "init": str(tmp / "cpu-sft" / "policy")})):
            out = tmp / f"merged-{method}"
            merge_folders(method, [str(tmp / "cpu-sft" / "policy"), str(tmp / "cpu-ema" / "policy")], str(out), **kw)
            result["merge"][f"files-{method}"] = folder_hashes(out)

        res = evaluate(str(tmp / "cpu-sft" / "policy"), ["sentiment", "conciseness"], n=32, seed=1)
        result["eval"] = {
            "rewards": {k: v["mean"] for k, v in res.rewards.items()},
            "kl_to_sft": res.kl_to_sft,
            "distinct_2": res.distinct_2,
            "completions": [s["completion"] for s in res.samples],
        }
    path.write_text(json.dumps(result, indent=1, sort_keys=True))
    print(f"[same_numbers] wrote {path}")


def diff(a, b, where="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}/{k}: only in the first" for k in a if k not in b]
        out += [f"{where}/{k}: only in the second" for k in b if k not in a]
        for k in a:
            if k in b:
                out += diff(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("out", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("first", type=Path)
    c.add_argument("second", type=Path)
    args = p.parse_args()
    if args.cmd == "record":
        record(args.out)
        return 0
    a, b = json.loads(args.first.read_text()), json.loads(args.second.read_text())
    diffs = diff(a, b)
    n_numbers = sum(1 for _ in json.dumps(a).split(","))
    for d in diffs[:50]:
        print(d)
    print(f"{len(diffs)} differences ({n_numbers} values compared: RL metrics of every step, trained and merged tensors, evaluation)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
