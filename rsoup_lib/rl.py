"""KL-regularised RLOO: the one RL trainer every chapter trains through (methods.md section 1).

Objective, for prompts x and completions y ~ pi_theta(. | x):

    max_theta  E_x E_y [ r(x, y) - beta * KL(pi_theta(. | x) || pi_anchor(. | x)) ]

Each step draws ``batch_prompts`` prompts and ``k`` completions per prompt, and shapes the reward
of every completion with its own sequence-level KL estimate

    r_beta(x, y_j) = r(x, y_j) - beta_j * sum_t [ log pi_theta(y_jt | .) - log pi_anchor(y_jt | .) ]

(``beta_j`` is ``beta`` unless a per-sample hook ``kl_coef_fn`` sets it). The advantage is the
leave-one-out baseline over the k completions of the same prompt (RLOO),

    A_j = r_beta_j - 1/(k-1) * sum_{i != j} r_beta_i

and the loss is REINFORCE on the sequence log-prob (or its token mean, ``loss_aggregation``):

    loss = - mean_j  A_j * sum_t log pi_theta(y_jt | x, y_j<t)

The anchor is ``sft`` (the frozen initialisation) or ``ema`` (WARP): after every optimiser step

    theta_ema <- (1 - mu) theta_ema + mu theta            (``ema_anchor_update``)

With LoRA (peft) only the adapters train, the SFT anchor is the base model with the adapters
switched off, and the EMA runs over the adapter weights.

One step costs: one sampling pass (KV cache; each distinct prompt prefilled once for its k
completions), one forward+backward of the policy, one no-grad forward of the anchor, and, only
when the anchor is not the SFT policy, one no-grad forward of the SFT policy for the logged
KL-to-SFT. The forwards also run each prompt once per group of k (``group_size`` in
``rsoup_lib.logprobs.completion_logprobs``), and log-probs never materialise the full
[batch, length, vocab] log-softmax (chunked).

Run folder written by ``train(config, out_dir)``::

    config.json         the RLConfig
    metrics.jsonl       one JSON line per step (rewards, KLs, entropy, grad norm, seconds)
    checkpoints/step-N/ the latest checkpoint (weights, optimiser, EMA anchor, RNG states);
                        removed once the run completes
    snapshots/step-N/   the policy after N steps, every ``snapshot_every`` steps (kept; a model
                        folder like policy/), to evaluate a run's trajectory on held-out prompts
    policy/             the trained policy, a Hugging Face model folder (LoRA merged in)
    adapter/            the LoRA adapter (LoRA runs only)
    summary.json        written last: the run is complete

Multi-process: under ``accelerate launch --multi_gpu --num_processes P`` (on a CPU-only machine
this is how to get P processes: torchrun starts them and the trainer runs gloo on CPU;
``--cpu --num_processes P`` starts a single process unless given an MPI hostfile) each process takes
``batch_prompts / P`` prompts of the step's batch and the gradients are summed across processes
before the optimiser step, so the update is the same as one process computing the whole batch.
Resume: ``train`` on a folder with a checkpoint continues from it; the data order is a pure
function of (seed, step) and the RNG states are restored, so a resumed run ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from rsoup_lib.errors import UserError
from rsoup_lib.io import atomic_dir, atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions, so that `rsoup --help` (which reads RLConfig's fields
# to build `rsoup train`'s flags) does not pay for it.

ANCHORS = ("sft", "ema")
LOSS_AGGREGATIONS = ("sequence", "token_mean")


@dataclass(frozen=True)
class RLConfig:
    """Everything that determines an RL run (the run-cache key is ``asdict(config)``)."""

    policy: str = "tiny"  # initial policy: a name load_policy knows, a model folder, or cache:KEY/policy
    reward: str = "sentiment"  # a reward name or a weighted sum "sentiment:0.5,conciseness:0.5"
    steps: int = 150  # optimiser steps
    batch_prompts: int = 8  # prompts per step (across all processes)
    k: int = 4  # completions per prompt, k >= 2
    max_new_tokens: int = 32
    lr: float = 1e-4  # (3e-4 doubled the KL to SFT for the same reward on the tiny model)
    beta: float = 0.05  # KL coefficient
    anchor: str = "sft"  # "sft" or "ema"
    ema_rate: float = 0.01  # mu of the EMA anchor
    lora: bool = False
    lora_rank: int = 16
    lora_alpha: float = 32.0
    grad_accum: int = 1  # micro-batches per optimiser step (split by prompt)
    max_grad_norm: float = 1.0  # 0 disables clipping (the norm is still logged)
    weight_decay: float = 0.0
    loss_aggregation: str = "sequence"  # "sequence" (sum of token log-probs) or "token_mean"
    temperature: float = 1.0  # sampling temperature (log-probs use the same)
    prompt_split: str = "train"  # rsoup_lib.prompts split, when train() is given no prompts
    checkpoint_every: int = 50  # steps between checkpoints; 0: none
    snapshot_every: int = 0  # steps between kept policy snapshots (snapshots/step-N/); 0: none
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    logprob_chunk: int = 256  # positions per chunk of the log-prob computation (rsoup_lib.logprobs)

    def validate(self) -> None:
        from rsoup_lib.rewards import parse_weights

        def bad(msg):
            raise UserError(f"RL config: {msg}")

        if self.k < 2:
            bad(f"k={self.k}: RLOO needs at least 2 completions per prompt")
        if self.steps < 0 or self.batch_prompts < 1 or self.max_new_tokens < 1:
            bad("steps >= 0, batch_prompts >= 1 and max_new_tokens >= 1 are required")
        if self.anchor not in ANCHORS:
            bad(f"anchor {self.anchor!r} is not one of {ANCHORS}")
        if not 0.0 <= self.ema_rate <= 1.0:
            bad(f"ema_rate {self.ema_rate} must lie in [0, 1]")
        if self.loss_aggregation not in LOSS_AGGREGATIONS:
            bad(f"loss_aggregation {self.loss_aggregation!r} is not one of {LOSS_AGGREGATIONS}")
        if self.grad_accum < 1 or self.batch_prompts % self.grad_accum:
            bad(f"batch_prompts={self.batch_prompts} must be a multiple of grad_accum={self.grad_accum}")
        if self.temperature <= 0:
            bad("temperature must be > 0")
        parse_weights(self.reward)

    @classmethod
    def from_profile(cls, profile, **overrides) -> "RLConfig":
        """The RL fields of a ``rsoup_lib.profiles.Profile`` (or a dict of its parameters)."""
        params = profile if isinstance(profile, dict) else dataclasses.asdict(profile)
        names = {f.name for f in dataclasses.fields(cls)}
        values = {n: v for n, v in params.items() if n in names}
        values.update(overrides)
        return cls(**values)


@dataclass
class Batch:
    """What a step sampled; passed to the per-sample hooks. Row i is completion i % k of prompt
    i // k (``records`` repeats each prompt record k times)."""

    step: int
    records: list[dict]  # prompt records (at least {"prompt": ...}), one per completion
    completions: list[str]
    rewards: torch.Tensor  # [n] float32, the training reward
    lengths: torch.Tensor  # [n] completion tokens (EOS included)


