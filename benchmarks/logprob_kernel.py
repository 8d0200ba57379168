"""Token log-probs, forward + backward: our fused Triton kernel vs Liger-Kernel's fused linear
cross-entropy vs the chunked torch path vs the naive full log-softmax, side by side in one run.

For each shape (hidden size x vocabulary; default SmolLM2's 576 x 49,152 and a 4,096 x 131,072
one, at ``--tokens`` positions) and each method, prints the median wall time of a forward +
backward (gradients w.r.t. the hidden states and the projection, after ``--warmup`` untimed
runs) and its peak memory above what the inputs already held:

- ``fused``: ``rsoup_lib.kernels.fused_token_logprobs`` (CUDA + Triton);
- ``liger``: ``liger_kernel``'s ``LigerFusedLinearCrossEntropyLoss`` (reduction "sum",
  ``accum_dtype=float32`` as ours, the hidden states pre-scaled by 1/T; it returns a summed loss,
  not per-token log-probs, so its incoming gradient is uniform: the same matmul work, a
  different output; it computes the gradients during the forward pass) (CUDA, if installed);
- ``chunked``: ``rsoup_lib.logprobs.ChunkedTokenLogprobs`` (the CPU path; any device);
- ``naive``: full logits and log-softmax in float32 (any device).

On CUDA: bfloat16 inputs, peak memory from ``torch.cuda.max_memory_allocated``. Without CUDA it
says so and runs what it can: the torch paths in float32 on the first shape at a small
``--tokens``, each method in a fresh subprocess whose peak RSS minus its RSS before the
computation is the memory (the torch paths only; the kernels need a GPU, their CPU
interpreter is for tests, not timing).

    python benchmarks/logprob_kernel.py                          # what this machine can run
    python benchmarks/logprob_kernel.py --tokens 8192 --json out.json   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHAPES = ((576, 49_152), (4_096, 131_072))
METHODS = ("fused", "liger", "chunked", "naive")
TEMPERATURE = 0.7


def _step_fn(method: str, hidden, weight, targets, grad_out):
    """A function running one forward + backward of ``method``, or a reason it cannot run."""
    import torch

    from rsoup_lib.logprobs import ChunkedTokenLogprobs, naive_token_logprobs

    scale = 1 / TEMPERATURE
    if method == "fused":
        from rsoup_lib.kernels import fused_token_logprobs, triton_available

        if not (hidden.is_cuda and triton_available()):
            return "needs CUDA and Triton"
        return lambda: (fused_token_logprobs(hidden, weight, targets, scale)[0] * grad_out).sum().backward()
    if method == "liger":
        if not hidden.is_cuda:
            return "needs CUDA"
        try:
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
        except ImportError:
            return "liger-kernel not installed (pip install liger-kernel)"
        # fp32 gradient accumulation, as ours (Liger's default accumulates in the inputs' dtype)
        loss = LigerFusedLinearCrossEntropyLoss(reduction="sum", accum_dtype=torch.float32)
        return lambda: loss(weight, hidden * scale, targets).backward()
    if method == "chunked":
        return lambda: (ChunkedTokenLogprobs.apply(hidden * scale, weight, targets, 256)[0] * grad_out).sum().backward()
    if method == "naive":
        return lambda: (naive_token_logprobs(hidden * scale, weight, targets)[0] * grad_out).sum().backward()
    raise ValueError(method)


def measure(method: str, hidden_size: int, vocab: int, tokens: int, device: str, warmup: int, repeats: int) -> dict:
    """Time and peak memory of one method at one shape, in this process."""
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)  # made in place on the device: no temporary raises the CPU's peak RSS
    hidden = torch.empty(tokens, hidden_size, device=device, dtype=dtype).normal_().requires_grad_()
    weight = torch.empty(vocab, hidden_size, device=device, dtype=dtype).normal_(std=hidden_size**-0.5)
    weight.requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), device=device)
    grad_out = torch.randn(tokens, device=device)
    step = _step_fn(method, hidden, weight, targets, grad_out)
    if isinstance(step, str):
        return {"method": method, "skipped": step}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rss_before = _rss_mib()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for i in range(warmup + repeats):
        hidden.grad = weight.grad = None
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = _rss_mib() - rss_before  # ru_maxrss: the peak of the process
    return {"method": method, "ms": 1000 * statistics.median(times), "peak_mib": peak}


def agreement(hidden_size: int, vocab: int, tokens: int) -> str:
    """CUDA: the largest |log-prob difference| of the fused kernel and the chunked torch path
    from the naive path in float32, at this shape (at most 2048 tokens), so a first GPU run shows
    the compiled kernel agrees before its speed is read."""
    import torch

    from rsoup_lib.kernels import fused_token_logprobs
    from rsoup_lib.logprobs import ChunkedTokenLogprobs

    torch.manual_seed(1)
    n = min(tokens, 2048)
    hidden = torch.randn(n, hidden_size, device="cuda", dtype=torch.bfloat16)
    weight = torch.empty(vocab, hidden_size, device="cuda", dtype=torch.bfloat16).normal_(std=hidden_size**-0.5)
    targets = torch.randint(0, vocab, (n,), device="cuda")
    with torch.no_grad():
        exact = torch.log_softmax((hidden.float() / TEMPERATURE) @ weight.float().T, -1).gather(1, targets[:, None])[:, 0]
        fused = fused_token_logprobs(hidden, weight, targets, 1 / TEMPERATURE)[0]
        chunked = ChunkedTokenLogprobs.apply(hidden / TEMPERATURE, weight, targets, 256)[0]
    return (f"max |logp - float32 naive| at {n} tokens: fused {(fused - exact).abs().max().item():.2e}, "
            f"chunked bf16 {(chunked - exact).abs().max().item():.2e}")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _in_subprocess(method, shape, tokens, warmup, repeats) -> dict:
    """CPU: a fresh process per method, so one method's peak RSS is not another's."""
    cmd = [sys.executable, __file__, "--one", method, "--shapes", f"{shape[0]}x{shape[1]}", "--tokens", str(tokens),
           "--warmup", str(warmup), "--repeats", str(repeats)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = [f"{'shape (H x V)':>16} {'tokens':>7} {'method':>8} {'fwd+bwd ms':>11} {'peak MiB':>9} {'vs naive mem':>13}"]
    for r in rows:
        shape = f"{r['hidden']} x {r['vocab']}"
        if "skipped" in r:
            lines.append(f"{shape:>16} {r['tokens']:>7} {r['method']:>8}   skipped: {r['skipped']}")
            continue
        naive = next((x for x in rows if x["method"] == "naive" and x["vocab"] == r["vocab"] and "peak_mib" in x), None)
        ratio = f"{naive['peak_mib'] / r['peak_mib']:.1f}x less" if naive and r["peak_mib"] > 0 else "-"
        lines.append(f"{shape:>16} {r['tokens']:>7} {r['method']:>8} {r['ms']:>11.1f} {r['peak_mib']:>9.1f} {ratio:>13}")
    return "\n".join(lines)


def triton_ok() -> bool:
    from rsoup_lib.kernels import triton_available

    return triton_available()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=",".join(f"{h}x{v}" for h, v in SHAPES), help="HIDDENxVOCAB,...")
    p.add_argument("--tokens", type=int, default=None, help="positions (default 8192 on CUDA, 512 on CPU)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--one", choices=METHODS, help=argparse.SUPPRESS)  # internal: one method, print JSON
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    tokens = args.tokens or (8192 if cuda else 512)
    if args.one:
        print(json.dumps(measure(args.one, *shapes[0], tokens, device, args.warmup, args.repeats)))
        return
    if cuda:
        print(f"device: {torch.cuda.get_device_name()}, bfloat16 inputs, torch {torch.__version__}")
    else:
        print("device: no CUDA on this machine: the fused and Liger kernels need a GPU and are skipped; the torch "
              f"paths run in float32 on the first shape only ({shapes[0][0]} x {shapes[0][1]}) at {tokens} tokens; "
              "memory = peak RSS of a fresh process above its RSS before the computation")  # fmt: skip
        shapes = shapes[:1]
    rows = []
    for shape in shapes:
        if cuda and triton_ok():
            print(f"{shape[0]} x {shape[1]}: " + agreement(*shape, tokens), flush=True)
        for method in METHODS:
            if cuda:
                r = measure(method, *shape, tokens, device, args.warmup, args.repeats)
                torch.cuda.empty_cache()
            elif method in ("fused", "liger"):
                r = {"method": method, "skipped": "needs CUDA"}
            else:
                r = _in_subprocess(method, shape, tokens, args.warmup, args.repeats)
            rows.append({"hidden": shape[0], "vocab": shape[1], "tokens": tokens, **r})
            print(table(rows).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    if args.json:
        from rsoup_lib.io import atomic_write_json

        atomic_write_json(args.json, {"device": torch.cuda.get_device_name() if cuda else "cpu", "rows": rows})


if __name__ == "__main__":
    main()
