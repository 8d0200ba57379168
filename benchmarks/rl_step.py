"""RL step speed: our trainer vs TRL's RLOOTrainer, MFU, and log-prob peak memory, in one run.

Prints, side by side and measured in this one process run:

1. samples/s (completions per second of wall time, steady-state steps: the first step of each
   trainer is a warm-up and is not counted; also per second of the process's CPU time, which
   other processes on a shared machine disturb far less) of ``rsoup_lib.rl.train`` and of
   ``trl.RLOOTrainer`` (use_cpu=True) on the same policy, prompts, reward, batch (prompts x k),
   completion length, beta, learning rate, float32, no gradient checkpointing, constant LR.
   Each runs twice, alternated (ours, TRL, ours, TRL), so that a change of machine load shows up.
2. our model FLOPs utilisation: model FLOPs of a step (2 N per token forward, 6 N per token
   forward+backward, N = parameters doing matmuls incl. the output projection) over the step
   time, against the float32 matmul peak measured here and now (``torch.mm`` of 2048^2).
3. peak memory and time of the log-prob computation (forward + backward) at SmolLM2's
   vocabulary (49,152) and hidden size (576), ours (chunked) vs the naive full log-softmax;
   each twice, alternated, in fresh subprocesses, memory measured as peak RSS minus the RSS just
   before the computation (so both include the gradients of the inputs: 113 MiB for the
   49,152 x 576 projection), time (wall, and the process's CPU time, which another process
   on the machine disturbs far less) as the better of the two runs.

With ``--processes P``, both trainers also run as P data-parallel processes of one torch thread
each (``accelerate launch``, DDP over gloo; the same global batch, split), alternated with the
others, and the speed-up is also printed between each trainer's faster way of using the machine.
(On the 2-core machine with `tiny`, Nov 2026: ours ran about as fast either way, 1.01x; TRL
gained 1.19x from DDP.) The workers must not make an accelerate state before the trainer makes
its own: doing so slowed our DDP steps 1.7x, from 0.62 to 1.04 s.

The CPU may be shared: ``os.getloadavg()`` is printed before and after.

    python benchmarks/rl_step.py                      # the tiny policy, cpu-profile batch
    python benchmarks/rl_step.py --policy tiny-random --steps 3   # a quick check
    python benchmarks/rl_step.py --threads 2 --processes 2        # ... and both as 2 DDP processes
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def load_avg() -> str:
    return "load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


# ----------------------------------------------------------------------------- peak FLOP/s
def matmul_peak(n: int = 2048, repeats: int = 10, clock=time.perf_counter) -> float:
    """FLOP/s of the best of ``repeats`` float32 n x n matmuls; with ``clock=time.process_time``
    FLOP per second of CPU time (all threads)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t = clock()
        a @ b
        best = min(best, clock() - t)
    return 2 * n**3 / best


# ----------------------------------------------------------------------------- ours
def run_ours(args, prompts, tag) -> dict:
    from rsoup_lib import rl
    from rsoup_lib.rl import RLConfig, read_metrics, train

    cfg = RLConfig(policy=args.policy, reward="sentiment", steps=args.steps, batch_prompts=args.batch_prompts,
                   k=args.k, max_new_tokens=args.max_new_tokens, lr=args.lr, beta=args.beta,
                   checkpoint_every=0, seed=0)
    cpu_marks = []  # process CPU time at the end of each step
    save = rl._save_progress

    def marked(run, done):
        save(run, done)
        cpu_marks.append(time.process_time())

    rl._save_progress = marked
    try:
        with tempfile.TemporaryDirectory() as d:
            train(cfg, d, prompts=prompts, progress=False)
            if int(os.environ.get("RANK", "0")) != 0:
                return {}  # under DDP only rank 0 writes the metrics
            rows = read_metrics(d)[1:]
    finally:
        rl._save_progress = save
    seconds = sum(r["seconds"] for r in rows)
    n = len(rows) * args.batch_prompts * args.k
    return {
        "who": f"ours ({tag})",
        "samples_per_s": n / seconds,
        "samples_per_cpu_s": n / (cpu_marks[-1] - cpu_marks[0]),
        "step_cpu_s": statistics.median(b - a for a, b in zip(cpu_marks, cpu_marks[1:])),
        "step_s": statistics.median(r["seconds"] for r in rows),
        "generate_s": statistics.median(r["generate_seconds"] for r in rows),
        "completion_tokens": statistics.mean(r["completion_tokens"] for r in rows),
    }