# A hook returning the KL coefficient of every sample, shape [n]: the group-robust chapter's
# adaptive KL (beta_i = beta * (c0 + c1 * p(g_high | x_i, y_i))).
KLCoefFn = Callable[[Batch], "torch.Tensor"]


# ----------------------------------------------------------------------------- pure pieces
def rloo_advantages(shaped: torch.Tensor) -> torch.Tensor:
    """[prompts, k] shaped rewards -> leave-one-out advantages A_j = r_j - mean_{i != j} r_i."""
    k = shaped.shape[-1]
    return shaped - (shaped.sum(-1, keepdim=True) - shaped) / (k - 1)


def ema_anchor_update(
    ema: dict[str, torch.Tensor], current: dict[str, torch.Tensor], mu: float
) -> dict[str, torch.Tensor]:
    """theta_ema <- (1 - mu) theta_ema + mu theta, per tensor; returns new tensors."""
    import torch

    return {name: torch.lerp(ema[name], current[name].detach().to(ema[name].dtype), mu) for name in ema}


def completion_mask(completion_ids: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """1.0 for completion tokens up to and including the first EOS, 0.0 after it."""
    import torch

    if eos_id is None:
        return torch.ones_like(completion_ids, dtype=torch.float32)
    is_eos = (completion_ids == eos_id).long()
    return ((is_eos.cumsum(-1) - is_eos) == 0).float()


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> list[int]:
    """Prompt indices of a step: a stream of seeded permutations of range(n), one per epoch;
    a pure function of (step, seed), which is what makes resuming exact."""
    import torch

    out = []
    start = step * batch_size
    for pos in range(start, start + batch_size):
        epoch, i = divmod(pos, n)
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        out.append(int(torch.randperm(n, generator=g)[i]))
    return out


# ----------------------------------------------------------------------------- sampling
def encode_prompts(tokenizer, instructions: Sequence[str], device) -> dict[str, "torch.Tensor"]:
    """Render (chat template, or "instruction\\n" as the tiny models were trained) and left-pad
    a batch of instructions; no extra special tokens (the template has its own)."""
    from rsoup_lib.models import render_prompt

    texts = [render_prompt(tokenizer, p) for p in instructions]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


@dataclass
class Sampled:
    sequences: "torch.Tensor"  # [n, P + C] prompt (left-padded) + completion
    attention_mask: "torch.Tensor"  # [n, P + C]
    prompt_len: int  # P
    mask: "torch.Tensor"  # [n, C] completion tokens up to the first EOS
    texts: list[str]  # decoded completions


def sample_completions(
    model, tokenizer, instructions: Sequence[str], max_new_tokens: int, temperature: float = 1.0,
    group_size: int = 1,
) -> Sampled:
    """One completion per instruction: ancestral sampling over the whole vocabulary (no top-k /
    top-p) with a KV cache (``rsoup_lib.sampling.decode`` with ``sample_token``, torch's global
    RNG, so a resumed run draws what an uninterrupted one would).

    ``group_size`` k: rows come in groups of k identical instructions (RLOO); each distinct prompt
    is prefilled once and its cache repeated k times. Stops when every row has emitted EOS.
    """
    import torch

    from rsoup_lib.sampling import decode, sample_token

    device = next(model.parameters()).device
    k = group_size
    if len(instructions) % k or any(instructions[i] != instructions[i - i % k] for i in range(len(instructions))):
        raise ValueError(f"sample_completions: instructions must come in groups of {k} identical ones")
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    enc = encode_prompts(tokenizer, instructions[::k], device)
    completion = decode(
        model, enc["input_ids"], enc["attention_mask"], max_new_tokens,
        lambda logits: sample_token(logits, temperature), eos, pad, group_size=k,
    )  # fmt: skip
    prompt_ids = enc["input_ids"].repeat_interleave(k, dim=0)
    prompt_mask = enc["attention_mask"].repeat_interleave(k, dim=0)
    cmask = completion_mask(completion, eos)
    lengths = cmask.sum(-1).long().tolist()
    texts = tokenizer.batch_decode([row[:n].tolist() for row, n in zip(completion, lengths)], skip_special_tokens=True)
    return Sampled(
        sequences=torch.cat([prompt_ids, completion], dim=1),
        attention_mask=torch.cat([prompt_mask, torch.ones_like(completion)], dim=1),
        prompt_len=prompt_ids.shape[1],
        mask=cmask,
        texts=texts,
    )


def scaled_logprobs(model, sampled: Sampled, rows, temperature: float, chunk: int, group_size: int = 1):
    """Completion log-probs of ``rows`` of a sampled batch (temperature-scaled like sampling)."""
    from rsoup_lib.logprobs import completion_logprobs

    return completion_logprobs(
        model, sampled.sequences[rows], sampled.attention_mask[rows], sampled.prompt_len, chunk,
        hidden_scale=1.0 / temperature, group_size=group_size,
    )


# ----------------------------------------------------------------------------- model setup
def _load_policy(config: RLConfig, device):
    import torch

    from rsoup_lib.cache import resolve
    from rsoup_lib.models import load_policy

    torch.manual_seed(config.seed)
    model, tokenizer = load_policy(resolve(config.policy), device=str(device), dtype=config.dtype, seed=config.seed)
    if config.lora:
        import peft

        torch.manual_seed(config.seed)  # LoRA A matrices are random: same seed, same init
        lora = peft.LoraConfig(
            r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules="all-linear"
        )
        model = peft.get_peft_model(model, lora)
    model.eval()  # no dropout: samples and log-probs come from the same function
    return model, tokenizer


@contextlib.contextmanager
def _swapped_weights(model, state: dict[str, torch.Tensor]):
    """Temporarily load ``state`` (a subset of named parameters) into ``model``."""
    import torch

    params = dict(model.named_parameters())
    saved = {n: params[n].detach().clone() for n in state}
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t)
    try:
        yield model
    finally:
        with torch.no_grad():
            for n, t in saved.items():
                params[n].copy_(t)


