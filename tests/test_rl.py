"""The RLOO trainer: pieces, learning, anchors, LoRA, hooks, exact resume, multi-process."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from rsoup_lib.errors import UserError
from rsoup_lib.merge import ema_update
from rsoup_lib.rl import (
    RLConfig,
    batch_indices,
    policy_dir,
    read_metrics,
    rloo_advantages,
    train,
)
from rsoup_lib.sampling import completion_mask

PROMPTS = [
    "Write a review of a horror movie.",
    "Write a short, positive review of a comedy film.",
    "Review a drama you saw recently.",
    "Give me a negative review of a western.",
]


def e_rate(prompts, completions):
    """A reward a random tiny model can learn fast: the share of characters that are 'e'."""
    return [c.count("e") / max(len(c), 1) for c in completions]


def tiny(**kw):
    base = dict(policy="tiny-random", steps=4, batch_prompts=4, k=2, max_new_tokens=8, lr=3e-3,
                beta=0.05, checkpoint_every=0)
    base.update(kw)
    return RLConfig(**base)


def final_weights(run):
    return load_file(policy_dir(run) / "model.safetensors")


# ------------------------------------------------------------------ pure pieces
def test_rloo_advantages_leave_one_out():
    r = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    a = rloo_advantages(r)
    torch.testing.assert_close(a, torch.tensor([[-1.5, 0.0, 1.5], [-3.0, -3.0, 6.0]]))
    torch.testing.assert_close(a.sum(-1), torch.zeros(2))


def test_ema_update():
    ema, cur = {"w": torch.zeros(3)}, {"w": torch.ones(3)}
    torch.testing.assert_close(ema_update(ema, cur, 0.25)["w"], torch.full((3,), 0.25))
    torch.testing.assert_close(ema_update(ema, cur, 0.0)["w"], ema["w"])
    torch.testing.assert_close(ema_update(ema, cur, 1.0)["w"], cur["w"])
    assert ema["w"].sum() == 0  # pure: inputs untouched


def test_completion_mask_keeps_first_eos():
    ids = torch.tensor([[5, 6, 0, 1, 1], [0, 1, 1, 1, 1], [5, 5, 5, 5, 5]])
    m = completion_mask(ids, eos_id=0)
    assert m.tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_batch_indices_are_seeded_epoch_permutations():
    n = 10
    epoch0 = [i for s in range(5) for i in batch_indices(s, 2, n, seed=3)]
    assert sorted(epoch0) == list(range(n))
    assert batch_indices(7, 3, n, seed=3) == batch_indices(7, 3, n, seed=3)
    assert epoch0 != [i for s in range(5) for i in batch_indices(s, 2, n, seed=4)]


@pytest.mark.parametrize("bad", [dict(k=1), dict(anchor="ref"), dict(reward="nope"), dict(batch_prompts=3, grad_accum=2)])
def test_bad_configs_are_user_errors(bad, tmp_path):
    with pytest.raises(UserError):
        train(tiny(**bad), tmp_path, prompts=PROMPTS)


# ------------------------------------------------------------------ training
def test_training_raises_the_reward_and_logs_every_step(tmp_path):
    cfg = tiny(steps=30, batch_prompts=4, k=4, max_new_tokens=12, lr=1e-2, beta=0.0)
    run = train(cfg, tmp_path / "run", prompts=PROMPTS, reward_fn=e_rate, progress=False)
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == list(range(30))
    for key in ["reward", "reward/sentiment", "reward/conciseness", "kl_anchor", "kl_sft", "entropy",
                "grad_norm", "seconds"]:
        assert all(key in r for r in rows)
    first = sum(r["reward"] for r in rows[:5]) / 5
    last = sum(r["reward"] for r in rows[-5:]) / 5
    assert last > first + 0.05, (first, last)
    assert rows[-1]["kl_sft"] > 0
    # a loadable Hugging Face policy, recording its init
    from rsoup_lib.models import load_policy

    model, tok = load_policy(str(policy_dir(run)))
    assert json.loads((policy_dir(run) / "rsoup_policy.json").read_text())["init"] == "tiny-random"
    assert not (run / "checkpoints").exists() and (run / "summary.json").is_file()


def test_constant_reward_without_kl_leaves_weights_unchanged(tmp_path):
    cfg = tiny(steps=2, beta=0.0)
    run = train(cfg, tmp_path, prompts=PROMPTS, reward_fn=lambda p, c: [1.0] * len(c), progress=False)
    from rsoup_lib.models import tiny_random

    init = tiny_random(seed=0)[0].state_dict()
    for name, w in final_weights(run).items():
        torch.testing.assert_close(w, init[name])
    assert all(r["grad_norm"] == 0 for r in read_metrics(run))


def test_sft_anchor_kl_is_zero_on_the_first_step_and_equals_kl_sft(tmp_path):
    state = torch.get_rng_state()
    run = train(tiny(steps=3), tmp_path, prompts=PROMPTS, reward_fn=e_rate, progress=False)
    assert torch.equal(state, torch.get_rng_state())  # the caller's RNG is left alone
    rows = read_metrics(run)
    assert rows[0]["kl_anchor"] == pytest.approx(0, abs=1e-6)
    assert all(r["kl_anchor"] == r["kl_sft"] for r in rows)


def test_ema_anchor_differs_from_sft(tmp_path):
    run = train(tiny(steps=4, anchor="ema", ema_rate=0.5, lr=1e-2), tmp_path, prompts=PROMPTS,
                reward_fn=e_rate, progress=False)
    rows = read_metrics(run)
    assert rows[0]["kl_anchor"] == pytest.approx(0, abs=1e-6)
    assert rows[-1]["kl_anchor"] != pytest.approx(rows[-1]["kl_sft"])


def test_ema_anchor_moves_in_bfloat16(tmp_path):
    """In bfloat16 full fine-tuning a mu = 0.01 EMA update is far below the weights' rounding
    step: an EMA kept in the parameters' dtype silently stays the SFT model. It is float32."""
    from rsoup_lib.models import load_policy
    from rsoup_lib.runs import latest_checkpoint

    cfg = tiny(dtype="bfloat16", anchor="ema", ema_rate=0.01, steps=4, checkpoint_every=2, lr=3e-3)
    train(cfg, tmp_path, prompts=PROMPTS, reward_fn=e_rate, progress=False, stop_at_step=2)
    ema = load_file(latest_checkpoint(tmp_path) / "ema.safetensors")
    init = dict(load_policy("tiny-random", dtype="bfloat16")[0].named_parameters())
    assert all(t.dtype == torch.float32 for t in ema.values())
    norms = [n for n in ema if "norm" in n]  # weights at 1.0, where bfloat16 steps by 2**-7
    assert norms and all((ema[n] - init[n].float()).abs().max() > 0 for n in norms)


