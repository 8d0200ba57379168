"""Where the time of an RL step goes: phase breakdown and the top torch operators.

Runs ``rsoup_lib.rl.train`` (the cpu recipe's batch by default) with timers around its phases,
put in place by wrapping the functions the trainer calls (the trainer itself is unchanged):

- ``sample``: ``sampling.sample_completions`` (prefill + decode loop + detokenising),
- ``reward``: every call of a reward (the training reward, and the other registered rewards
  that the metrics line logs),
- ``anchor fwd``: ``Anchor.logprobs`` (no-grad log-probs of the anchor / reference),
- ``policy fwd``: the policy's log-probs with gradient (``scale_out.PolicyLogprobs.forward``, the
  module the trainer prepares with accelerate),
- ``backward``: ``loss.backward()``,
- ``optimiser``: gradient clipping + AdamW step (``rl._optimiser_step``),
- ``log``: the rest of the metrics line (``rl._log_row``),
- ``other``: the rest of the step (batch indices, loss arithmetic, EMA, checkpoints).

Milliseconds per step are medians over the steady-state steps (the first is a warm-up), of the
process's CPU time (``time.process_time``: on a shared machine far steadier than wall time,
which waits for the other processes; with one torch thread the two agree on an idle machine)
or, with ``--clock wall``, of wall time.
``--torch-profile`` adds torch.profiler's table of the operators of one step (self CPU time).

    python benchmarks/rl_profile.py --threads 1
    python benchmarks/rl_profile.py --threads 2 --torch-profile
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class PhaseTimer:
    """Accumulates wall seconds per phase within the current step; a phase running inside
    another is counted in the inner one only (exclusive times, they add up to the step)."""

    def __init__(self, clock=time.process_time):
        self.clock = clock
        self.steps: list[dict[str, float]] = []
        self.current: dict[str, float] = defaultdict(float)
        self.children: list[float] = []  # time spent in nested phases, per open phase

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            t = self.clock()
            self.children.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = self.clock() - t
                inner = self.children.pop()
                self.current[name] += elapsed - inner
                if self.children:
                    self.children[-1] += elapsed

        return timed

    def close_step(self, total: float) -> None:
        row = dict(self.current)
        row["other"] = total - sum(row.values())
        row["total"] = total
        self.steps.append(row)
        self.current = defaultdict(float)


@contextlib.contextmanager
def instrumented(timer: PhaseTimer):
    """Wrap the trainer's phase functions with ``timer`` for the duration of the block."""
    import torch

    from rsoup_lib import rewards, rl, sampling, scale_out

    saved = {
        (sampling, "sample_completions"): sampling.sample_completions,
        (scale_out.PolicyLogprobs, "forward"): scale_out.PolicyLogprobs.forward,
        (rl, "_optimiser_step"): rl._optimiser_step,
        (rl.Anchor, "logprobs"): rl.Anchor.logprobs,
        (torch.Tensor, "backward"): torch.Tensor.backward,
    }
    original_log_row = rl._log_row
    original_reward = rewards.Reward.__call__
    t_step = [timer.clock()]
    log_row = timer.wrap("log", original_log_row)

    def save_progress(run, done):  # the end of a step: close it
        original_save(run, done)
        now = timer.clock()
        timer.close_step(now - t_step[0])
        t_step[0] = now

    original_save = rl._save_progress
    sampling.sample_completions = timer.wrap("sample", saved[(sampling, "sample_completions")])
    scale_out.PolicyLogprobs.forward = timer.wrap("policy fwd", saved[(scale_out.PolicyLogprobs, "forward")])
    rl._optimiser_step = timer.wrap("optimiser", saved[(rl, "_optimiser_step")])
    rl.Anchor.logprobs = timer.wrap("anchor fwd", saved[(rl.Anchor, "logprobs")])
    torch.Tensor.backward = timer.wrap("backward", saved[(torch.Tensor, "backward")])
    rl._log_row, rl._save_progress = log_row, save_progress
    rewards.Reward.__call__ = timer.wrap("reward", original_reward)
    try:
        yield lambda: t_step.__setitem__(0, timer.clock())
    finally:
        for (owner, name), fn in saved.items():
            setattr(owner, name, fn)
        rl._log_row, rl._save_progress = original_log_row, original_save
        rewards.Reward.__call__ = original_reward


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", default="tiny")
    p.add_argument("--steps", type=int, default=6, help="steps (the first is a warm-up)")
    p.add_argument("--batch-prompts", type=int, default=8)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="process CPU time (default) or wall time")
    p.add_argument("--torch-profile", action="store_true", help="also print torch.profiler's operator table")
    args = p.parse_args()

    import torch

    from rsoup_lib import rl
    from rsoup_lib.profiles import set_threads
    from rsoup_lib.prompts import load_prompts

    set_threads(args.threads)
    prompts = [r["prompt"] for r in load_prompts("train")]
    cfg = rl.RLConfig(policy=args.policy, reward="sentiment", steps=args.steps, batch_prompts=args.batch_prompts,
                      k=args.k, max_new_tokens=args.max_new_tokens, checkpoint_every=0, seed=0)
    timer = PhaseTimer(time.process_time if args.clock == "cpu" else time.perf_counter)
    print(f"rl_profile: policy={args.policy} batch={args.batch_prompts} x k={args.k}, "
          f"max_new_tokens={args.max_new_tokens}, torch threads={torch.get_num_threads()}; "
          + "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    with tempfile.TemporaryDirectory() as d, instrumented(timer) as start:
        # the step timer starts when the set-up is done: the first sample call of step 0
        orig = rl.Anchor.__init__

        def anchor_init(self, *a, **kw):
            orig(self, *a, **kw)
            start()

        rl.Anchor.__init__ = anchor_init
        try:
            if args.torch_profile:
                from torch.profiler import ProfilerActivity, profile, schedule

                sched = schedule(wait=0, warmup=1, active=1, repeat=1)
                with profile(activities=[ProfilerActivity.CPU], schedule=sched) as prof:
                    orig_save = rl._save_progress

                    def save_and_step(run, done):
                        orig_save(run, done)
                        prof.step()

                    rl._save_progress = save_and_step
                    rl.train(dataclasses_replace(cfg, steps=2), d, prompts=prompts, progress=False)
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
                return
            rl.train(cfg, d, prompts=prompts, progress=False)
            metrics = rl.read_metrics(d)
        finally:
            rl.Anchor.__init__ = orig
    steady = timer.steps[1:]
    names = ["sample", "reward", "anchor fwd", "policy fwd", "backward", "optimiser", "log", "other", "total"]
    print(f"\n{args.clock} time, median over {len(steady)} steady-state steps, completion tokens per sample "
          f"{statistics.mean(m['completion_tokens'] for m in metrics[1:]):.1f}")
    total = statistics.median(s["total"] for s in steady)
    for n in names:
        ms = statistics.median(s.get(n, 0.0) for s in steady) * 1000
        print(f"  {n:12s} {ms:8.1f} ms  {ms / 10 / total:5.1f} %")
    print(f"  samples per {args.clock} second {args.batch_prompts * args.k / total:.1f}")


def dataclasses_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)


if __name__ == "__main__":
    main()