def _all_reduce_grads(params: list[torch.Tensor]) -> None:
    """Sum gradients over processes (what DDP does), as one flat buffer."""
    import torch
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


# ----------------------------------------------------------------------------- checkpoints
CKPT_PREFIX = "step-"


def latest_checkpoint(out_dir: Path) -> Path | None:
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return None
    ckpts = sorted(
        (p for p in root.iterdir() if p.name.startswith(CKPT_PREFIX) and (p / "state.json").is_file()),
        key=lambda p: int(p.name[len(CKPT_PREFIX) :]),
    )
    return ckpts[-1] if ckpts else None


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_checkpoint(out_dir: Path, step: int, trainable, optimizer, ema, rng_states, config) -> None:
    import torch

    from safetensors.torch import save_file

    root = Path(out_dir) / "checkpoints"
    with atomic_dir(root / f"{CKPT_PREFIX}{step:06d}") as tmp:
        save_file({n: p.detach().contiguous().cpu() for n, p in trainable.items()}, tmp / "trainable.safetensors")
        if ema is not None:
            save_file({n: t.contiguous().cpu() for n, t in ema.items()}, tmp / "ema.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(rng_states, tmp / "rng.pt")
        atomic_write_json(tmp / "state.json", {"step": step, "world_size": len(rng_states), "config": asdict(config)})
    for old in root.iterdir():  # keep only the newest
        if old.name.startswith(CKPT_PREFIX) and old.name != f"{CKPT_PREFIX}{step:06d}":
            shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(ckpt: Path, trainable, optimizer, ema, rank: int, world: int) -> int:
    import torch
    from safetensors.torch import load_file

    state = json.loads((ckpt / "state.json").read_text())
    if state["world_size"] != world:
        raise UserError(
            f"checkpoint {ckpt} was written by {state['world_size']} processes, this run has {world}; "
            "resume with the same number of processes or start a new output folder"
        )
    weights = load_file(ckpt / "trainable.safetensors")
    with torch.no_grad():
        for n, p in trainable.items():
            p.copy_(weights[n])
    if ema is not None:
        for n, t in load_file(ckpt / "ema.safetensors").items():
            ema[n] = t.to(ema[n].device)
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=False))
    _set_rng_state(torch.load(ckpt / "rng.pt", weights_only=False)[rank])
    return int(state["step"])