def test_reference_policy_is_recorded_and_used_for_the_logged_kl(tmp_path):
    """A run that starts from another policy than its reference (WARP's later iterations) logs
    the KL to the reference and records it for `rsoup eval`."""
    from rsoup_lib.runs import reference_of

    first = train(tiny(steps=2), tmp_path / "a", prompts=PROMPTS, reward_fn=e_rate, progress=False)
    second = train(tiny(steps=1, policy=str(policy_dir(first)), reference="tiny-random"), tmp_path / "b",
                   prompts=PROMPTS, reward_fn=e_rate, progress=False)  # fmt: skip
    assert reference_of(policy_dir(second)) == "tiny-random"
    row = read_metrics(second)[0]
    assert row["kl_anchor"] == pytest.approx(0.0, abs=1e-5)  # the anchor is the run's own init
    assert row["kl_sft"] > 0.01  # ... but the reference is the SFT policy the first run left


def test_per_sample_kl_hook(tmp_path):
    seen = []

    def zero_beta(batch):
        seen.append((batch.step, len(batch.completions), len(batch.records)))
        return torch.zeros(len(batch.completions))

    run = train(tiny(steps=3, beta=10.0, lr=1e-2), tmp_path, prompts=PROMPTS, reward_fn=e_rate,
                kl_coef_fn=zero_beta, progress=False)
    assert seen == [(s, 8, 8) for s in range(3)]
    for r in read_metrics(run):  # beta_i = 0: the shaped reward is the reward, whatever the KL
        assert r["shaped_reward"] == pytest.approx(r["reward"], abs=1e-6)
    assert read_metrics(run)[-1]["kl_sft"] != 0