# ----------------------------------------------------------------------------- TRL
def run_trl(args, prompts, tag) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    from rsoup_lib.models import load_policy, render_prompt
    from rsoup_lib.rewards import get_reward

    torch.manual_seed(0)
    model, tokenizer = load_policy(args.policy)
    sentiment = get_reward("sentiment")

    def reward(prompts, completions, **kw):
        return sentiment(prompts, completions)

    class Timer(TrainerCallback):
        def __init__(self):
            self.times, self.cpu, self.t0, self.c0 = [], [], None, None

        def on_step_begin(self, *a, **k):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.t0)
            self.cpu.append(time.process_time() - self.c0)

    timer = Timer()
    n = args.batch_prompts * args.k  # the global batch; per process n / world under DDP
    world = int(os.environ.get("WORLD_SIZE", "1"))
    data = Dataset.from_dict({"prompt": [render_prompt(tokenizer, p) for p in prompts]})
    with tempfile.TemporaryDirectory() as d:
        # TRL builds its reference model from the policy's folder: hand it one (under DDP the folder
        # is next to the worker's result file, written by rank 0, which the others wait for; not at
        # an accelerate barrier: a state made before the trainer's own slowed our steps down 1.7x)
        policy_dir = Path(args.worker_out).parent / "policy" if args.worker else Path(d) / "policy"
        ready = policy_dir.parent / "policy.ready"
        if world == 1 or int(os.environ.get("RANK", "0")) == 0:
            model.save_pretrained(policy_dir)
            tokenizer.save_pretrained(policy_dir)
            ready.touch()
        while not ready.exists():
            time.sleep(0.1)
        config = RLOOConfig(
            output_dir=str(Path(d) / "out"), use_cpu=True, bf16=False, gradient_checkpointing=False,
            per_device_train_batch_size=n // world, num_generations=args.k, max_completion_length=args.max_new_tokens,
            beta=args.beta, learning_rate=args.lr, lr_scheduler_type="constant", max_steps=args.steps,
            temperature=1.0, top_k=0, top_p=1.0, logging_steps=1, report_to=[], save_strategy="no",
            disable_tqdm=True, seed=0, dataloader_num_workers=0,
        )
        trainer = RLOOTrainer(model=str(policy_dir), reward_funcs=reward, args=config, train_dataset=data,
                              processing_class=tokenizer, callbacks=[timer])
        trainer.train()
        logs = [h for h in trainer.state.log_history if "completions/mean_length" in h][1:]
    times = timer.times[1:]
    return {
        "who": f"trl.RLOOTrainer ({tag})",
        "samples_per_s": n * len(times) / sum(times),
        "samples_per_cpu_s": n * len(times) / sum(timer.cpu[1:]),
        "step_s": statistics.median(times),
        "generate_s": float("nan"),
        "completion_tokens": statistics.mean(h["completions/mean_length"] for h in logs) if logs else float("nan"),
    }