# ----------------------------------------------------------------------------- the trainer
def _normalise_prompts(prompts) -> list[dict]:
    return [p if isinstance(p, dict) else {"prompt": str(p)} for p in prompts]


def train(
    config: RLConfig,
    out_dir: str | Path,
    *,
    prompts: Sequence[str | dict] | None = None,
    reward_fn: Callable[[list[str], list[str]], list[float]] | None = None,
    kl_coef_fn: KLCoefFn | None = None,
    progress: bool = True,
    stop_at_step: int | None = None,
    num_threads: int | None = None,
) -> Path:
    """Train (or resume training) a policy into ``out_dir``; returns ``out_dir``.

    ``prompts``: instructions (or prompt records) to train on; default ``load_prompts(config.
    prompt_split)``. ``reward_fn(prompts, completions)`` replaces ``config.reward`` as the
    training reward (e.g. a learned reward model); ``kl_coef_fn`` sets per-sample betas.
    ``stop_at_step``: return right after that step, as if the process had been killed there
    (no checkpoint beyond the regular ones, no final policy): how the tests simulate a kill.
    ``num_threads``: torch CPU threads while training (restored after); None keeps torch's.
    On a shared 2-core machine one thread was 10-40x faster than two for the tiny model
    (OpenMP threads fighting other processes for the cores); on an idle machine two are faster
    for the forward/backward. Not part of the config: it changes speed, not the algorithm.
    """
    import torch

    # The trainer owns the global RNG while it runs (that is what makes resuming exact) and
    # hands the caller's back untouched.
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    threads = torch.get_num_threads()
    try:
        if num_threads:
            torch.set_num_threads(num_threads)
        with torch.random.fork_rng(devices=devices):
            return _train(config, out_dir, prompts=prompts, reward_fn=reward_fn, kl_coef_fn=kl_coef_fn,
                          progress=progress, stop_at_step=stop_at_step)
    finally:
        torch.set_num_threads(threads)