def test_grad_accumulation_matches_one_big_batch(tmp_path):
    a = train(tiny(steps=2, grad_accum=1), tmp_path / "a", prompts=PROMPTS, reward_fn=e_rate, progress=False)
    b = train(tiny(steps=2, grad_accum=2), tmp_path / "b", prompts=PROMPTS, reward_fn=e_rate, progress=False)
    ra, rb = read_metrics(a), read_metrics(b)
    for key in ["reward", "loss", "kl_sft", "grad_norm"]:  # same samples, same total gradient
        assert [r[key] for r in ra] == pytest.approx([r[key] for r in rb], rel=1e-4, abs=1e-6), key
    wa, wb = final_weights(a), final_weights(b)
    for name in wa:  # Adam turns float-rounding noise in ~0 gradients into steps of up to lr
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=3e-3 * 0.1)


def test_lora_trains_adapters_and_saves_a_merged_policy(tmp_path):
    cfg = tiny(steps=3, lora=True, lora_rank=4, anchor="ema", ema_rate=0.5, lr=1e-2)
    run = train(cfg, tmp_path, prompts=PROMPTS, reward_fn=e_rate, progress=False)
    assert (run / "adapter" / "adapter_config.json").is_file()
    merged = final_weights(run)
    assert not any("lora" in n for n in merged)
    from rsoup_lib.models import tiny_random

    init = tiny_random(seed=0)[0].state_dict()
    assert any(not torch.equal(merged[n], init[n]) for n in merged)
    rows = read_metrics(run)
    assert rows[-1]["kl_anchor"] != pytest.approx(rows[-1]["kl_sft"])


@pytest.mark.parametrize("variant", [dict(), dict(lora=True, lora_rank=4)])
def test_snapshots_are_the_policy_after_n_steps(variant, tmp_path):
    """A snapshot at step 2 of a 4-step run holds the same weights as a 2-step run's final
    policy; the trajectory lists the init, the snapshots and the final policy in step order."""
    from rsoup_lib.rl import cache_config, trajectory

    cfg = tiny(steps=4, snapshot_every=2, lr=1e-2, **variant)
    run = train(cfg, tmp_path / "long", prompts=PROMPTS, reward_fn=e_rate, progress=False)
    short = train(tiny(steps=2, lr=1e-2, **variant), tmp_path / "short", prompts=PROMPTS, reward_fn=e_rate,
                  progress=False)
    points = trajectory(run)
    assert [s for s, _ in points] == [0, 2, 4]
    assert points[0][1] == "tiny-random" and points[-1][1] == str(policy_dir(run))
    snap, two = load_file(f"{points[1][1]}/model.safetensors"), final_weights(short)
    assert snap.keys() == two.keys()
    for name in two:
        torch.testing.assert_close(snap[name], two[name], rtol=0, atol=1e-6)
    assert any(not torch.equal(snap[n], final_weights(run)[n]) for n in two)
    # runs without snapshots keep the cache key they had before the option existed
    assert "snapshot_every" not in cache_config(tiny()) and "snapshot_every" in cache_config(cfg)


# ------------------------------------------------------------------ exact resume
@pytest.mark.parametrize("variant", [dict(anchor="sft"), dict(anchor="ema", ema_rate=0.3),
                                     dict(lora=True, lora_rank=4, anchor="ema", ema_rate=0.3)])
def test_resume_after_kill_gives_the_same_weights(variant, tmp_path):
    cfg = tiny(steps=6, checkpoint_every=2, lr=1e-2, **variant)
    full = train(cfg, tmp_path / "full", prompts=PROMPTS, reward_fn=e_rate, progress=False)
    # "killed" after step 5 (index 4): the last checkpoint is after step 4, and the metrics hold a
    # line for a step past it that the resumed run must recompute and replace
    part = train(cfg, tmp_path / "part", prompts=PROMPTS, reward_fn=e_rate, progress=False, stop_at_step=5)
    assert not (part / "summary.json").exists()
    assert [p.name for p in (part / "checkpoints").iterdir()] == ["step-000004"]
    assert len(read_metrics(part)) == 5
    train(cfg, part, prompts=PROMPTS, reward_fn=e_rate, progress=False)
    wf, wp = final_weights(full), final_weights(part)
    for name in wf:
        torch.testing.assert_close(wp[name], wf[name], rtol=0, atol=1e-6)
    assert [r["reward"] for r in read_metrics(part)] == [r["reward"] for r in read_metrics(full)]