# ----------------------------------------------------------------------------- data-parallel
def run_ddp(args, who: str, tag: str) -> dict:
    """``run_ours`` or ``run_trl`` as ``args.processes`` data-parallel processes of one torch thread
    each, launched as a user launches them (``accelerate launch``; DDP over gloo on CPU): the same
    global batch, each process sampling, scoring and backpropagating its share, gradients
    averaged in the backward pass. Times are rank 0's per step (they include the all-reduce)."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
              str(args.processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "result.json"
        cmd = launch + [__file__, "--worker", who, "--worker-out", str(out), "--policy", args.policy,
                        "--steps", str(args.steps), "--batch-prompts", str(args.batch_prompts), "--k", str(args.k),
                        "--max-new-tokens", str(args.max_new_tokens), "--lr", str(args.lr), "--beta", str(args.beta)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if "Error" in line and "elastic" not in line]
            raise SystemExit(f"the {who} DDP run failed:\n" + "\n".join(errors[-10:] or proc.stderr[-3000:].splitlines()))
        row = json.loads(out.read_text())
    row["who"] = f"{row['who'].split(' (')[0]} DDP {args.processes}x1 ({tag})"
    row["samples_per_cpu_s"] = float("nan")  # rank 0's CPU time is half of the work
    return row


def worker(args) -> None:
    """Inside ``run_ddp``'s launch: one process's share; rank 0 writes the result."""
    from rsoup_lib.profiles import set_threads
    from rsoup_lib.prompts import load_prompts

    set_threads(1)
    prompts = [r["prompt"] for r in load_prompts("train")]
    row = run_ours(args, prompts, "ddp") if args.worker == "ours" else run_trl(args, prompts, "ddp")
    if int(os.environ.get("RANK", "0")) == 0:
        Path(args.worker_out).write_text(json.dumps(row))


# ----------------------------------------------------------------------------- FLOPs
def step_flops(args, prompts, completion_tokens: float) -> tuple[float, float]:
    """(model FLOPs, executed FLOPs) of one of our steps: sampling (a forward over prompt +
    completion), policy forward + backward, one anchor forward: 2 + 6 + 2 = 10 N per token.
    Model FLOPs count every completion's prompt (what the work needs in a plain implementation,
    the usual MFU convention); executed FLOPs count each prompt once per group of k, as our
    prompt sharing runs it."""
    from rsoup_lib.models import load_policy, render_prompt

    model, tokenizer = load_policy(args.policy)
    emb = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings().weight.numel()
    n_matmul = sum(p.numel() for p in model.parameters()) - emb + head  # tied head counted once as matmul
    prompt_tokens = statistics.mean(len(tokenizer(render_prompt(tokenizer, p))["input_ids"]) for p in prompts)
    model_tokens = (prompt_tokens + completion_tokens) * args.batch_prompts * args.k
    executed_tokens = prompt_tokens * args.batch_prompts + completion_tokens * args.batch_prompts * args.k
    return model_tokens * n_matmul * 10, executed_tokens * n_matmul * 10


# ----------------------------------------------------------------------------- memory
def memory_probe(which: str, batch: int, length: int, hidden: int, vocab: int) -> None:
    """Runs in a subprocess: prints the rise of peak RSS (bytes) of one forward+backward."""
    import torch

    from rsoup_lib.logprobs import naive_token_logprobs, token_logprobs

    torch.manual_seed(0)
    h = torch.randn(batch, length, hidden, requires_grad=True)
    w = (torch.randn(vocab, hidden) * 0.02).requires_grad_(True)
    y = torch.randint(0, vocab, (batch, length))
    import psutil

    base = psutil.Process().memory_info().rss  # now, with the inputs allocated (and touched)
    fn = token_logprobs if which == "ours" else naive_token_logprobs
    t, cpu = time.perf_counter(), time.process_time()
    logp, _ = fn(h, w, y)
    logp.sum().backward()
    seconds, cpu_seconds = time.perf_counter() - t, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"which": which, "peak_rise_bytes": peak - base, "seconds": seconds, "cpu_seconds": cpu_seconds}))


def measure_memory(batch=16, length=128, hidden=576, vocab=49_152, repeats=2) -> list[dict]:
    """Each path ``repeats`` times, alternated (ours, naive, ours, naive), each in a fresh
    subprocess; per path the largest peak rise and the shortest time (a shared machine only
    ever adds time)."""
    runs: dict[str, list[dict]] = {"ours": [], "naive": []}
    for _ in range(repeats):
        for which in runs:
            proc = subprocess.run(
                [sys.executable, __file__, "--memory-probe", which, "--mem-shape", f"{batch},{length},{hidden},{vocab}"],
                capture_output=True, text=True, check=True,
            )
            runs[which].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return [{"which": which, "peak_rise_bytes": max(r["peak_rise_bytes"] for r in rs),
             "seconds": min(r["seconds"] for r in rs), "all_seconds": [r["seconds"] for r in rs],
             "cpu_seconds": min(r["cpu_seconds"] for r in rs)}
            for which, rs in runs.items()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", default="tiny")
    p.add_argument("--steps", type=int, default=8, help="steps per trainer (the first is a warm-up)")
    p.add_argument("--batch-prompts", type=int, default=8)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--beta", type=float, default=0.05)
    p.add_argument("--skip-trl", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch threads for both trainers (default: torch's)")
    p.add_argument("--processes", type=int, default=0,
                   help="also run both trainers as this many data-parallel processes of one thread each "
                        "(accelerate launch, DDP over gloo), e.g. 2 on a 2-core machine")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    p.add_argument("--mem-shape", default="16,128,576,49152", help="batch,length,hidden,vocab of the memory test")
    args = p.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe, *map(int, args.mem_shape.split(",")))
        return
    if args.worker:
        worker(args)
        return

    import torch

    from rsoup_lib.profiles import set_threads, using_threads
    from rsoup_lib.prompts import load_prompts

    threads = set_threads(args.threads)

    prompts = [r["prompt"] for r in load_prompts("train")]
    print(f"rl_step benchmark: policy={args.policy} batch={args.batch_prompts} prompts x k={args.k}, "
          f"max_new_tokens={args.max_new_tokens}, beta={args.beta}, steps={args.steps} (first not counted), "
          f"torch threads={torch.get_num_threads()}, cpus={os.cpu_count()}")
    print(load_avg())
    mem = measure_memory(*map(int, args.mem_shape.split(",")))  # first: a clean environment
    peak = matmul_peak()
    rows = []
    for rep in ("1st", "2nd"):  # alternated, so that a change of load hits both
        rows.append(run_ours(args, prompts, rep))
        if not args.skip_trl:
            rows.append(run_trl(args, prompts, rep))
        if args.processes > 1:
            rows.append(run_ddp(args, "ours", rep))
            if not args.skip_trl:
                rows.append(run_ddp(args, "trl", rep))
    peak = max(peak, matmul_peak())
    peak_cpu = matmul_peak(clock=time.process_time)
    with using_threads(os.cpu_count()):
        peak_all = matmul_peak()
    print(load_avg())

    print(f"\n{'trainer':20s} {'samples/s':>10s} {'per CPU s':>10s} {'step s':>8s} {'gen s':>8s} {'compl. tokens':>14s}")
    for r in rows:
        print(f"{r['who']:20s} {r['samples_per_s']:10.2f} {r['samples_per_cpu_s']:10.2f} {r['step_s']:8.3f} "
              f"{r['generate_s']:8.3f} {r['completion_tokens']:14.1f}")
    ours = [r for r in rows if r["who"].startswith("ours (")]
    ours_sps = statistics.mean(r["samples_per_s"] for r in ours)
    trl = [r for r in rows if r["who"].startswith("trl.RLOOTrainer (")]
    if trl:
        trl_sps = statistics.mean(r["samples_per_s"] for r in trl)
        pairs = ", ".join(f"{o['samples_per_s'] / t['samples_per_s']:.2f}x" for o, t in zip(ours, trl))
        print(f"speed-up ours / TRL (samples/s, mean of two runs each): {ours_sps / trl_sps:.2f}x; per pair: {pairs}")
        cpu_ratio = statistics.mean(r["samples_per_cpu_s"] for r in ours) / statistics.mean(r["samples_per_cpu_s"] for r in trl)
        print(f"  per CPU second (samples per second of this process's CPU time, all threads; the work, "
              f"undisturbed by other processes): {cpu_ratio:.2f}x")
    if args.processes > 1:
        mean = lambda prefix: statistics.mean(r["samples_per_s"] for r in rows if r["who"].startswith(prefix))  # noqa: E731
        ddp_ours = mean("ours DDP")
        print(f"ours as {args.processes} processes x 1 thread: {ddp_ours:.2f} samples/s, {ddp_ours / ours_sps:.2f}x "
              f"ours in one process")
        if trl:
            ddp_trl = mean("trl.RLOOTrainer DDP")
            best_trl = max(trl_sps, ddp_trl)
            print(f"TRL as {args.processes} processes x 1 thread: {ddp_trl:.2f} samples/s, {ddp_trl / trl_sps:.2f}x "
                  f"TRL in one process")
            print(f"speed-up, each trainer's faster way of using the machine: {max(ours_sps, ddp_ours) / best_trl:.2f}x "
                  f"({max(ours_sps, ddp_ours):.2f} vs {best_trl:.2f} samples/s); DDP vs DDP: {ddp_ours / ddp_trl:.2f}x")

    flops, executed = step_flops(args, prompts, statistics.mean(r["completion_tokens"] for r in ours))
    step_s = statistics.mean(r["step_s"] for r in ours)
    print(f"\nmatmul peak (float32 2048^2 mm): {peak / 1e9:.1f} GFLOP/s with {threads} thread(s) (the trainers' "
          f"setting), {peak_all / 1e9:.1f} GFLOP/s with {os.cpu_count()}")
    print(f"our step: {flops / 1e9:.2f} GFLOP model FLOPs in {step_s:.3f} s = {flops / step_s / 1e9:.2f} GFLOP/s, "
          f"MFU {flops / step_s / peak:.1%} of the {threads}-thread peak, {flops / step_s / peak_all:.1%} of the "
          f"{os.cpu_count()}-thread peak")
    if args.processes > 1:
        ddp_step = statistics.mean(r["step_s"] for r in rows if r["who"].startswith("ours DDP"))
        print(f"our step as {args.processes} processes x 1 thread: {ddp_step:.3f} s = {flops / ddp_step / 1e9:.2f} GFLOP/s, "
              f"MFU {flops / ddp_step / peak_all:.1%} of the {os.cpu_count()}-thread peak")
    step_cpu = statistics.mean(r["step_cpu_s"] for r in ours)
    print(f"  by CPU time: {step_cpu:.3f} CPU s per step, {flops / step_cpu / 1e9:.2f} model GFLOP per CPU second, "
          f"{flops / step_cpu / peak_cpu:.1%} of the matmul's {peak_cpu / 1e9:.1f} GFLOP per CPU second "
          f"(the efficiency of the work, whatever else the machine runs)")
    print(f"  (executed FLOPs, prompts run once per group of k: {executed / 1e9:.2f} GFLOP = "
          f"{executed / step_s / 1e9:.2f} GFLOP/s, {executed / step_s / peak:.1%} of the {threads}-thread peak)")

    b, t, h, v = map(int, args.mem_shape.split(","))
    print(f"\nlog-prob forward+backward at batch {b} x {t} tokens, hidden {h}, vocab {v}:")
    for m in mem:
        print(f"  {m['which']:6s} peak memory rise {m['peak_rise_bytes'] / 2**20:8.1f} MiB   {m['seconds']:.2f} s "
              f"(best of {', '.join(f'{x:.2f}' for x in m['all_seconds'])})")
    print(f"  naive / ours time: {mem[1]['seconds'] / mem[0]['seconds']:.2f}x wall, "
          f"{mem[1]['cpu_seconds'] / mem[0]['cpu_seconds']:.2f}x CPU ({mem[0]['cpu_seconds']:.2f} s ours, "
          f"{mem[1]['cpu_seconds']:.2f} s naive: process CPU time, steadier than wall time on a shared machine)")
    print(f"  naive / ours peak memory: {mem[1]['peak_rise_bytes'] / max(mem[0]['peak_rise_bytes'], 1):.1f}x")


if __name__ == "__main__":
    main()