def _train(
    config: RLConfig,
    out_dir: str | Path,
    *,
    prompts: Sequence[str | dict] | None = None,
    reward_fn: Callable[[list[str], list[str]], list[float]] | None = None,
    kl_coef_fn: KLCoefFn | None = None,
    progress: bool = True,
    stop_at_step: int | None = None,
) -> Path:
    """``train``'s body (see there and the module docstring)."""
    import torch
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from rsoup_lib.models import resolve_device
    from rsoup_lib.rewards import REWARDS, Reward, get_reward

    config.validate()
    out_dir = Path(out_dir)
    if (out_dir / "summary.json").is_file():
        return out_dir  # already complete
    accelerator = Accelerator(cpu=resolve_device(config.device) == "cpu")
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    if config.batch_prompts % (world * config.grad_accum):
        raise UserError(
            f"batch_prompts={config.batch_prompts} must be a multiple of processes x grad_accum = "
            f"{world} x {config.grad_accum}"
        )
    device = accelerator.device

    if prompts is None:
        from rsoup_lib.prompts import load_prompts

        prompts = load_prompts(config.prompt_split)
    records = _normalise_prompts(prompts)
    if not records:
        raise UserError("no prompts to train on")
    reward = Reward("custom", reward_fn, -math.inf, math.inf) if reward_fn else get_reward(config.reward)

    model, tokenizer = _load_policy(config, device)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    params = list(trainable.values())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    # The SFT policy (frozen init) and the anchor.
    if config.lora:
        sft_context = model.disable_adapter  # base weights = theta_init
        sft_model = model
    else:
        sft_model = copy.deepcopy(model).requires_grad_(False)
        sft_context = contextlib.nullcontext
    ema = {n: p.detach().clone() for n, p in trainable.items()} if config.anchor == "ema" else None

    start_step = 0
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    ckpt = latest_checkpoint(out_dir)
    if ckpt is not None:
        start_step = _load_checkpoint(ckpt, trainable, optimizer, ema, rank, world)
    else:
        torch.manual_seed(config.seed + 1_000_003 * rank)  # each process samples its own completions
    metrics_path = out_dir / "metrics.jsonl"
    if main:
        atomic_write_json(out_dir / "config.json", asdict(config))
        kept = []
        if start_step and metrics_path.is_file():  # drop lines a killed run wrote past its checkpoint
            kept = [l for l in metrics_path.read_text().splitlines() if l and json.loads(l)["step"] < start_step]
        atomic_write_text(metrics_path, "".join(l + "\n" for l in kept))

    per_process = config.batch_prompts // world
    micro = per_process // config.grad_accum  # prompts per micro-batch
    k, T = config.k, config.temperature
    n_global = config.batch_prompts * k
    bar = tqdm(total=config.steps, initial=start_step, disable=not (progress and main), desc=f"rl {config.reward}")
    log_rewards = [r for r in REWARDS.values()]
    for step in range(start_step, config.steps):
        t0 = time.perf_counter()
        idx = batch_indices(step, config.batch_prompts, len(records), config.seed)
        local = [records[i] for i in idx[rank * per_process : (rank + 1) * per_process]]
        rows_records = [r for r in local for _ in range(k)]
        instructions = [r["prompt"] for r in rows_records]

        # 1. sample k completions per prompt
        sampled = sample_completions(model, tokenizer, instructions, config.max_new_tokens, T, group_size=k)
        t_gen = time.perf_counter() - t0
        lengths = sampled.mask.sum(-1)
        scores = torch.tensor(reward(instructions, sampled.texts), dtype=torch.float32, device=device)
        batch = Batch(step, rows_records, sampled.texts, scores, lengths)
        betas = kl_coef_fn(batch).to(device, torch.float32) if kl_coef_fn else torch.full_like(scores, config.beta)

        # 2. per micro-batch: policy forward+backward, anchor (and SFT) no-grad forwards
        sums = torch.zeros(6, device=device)  # loss, shaped, kl_anchor, kl_sft, entropy, tokens
        for m in range(config.grad_accum):
            rows = slice(m * micro * k, (m + 1) * micro * k)
            mask = sampled.mask[rows]
            with torch.no_grad():  # before the policy forward: the EMA swap writes into its weights
                if ema is not None:
                    if config.lora:
                        with _swapped_weights(model, ema):
                            anchor_logp, _ = scaled_logprobs(model, sampled, rows, T, config.logprob_chunk, k)
                    else:
                        with _swapped_weights(sft_model, ema):
                            anchor_logp, _ = scaled_logprobs(sft_model, sampled, rows, T, config.logprob_chunk, k)
                    with sft_context():
                        sft_logp, _ = scaled_logprobs(sft_model, sampled, rows, T, config.logprob_chunk, k)
                else:
                    with sft_context():
                        anchor_logp, _ = scaled_logprobs(sft_model, sampled, rows, T, config.logprob_chunk, k)
                    sft_logp = anchor_logp  # anchor == SFT: the KL to SFT is the KL to the anchor
            logp, entropy = scaled_logprobs(model, sampled, rows, T, config.logprob_chunk, k)
            seq_logp = (logp * mask).sum(-1)
            kl_anchor = ((logp.detach() - anchor_logp) * mask).sum(-1)
            kl_sft = ((logp.detach() - sft_logp) * mask).sum(-1)
            shaped = scores[rows] - betas[rows] * kl_anchor
            advantages = rloo_advantages(shaped.view(-1, k)).view(-1)
            if config.loss_aggregation == "token_mean":
                seq_logp = seq_logp / mask.sum(-1).clamp(min=1)
            loss = -(advantages * seq_logp).sum() / n_global  # summed over processes below
            loss.backward()
            sums += torch.stack([
                loss.detach() * n_global, shaped.sum(), kl_anchor.sum(), kl_sft.sum(),
                (entropy.detach() * mask).sum(), mask.sum(),
            ])

        # 3. optimiser step (gradients summed over processes), EMA anchor update
        if world > 1:
            _all_reduce_grads(params)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm if config.max_grad_norm > 0 else math.inf)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            new = ema_anchor_update(ema, trainable, config.ema_rate)
            for n in ema:
                ema[n] = new[n]

        # 4. metrics (means over the global batch), checkpoint
        all_rewards = {  # every registered reward of the same completions (the trained one is not re-scored)
            r.name: scores.sum().cpu() if (reward_fn is None and r.name == config.reward)
            else torch.tensor(r(instructions, sampled.texts)).sum()
            for r in log_rewards
        }
        stats = torch.cat([sums, scores.sum()[None], torch.stack(list(all_rewards.values())).to(device)])
        if world > 1:
            stats = accelerator.reduce(stats, reduction="sum")
        stats = stats.tolist()
        seconds = time.perf_counter() - t0
        row = {
            "step": step,
            "reward": stats[6] / n_global,
            **{f"reward/{name}": stats[7 + i] / n_global for i, name in enumerate(all_rewards)},
            "shaped_reward": stats[1] / n_global,
            "kl_anchor": stats[2] / n_global,
            "kl_sft": stats[3] / n_global,
            "entropy": stats[4] / max(stats[5], 1.0),
            "completion_tokens": stats[5] / n_global,
            "loss": stats[0] / n_global,
            "grad_norm": float(grad_norm),
            "seconds": seconds,
            "generate_seconds": t_gen,
            "samples_per_s": n_global / seconds,
        }
        if main:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        bar.update(1)
        bar.set_postfix(reward=f"{row['reward']:.3f}", kl=f"{row['kl_sft']:.2f}")
        done = step + 1
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.steps:
            rng_states = accelerate_gather_object(_rng_state(), world)
            if main:
                _save_checkpoint(out_dir, done, trainable, optimizer, ema, rng_states, config)
            accelerator.wait_for_everyone()
        if config.snapshot_every and done % config.snapshot_every == 0 and done < config.steps and main:
            _save_snapshot(model, tokenizer, config, out_dir, done)
        if stop_at_step is not None and done >= stop_at_step:
            bar.close()
            return out_dir
    bar.close()

    # 5. the trained policy, as a Hugging Face folder
    if main:
        _save_policy(model, tokenizer, config, out_dir)
        atomic_write_json(out_dir / "summary.json", _summary(metrics_path))
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # the run is complete
    accelerator.wait_for_everyone()
    return out_dir


