"""Merge benchmark: three measurements, side by side in one run.

(a) Front overhead. Evaluate a rewarded-soups front (11 values of lambda; per point: generate
    and score a fixed batch of completions, with the KL to the init) on the `tiny` policy
    (tiny-random when `tiny` is not available). Merging in place with ``rsoup_lib.front.Front``
    should cost < 5 % of the whole front. For contrast, the same front merged the naive way:
    ``rsoup merge`` to a folder and a reload, per point.
(b) File to file. Merge two checkpoints of a random Llama (about 60M parameters, float32
    safetensors) as whole processes: ``rsoup merge`` vs ``mergekit-yaml`` with the equivalent
    method on the same inputs (lerp = mergekit ``linear``; task-vector slerp = ``nuslerp`` with
    a base model). Target: ours at least 5x faster. mergekit pins its own dependencies, so it
    lives in its own venv: give its ``mergekit-yaml`` with --mergekit or $RSOUP_MERGEKIT
    (default: .venv-bench/bin/mergekit-yaml beside this repo); without it (b) is skipped.
    The outputs of both tools are compared tensor by tensor.
(c) In-memory throughput of lerp, slerp and the in-place front on the same model, against the
    memory-copy bandwidth of this machine measured in the same run (torch ``copy_``).
    Traffic counts the bytes a merge must read and write at least (M inputs + 1 output for lerp;
    init + M task vectors + 1 output for the front), the copy reads 1 and writes 1. Measured
    with 1 torch thread and with the default: on a busy 2-core machine every parallel op can
    wait milliseconds for its second thread, which hurts ops over many small tensors most.

    python benchmarks/merge.py                  # all three
    python benchmarks/merge.py --only b --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def timed(fn, repeats=1):
    """(median seconds, last result) over ``repeats`` calls."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


# ------------------------------------------------------------------------------------------ (b)