@pytest.mark.parametrize("engine", ["FSDP", "DEEPSPEED"])
def test_sharding_engines_are_refused_with_the_reason(engine):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from rsoup_lib import scale_out

    accelerator = SimpleNamespace(distributed_type=getattr(DistributedType, engine), num_processes=8)
    with pytest.raises(UserError, match=f"does not support {engine}.*8gpu_ddp.yaml"):
        scale_out.check_supported(tiny(anchor="ema"), accelerator)
    ddp = SimpleNamespace(distributed_type=DistributedType.MULTI_GPU, num_processes=8)
    scale_out.check_supported(tiny(anchor="ema"), ddp)  # DDP: everything goes


# ------------------------------------------------------------------ real processes (slow)
TRAIN_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys, torch
    from rsoup_lib.rl import RLConfig, train
    from accelerate import PartialState

    cfg = RLConfig(**json.loads(sys.argv[2]))
    prompts = ["Write a review of a horror movie.", "Write a short, positive review of a comedy film.",
               "Review a drama you saw recently.", "Give me a negative review of a western."]
    reward = lambda p, c: [x.count("e") / max(len(x), 1) for x in c]
    stop = int(sys.argv[3]) if len(sys.argv) > 3 else None  # return after that step, as if killed
    out = train(cfg, sys.argv[1], prompts=prompts, reward_fn=reward, progress=False, stop_at_step=stop)
    import rsoup_lib.rl as rl
    state = PartialState()
    # one string per process: the two share the pipe, and print(a, b, ...) writes piecewise
    print(f"RANK {state.process_index} OF {state.num_processes}", flush=True)
    """
)


def _run_script(tmp_path, out, cfg, launcher, *extra):
    script = tmp_path / "train_script.py"
    script.write_text(TRAIN_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    import dataclasses

    cmd = launcher + [str(script), str(out), json.dumps(dataclasses.asdict(cfg)), *map(str, extra)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_process_accelerate_run(tmp_path):
    cfg = tiny(steps=3, batch_prompts=4, lr=1e-2, checkpoint_every=2)
    # `accelerate launch --cpu --num_processes 2` starts ONE process unless given an MPI hostfile;
    # `--multi_gpu` launches through torchrun, and the trainer (device=cpu) then runs gloo on CPU.
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    proc = _run_script(tmp_path, tmp_path / "run", cfg, accelerate)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANK 0 OF 2" in proc.stdout and "RANK 1 OF 2" in proc.stdout
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [0, 1, 2]
    from rsoup_lib.models import tiny_random

    init = tiny_random(seed=0)[0].state_dict()
    w = final_weights(tmp_path / "run")
    assert any(not torch.equal(w[n], init[n]) for n in w)


@pytest.mark.slow
def test_two_process_resume_gives_the_same_weights(tmp_path):
    """Under DDP too, a run stopped after a checkpoint and resumed (same number of processes)
    ends with the weights and metrics of an uninterrupted one (EMA anchor, LoRA)."""
    cfg = tiny(steps=4, batch_prompts=4, lr=1e-2, checkpoint_every=2, anchor="ema", ema_rate=0.5, lora=True, lora_rank=4)
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    for out, extra in (("full", ()), ("part", (3,)), ("part", ())):  # stopped after step 3 (checkpoint at 2), resumed
        proc = _run_script(tmp_path, tmp_path / out, cfg, accelerate, *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
    wf, wp = final_weights(tmp_path / "full"), final_weights(tmp_path / "part")
    for name in wf:
        torch.testing.assert_close(wp[name], wf[name], rtol=0, atol=0)
    untimed = lambda run: [{k: v for k, v in r.items() if "seconds" not in k and k != "samples_per_s"}  # noqa: E731
                           for r in read_metrics(run)]
    assert untimed(tmp_path / "part") == untimed(tmp_path / "full")


# Each prompt's k completions are drawn from a seed of (prompt, step), one prompt at a time, so
# the samples do not depend on which process draws them: the update can then be compared.
SAME_SAMPLES_SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, sys, zlib, torch
    import rsoup_lib.sampling as sampling
    from rsoup_lib.rl import RLConfig, train

    original, calls = sampling.sample_completions, [0]

    def pad(part, prompt_len, n_completion, pad_id):
        left, right = prompt_len - part.prompt_len, n_completion - part.mask.shape[1]
        n = part.sequences.shape[0]
        fill = lambda width, value, like: torch.full((n, width), value, dtype=like.dtype)
        seq = torch.cat([fill(left, pad_id, part.sequences), part.sequences, fill(right, pad_id, part.sequences)], 1)
        att = torch.cat([fill(left, 0, part.attention_mask), part.attention_mask, fill(right, 0, part.attention_mask)], 1)
        return seq, att, torch.cat([part.mask, fill(right, 0, part.mask)], 1)

    def per_prompt_seeded(model, tokenizer, instructions, max_new_tokens, temperature=1.0, group_size=1):
        parts = []
        for j in range(0, len(instructions), group_size):
            torch.manual_seed(zlib.crc32(instructions[j].encode()) + 7919 * calls[0])
            parts.append(original(model, tokenizer, instructions[j : j + group_size], max_new_tokens, temperature, group_size))
        calls[0] += 1
        p, c = max(x.prompt_len for x in parts), max(x.mask.shape[1] for x in parts)
        seq, att, mask = (torch.cat(t) for t in zip(*(pad(x, p, c, tokenizer.pad_token_id) for x in parts)))
        return sampling.Sampled(seq, att, p, mask, [t for x in parts for t in x.texts])

    sampling.sample_completions = per_prompt_seeded
    cfg = RLConfig(**json.loads(sys.argv[2]))
    prompts = ["Write a review of a horror movie.", "Write a short, positive review of a comedy film.",
               "Review a drama you saw recently.", "Give me a negative review of a western."]
    reward = lambda p, c: [x.count("e") / max(len(x), 1) for x in c]
    train(cfg, sys.argv[1], prompts=prompts, reward_fn=reward, progress=False)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True])
def test_two_process_update_equals_the_one_process_update(lora, tmp_path):
    """DDP over 2 gloo processes (each with half the prompts, and 2 micro-batches: no gradient
    sync on the first) gives the weights and metrics of 1 process computing the whole batch,
    EMA anchor included, full fine-tuning and LoRA."""
    script = tmp_path / "same_samples.py"
    script.write_text(SAME_SAMPLES_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    base = dict(steps=2, batch_prompts=4, lr=1e-2, anchor="ema", ema_rate=0.5, lora=lora, lora_rank=4)
    one = tiny(**base)
    two = tiny(**base, grad_accum=2)
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    import dataclasses

    for launcher, cfg, out in (([sys.executable], one, "one"), (accelerate, two, "two")):
        cmd = launcher + [str(script), str(tmp_path / out), json.dumps(dataclasses.asdict(cfg))]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    w1, w2 = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    from rsoup_lib.models import tiny_random

    init = tiny_random(seed=0)[0].state_dict()
    assert any(not torch.equal(w1[n], init[n]) for n in w1)  # it trained
    # float rounding differs (2 prompts per process pad differently from 4); AdamW turns that
    # into update differences of up to ~0.5% of one lr-sized step where gradients are near 0
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=0, atol=1e-4)
    r1, r2 = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["reward"] for r in r1] == pytest.approx([r["reward"] for r in r2], abs=1e-7)
    for key in ("loss", "kl_anchor", "grad_norm"):  # grad_norm: the processes' gradients are summed, not averaged
        assert [r[key] for r in r1] == pytest.approx([r[key] for r in r2], rel=1e-4, abs=1e-6), key


def test_a_kill_during_the_final_clean_up_leaves_no_checkpoint_behind(tmp_path):
    """summary.json is written before the checkpoints are removed: a kill in between leaves a
    complete run with a half-deleted checkpoint, which the rerun removes instead of keeping."""
    cfg = tiny(steps=2, checkpoint_every=1)
    run = train(cfg, tmp_path / "run", prompts=PROMPTS, reward_fn=e_rate, progress=False)
    half_deleted = run / "checkpoints" / "step-000001"
    half_deleted.mkdir(parents=True)
    (half_deleted / "optimizer.pt").write_bytes(b"left by a kill")
    before = final_weights(run)
    assert train(cfg, run, prompts=PROMPTS, reward_fn=e_rate, progress=False) == run
    assert not (run / "checkpoints").exists()
    after = final_weights(run)
    assert all(torch.equal(before[n], after[n]) for n in before)


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_weights(tmp_path):
    import signal
    import time

    cfg = tiny(steps=40, batch_prompts=4, k=2, max_new_tokens=16, lr=1e-2, checkpoint_every=5)
    script = tmp_path / "train_script.py"
    script.write_text(TRAIN_SCRIPT)
    import dataclasses

    args = [sys.executable, str(script), str(tmp_path / "killed"), json.dumps(dataclasses.asdict(cfg))]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "killed" / "checkpoints").glob("step-000010")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "summary.json").exists(), "the run finished before it could be killed"
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    full = _run_script(tmp_path, tmp_path / "full", cfg, [sys.executable])
    assert full.returncode == 0, full.stderr[-3000:]
    wk, wf = final_weights(tmp_path / "killed"), final_weights(tmp_path / "full")
    for name in wf:
        torch.testing.assert_close(wk[name], wf[name], rtol=0, atol=1e-6)
    assert [r["step"] for r in read_metrics(tmp_path / "killed")] == list(range(40))


# ------------------------------------------------------------------ sampling
def test_sample_token_follows_the_distribution():
    from rsoup_lib.sampling import sample_token

    probs = torch.tensor([0.1, 0.0, 0.6, 0.3])
    torch.manual_seed(0)
    draws = sample_token(probs.log().expand(20_000, 4).clone())
    freq = torch.bincount(draws, minlength=4).float() / 20_000
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)
    assert freq[1] == 0  # a zero-probability token is never drawn
    hot = sample_token(torch.tensor([[0.0, 1.0, 0.0]]).log().expand(1000, 3).clone(), temperature=0.5)
    assert (hot == 1).all()


def test_grouped_sampling_equals_ungrouped_and_stops_at_eos():
    from rsoup_lib.models import tiny_random
    from rsoup_lib.sampling import sample_completions

    model, tok = tiny_random(seed=2)
    instr = [p for p in PROMPTS[:3] for _ in range(2)]
    torch.manual_seed(5)
    a = sample_completions(model, tok, instr, 12, group_size=2)
    torch.manual_seed(5)
    b = sample_completions(model, tok, instr, 12, group_size=1)
    assert a.texts == b.texts and torch.equal(a.sequences, b.sequences)
    assert a.sequences.shape[1] - a.prompt_len <= 12
    comp = a.sequences[:, a.prompt_len:]
    for row, m in zip(comp, a.mask):  # after the first EOS: masked, and padding
        n = int(m.sum())
        if n < comp.shape[1]:
            assert row[n - 1] == tok.eos_token_id and (row[n:] == tok.pad_token_id).all()
    with pytest.raises(ValueError):
        sample_completions(model, tok, PROMPTS[:2], 4, group_size=2)


def test_cached_train_trains_once_and_keys_on_the_shipped_init(tmp_path, monkeypatch):
    import rsoup_lib.rl as rl

    calls = []
    real = rl.train
    monkeypatch.setattr(rl, "train", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = tiny(steps=1)
    first = rl.cached_train(cfg, progress=False)
    again = rl.cached_train(cfg, progress=False)
    assert first == again and len(calls) == 1 and (first / "policy" / "config.json").is_file()
    assert "init_sha256" not in rl.cache_config(cfg)  # tiny-random: built in code, nothing to add
    monkeypatch.setattr(rl, "init_identity", lambda policy: "abc")
    assert rl.cache_config(cfg)["init_sha256"] == "abc"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_swapped_weights_puts_the_state_in_and_the_weights_back(dtype):
    """The EMA swap of the anchor: inside the block the model holds the state (by reference when
    dtypes match, rounded copies otherwise); after it, its own weights, values and storage."""
    from rsoup_lib.models import tiny_random
    from rsoup_lib.rl import _swapped_weights

    model = tiny_random(seed=0)[0].to(dtype)
    params = dict(model.named_parameters())
    before = {n: (p.detach().clone(), p.data_ptr()) for n, p in params.items()}
    g = torch.Generator().manual_seed(0)
    state = {n: torch.randn(p.shape, generator=g) for n, p in list(params.items())[:3]}  # float32
    state_before = {n: t.clone() for n, t in state.items()}
    with _swapped_weights(model, state):
        for n, t in state.items():
            assert torch.equal(params[n].detach(), t.to(dtype))
        for n in list(params)[3:]:
            assert torch.equal(params[n].detach(), before[n][0])
    for n, p in params.items():
        assert torch.equal(p.detach(), before[n][0]) and p.data_ptr() == before[n][1]
    assert all(torch.equal(state[n], state_before[n]) for n in state)  # the state is untouched