def accelerate_gather_object(obj, world: int) -> list:
    if world == 1:
        return [obj]
    from accelerate.utils import gather_object

    return gather_object([obj])


def _save_policy(model, tokenizer, config: RLConfig, out_dir: Path) -> None:
    meta = {"init": config.policy, "reward": config.reward, "steps": config.steps, "lora": config.lora}
    if config.lora:
        with atomic_dir(out_dir / "adapter") as tmp:
            model.save_pretrained(tmp)
        model = model.merge_and_unload()
    with atomic_dir(out_dir / "policy") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / "rsoup_policy.json", meta)


def _save_snapshot(model, tokenizer, config: RLConfig, out_dir: Path, step: int) -> None:
    """The policy after ``step`` steps as a model folder (LoRA merged into a copy; training goes on)."""
    if config.lora:
        model = copy.deepcopy(model).merge_and_unload()
    with atomic_dir(Path(out_dir) / "snapshots" / f"step-{step}") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / "rsoup_policy.json", {"init": config.policy, "reward": config.reward, "steps": step})


def trajectory(run_dir: str | Path) -> list[tuple[int, str]]:
    """The policies along a run as (step, policy name): the init at step 0, every snapshot, and
    the final policy. Evaluate them to get the run's trajectory on held-out prompts (rather than
    the training-batch estimates in metrics.jsonl)."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    points = [(0, config["policy"])]
    snaps = run_dir / "snapshots"
    if snaps.is_dir():
        found = [(int(d.name.split("-")[1]), str(d)) for d in snaps.iterdir() if d.name.startswith("step-")]
        points += sorted(found)
    points.append((config["steps"], str(policy_dir(run_dir))))
    return points


def _summary(metrics_path: Path) -> dict:
    rows = [json.loads(l) for l in metrics_path.read_text().splitlines() if l]
    if not rows:
        return {"steps": 0}
    last = rows[-10:]
    return {
        "steps": len(rows),
        "seconds": sum(r["seconds"] for r in rows),
        "final_reward": sum(r["reward"] for r in last) / len(last),
        "final_kl_sft": sum(r["kl_sft"] for r in last) / len(last),
    }


def policy_dir(run_dir: str | Path) -> Path:
    """The trained policy's model folder inside a run folder."""
    return Path(run_dir) / "policy"


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines() if l]