def make_checkpoints(root: Path, hidden: int, layers: int, vocab: int, seed: int = 0) -> tuple[dict[str, Path], int]:
    """init, a = init + noise, b = init + noise: random Llama model folders (float32 safetensors)."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from rsoup_lib.models import tiny_random_tokenizer

    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=8,
        num_key_value_heads=8,
        tie_word_embeddings=False,
        architectures=["LlamaForCausalLM"],
    )
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LlamaForCausalLM(config).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    init = {k: 0.02 * torch.randn(s, generator=g) for k, s in shapes.items()}
    tokenizer = tiny_random_tokenizer()
    paths = {}
    for name, noise in [("init", 0.0), ("a", 0.01), ("b", 0.01)]:
        sd = {k: v + noise * torch.randn(v.shape, generator=g) if noise else v for k, v in init.items()}
        path = root / name
        config.save_pretrained(path)
        tokenizer.save_pretrained(path)
        save_file(sd, path / "model.safetensors", metadata={"format": "pt"})
        paths[name] = path
    return paths, sum(v.numel() for v in init.values())


def mergekit_config(method: str, paths: dict[str, Path]) -> str:
    if method == "lerp":
        return (
            "merge_method: linear\ndtype: float32\nmodels:\n"
            f"  - model: {paths['a']}\n    parameters: {{weight: 0.5}}\n"
            f"  - model: {paths['b']}\n    parameters: {{weight: 0.5}}\n"
        )
    return (
        f"merge_method: nuslerp\ndtype: float32\nbase_model: {paths['init']}\n"
        "parameters: {nuslerp_flatten: true}\nmodels:\n"
        f"  - model: {paths['a']}\n    parameters: {{weight: 0.5}}\n"
        f"  - model: {paths['b']}\n    parameters: {{weight: 0.5}}\n"
    )


def run_process(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def max_abs_diff(dir1: Path, dir2: Path) -> float:
    from safetensors.torch import load_file

    def load(d):
        out = {}
        for f in sorted(d.glob("*.safetensors")):
            out.update(load_file(f))
        return out

    x, y = load(dir1), load(dir2)
    if set(x) != set(y):
        return float("nan")
    return max(float((x[k].float() - y[k].float()).abs().max()) for k in x)


def bench_files(args, paths, n_params) -> list[str]:
    mergekit = args.mergekit
    lines = [f"(b) file to file, 2 checkpoints of a random Llama, {n_params / 1e6:.0f}M params, float32 "
             f"({4 * n_params / 1e6:.0f} MB each); whole processes, median of {args.repeats} runs after a warm-up"]  # fmt: skip
    if not mergekit or not Path(mergekit).exists():
        lines.append(
            f"    SKIPPED: mergekit-yaml not found ({mergekit or 'unset'}). Install it in its own venv:\n"
            "      python -m venv .venv-bench && .venv-bench/bin/pip install torch==2.13.0 mergekit\n"
            "    then pass --mergekit .venv-bench/bin/mergekit-yaml or set RSOUP_MERGEKIT."
        )
        return lines
    root = paths["init"].parent
    for method in ("lerp", "slerp"):
        ours_out, mk_out = root / f"ours-{method}", root / f"mergekit-{method}"
        ours = [sys.executable, "-m", "rsoup_lib.cli", "merge", "--method", method, "--models", str(paths["a"]), str(paths["b"]), "--out", str(ours_out), "--overwrite"]
        if method == "slerp":
            ours += ["--init", str(paths["init"])]
        cfg = root / f"{method}.yml"
        cfg.write_text(mergekit_config(method, paths))
        theirs = [mergekit, str(cfg), str(mk_out), "--quiet"]
        run_process(ours), run_process(theirs)  # warm-up: page cache, .pyc
        t_ours, _ = timed(lambda: run_process(ours), args.repeats)
        t_theirs, _ = timed(lambda: run_process(theirs), args.repeats)
        diff = max_abs_diff(ours_out, mk_out)
        name = "linear" if method == "lerp" else "nuslerp"
        lines.append(
            f"    {method:5s}: rsoup merge {t_ours:6.2f} s | mergekit-yaml {name:7s} {t_theirs:6.2f} s | "
            f"speed-up {t_theirs / t_ours:5.1f}x (target >= 5x) | max |ours - mergekit| = {diff:.1e}"
        )
    t_import, _ = timed(lambda: run_process([sys.executable, "-c", "import torch"]), args.repeats)
    lines.append(f"    (for scale: `python -c 'import torch'` alone takes {t_import:.2f} s; rsoup merge computes with numpy and never imports torch)")
    return lines


# ------------------------------------------------------------------------------------------ (c)


def bench_memory(args, paths, n_params) -> list[str]:
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from rsoup_lib import merge as M
    from rsoup_lib.front import Front

    init, a, b = ({k: v.clone() for k, v in load_file(paths[n] / "model.safetensors").items()} for n in ("init", "a", "b"))
    size = 4 * n_params  # bytes of one float32 checkpoint
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(paths["init"]))
    model = model.to_empty(device="cpu")
    model.load_state_dict({k: v.clone() for k, v in init.items()}, strict=False, assign=True)
    front = Front.from_state_dicts(model, init, [a, b])
    front.grams()  # once per front, not per point
    numpy_sds = [{k: v.numpy() for k, v in sd.items()} for sd in (init, a, b)]
    lines = [f"(c) in-memory throughput, {n_params / 1e6:.0f}M params float32 ({size / 1e6:.0f} MB per checkpoint, {len(init)} tensors)"]
    default_threads = torch.get_num_threads()
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        src = torch.randn(size // 4)
        dst = torch.empty_like(src)
        t_copy, _ = timed(lambda: dst.copy_(src), 5)
        copy_bw = 2 * size / t_copy
        del src, dst
        rows = [
            ("memory copy, one buffer (torch copy_)", t_copy, 2 * size),
            ("lerp, 2 models -> new tensors (torch)", timed(lambda: M.lerp([a, b], [0.5, 0.5]), 3)[0], 3 * size),
            ("lerp, 2 models -> new arrays (numpy, 1 thread)", timed(lambda: M.lerp(numpy_sds[1:], [0.5, 0.5]), 3)[0], 3 * size),
            ("slerp per tensor, 2 models -> new tensors (torch)", timed(lambda: M.slerp(init, [a, b], 0.5), 3)[0], 4 * size),
            ("front.lerp in place (init + 2 task vectors)", timed(lambda: front.lerp([0.5, 0.5]), 5)[0], 4 * size),
            ("front.slerp in place (init + 2 task vectors)", timed(lambda: front.slerp(0.5), 5)[0], 4 * size),
        ]
        lines.append(f"    torch threads = {threads}")
        for name, t, traffic in rows:
            lines.append(
                f"      {name:50s} {t * 1e3:8.1f} ms  {size / t / 1e9:6.2f} GB/s of model  "
                f"{traffic / t / 1e9:6.2f} GB/s traffic = {traffic / t / copy_bw:4.0%} of copy bandwidth"
            )
    torch.set_num_threads(default_threads)
    return lines


# ------------------------------------------------------------------------------------------ (a)


def bench_front(args) -> list[str]:
    from rsoup_lib.checkpoints import parameters
    from rsoup_lib.evaluate import evaluate
    from rsoup_lib.front import Front
    from rsoup_lib.merge_files import merge_folders
    from rsoup_lib.models import count_parameters, load_policy

    policy = args.front_policy
    try:
        model, tok = load_policy(policy)
    except Exception as err:  # e.g. the tiny model's artifact is not built on this machine
        print(f"note: policy {policy!r} unavailable ({err}); using tiny-random", file=sys.stderr)
        policy = "tiny-random"
        model, tok = load_policy(policy)
    model.eval()
    sft, _ = load_policy(policy)
    sft.eval()
    init = parameters(model)
    endpoints = []
    for s in (1, 2):
        g = torch.Generator().manual_seed(s)
        endpoints.append({k: v + 0.02 * v.std() * torch.randn(v.shape, generator=g) for k, v in init.items()})
    lambdas = [i / 10 for i in range(11)]
    kwargs = dict(rewards=["sentiment", "conciseness"], n=args.eval_n, seed=1, sft=(sft, tok), max_new_tokens=args.eval_tokens)

    front = Front.from_state_dicts(model, init, endpoints)
    evaluate((model, tok), **kwargs)  # warm-up (first-call costs), not timed
    # Per point, side by side: the in-place front, then the same point merged on disk and reloaded.
    t_merge = t_eval = t_disk = t_disk_eval = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, weights in [("a", [1.0, 0.0]), ("b", [0.0, 1.0])]:  # the endpoints as model folders
            front.lerp(weights)
            model.save_pretrained(tmp / name)
            tok.save_pretrained(tmp / name)
        for lam in lambdas:
            t0 = time.perf_counter()
            front.lerp([1 - lam, lam])
            t1 = time.perf_counter()
            evaluate((model, tok), **kwargs)
            t2 = time.perf_counter()
            merge_folders("lerp", [tmp / "a", tmp / "b"], tmp / "point", weights=[1 - lam, lam], overwrite=True)
            point, point_tok = load_policy(str(tmp / "point"))
            point.eval()
            t3 = time.perf_counter()
            evaluate((point, point_tok), **kwargs)
            t4 = time.perf_counter()
            t_merge, t_eval, t_disk, t_disk_eval = t_merge + t1 - t0, t_eval + t2 - t1, t_disk + t3 - t2, t_disk_eval + t4 - t3
    t_all = t_merge + t_eval
    n = count_parameters(model)
    return [
        f"(a) front of {len(lambdas)} points on '{policy}' ({n / 1e6:.2f}M params); per point: {args.eval_n} completions x "
        f"{args.eval_tokens} tokens, sentiment + conciseness, KL to the init",
        f"    in place (rsoup_lib.front): merge {t_merge:7.3f} s of {t_all:7.2f} s = {t_merge / t_all:6.2%} overhead (target < 5%)",
        f"    from disk per point:       merge+load {t_disk:7.3f} s of {t_disk + t_disk_eval:7.2f} s = "
        f"{t_disk / (t_disk + t_disk_eval):6.2%} overhead",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_mk = os.environ.get("RSOUP_MERGEKIT") or str(REPO / ".venv-bench" / "bin" / "mergekit-yaml")
    p.add_argument("--mergekit", default=default_mk, help="path of mergekit-yaml (default $RSOUP_MERGEKIT or .venv-bench)")
    p.add_argument("--only", choices=["a", "b", "c"], nargs="+", default=["a", "b", "c"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--front-policy", default="tiny", help="(a): the policy (tiny-random when it cannot be loaded)")
    p.add_argument("--eval-n", type=int, default=32, help="(a): completions per front point")
    p.add_argument("--eval-tokens", type=int, default=32, help="(a): new tokens per completion")
    p.add_argument("--json", default=None, help="also write the lines to this JSON file")
    args = p.parse_args()

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"benchmarks/merge.py  torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"load average at start {load} (other processes share these CPUs)"
    ]
    if "a" in args.only:
        lines += bench_front(args)
    if {"b", "c"} & set(args.only):
        with tempfile.TemporaryDirectory(prefix="rsoup-bench-") as tmp:
            paths, n_params = make_checkpoints(Path(tmp), args.hidden, args.layers, args.vocab)
            if "b" in args.only:
                lines += bench_files(args, paths, n_params)
            if "c" in args.only:
                lines += bench_memory(args, paths, n_params)
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(lines, indent=2) + "\n")


if __name__ == "__main__":
    main()