def init_identity(policy: str) -> str | None:
    """The checksum of a shipped policy's weights (``tiny``: data/MANIFEST.json), so that a
    retrained ``tiny`` does not hit runs cached from the old one. None for other names:
    folders and ``cache:KEY/...`` names are already specific."""
    try:
        from rsoup_lib.manifest import read_manifest

        files = read_manifest().get("files", {})
    except Exception:  # no manifest: nothing to add
        return None
    entry = files.get(f"{policy}/model.safetensors")
    return entry["sha256"] if entry else None


def cache_config(config: RLConfig) -> dict:
    """What the run cache keys an RL run on: the config, plus the init's checksum when known."""
    key = asdict(config)
    if not key["snapshot_every"]:
        del key["snapshot_every"]  # added later: runs without snapshots keep their earlier keys
    identity = init_identity(config.policy)
    if identity:
        key["init_sha256"] = identity
    return key


def cached_train(config: RLConfig, progress: bool = True, num_threads: int | None = None) -> Path:
    """``train`` through the run cache (kind "rl"): a config trained before is not trained again.
    Returns the run folder (``policy_dir(run)`` is the model)."""
    from rsoup_lib.cache import cached_run

    return cached_run(
        "rl", cache_config(config), lambda d: train(config, d, progress=progress, num_threads=num_threads)
    )
