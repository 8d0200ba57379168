"""KL-regularised RLOO: the one RL trainer every chapter trains through (book chapter 1, "RLHF
per reward"; WARP's EMA anchor is chapter 3).

Objective, for prompts x and completions y ~ pi_theta(. | x):

    max_theta  E_x E_y [ r(x, y) - beta * KL(pi_theta(. | x) || pi_anchor(. | x)) ]

Each step of ``_train`` does, in this order:

1. **sample** ``k`` completions for each of ``batch_prompts`` prompts (``sampling.sample_completions``);
2. **score** them with the reward r(x, y_j) (and, optionally, a per-sample KL coefficient beta_j);
3. **shape** each reward with its own sequence-level KL estimate to the anchor
       r_beta(x, y_j) = r(x, y_j) - beta_j * sum_t [ log pi_theta(y_jt | .) - log pi_anchor(y_jt | .) ];
4. take **RLOO advantages**, the leave-one-out baseline over the k completions of one prompt,
       A_j = r_beta_j - 1/(k-1) * sum_{i != j} r_beta_i;
5. **loss**: REINFORCE on the sequence log-prob (or its token mean, ``loss_aggregation``),
       loss = - mean_j  A_j * sum_t log pi_theta(y_jt | x, y_j<t);
6. **step** the optimiser (gradients summed over processes, ``rsoup_lib.scale_out``);
7. move the **EMA** anchor (WARP) when ``anchor = "ema"``:
       theta_ema <- (1 - mu) theta_ema + mu theta,
   kept in float32 whatever the model's dtype (in bfloat16, mu = 0.01 updates would round away).

``Anchor`` holds the frozen policies of step 3: the anchor (the frozen init for ``sft``, the EMA for
``ema``) and the reference that the logged "KL to SFT" is measured against (the init, or
``config.reference`` for runs that start from something other than the SFT policy, such as
WARP's later iterations). With LoRA (peft) only the adapters train, the frozen init is the base
model with the adapters switched off, and the EMA runs over the adapter weights.

Cost of a step: one sampling pass (KV cache; each distinct prompt prefilled once for its k
completions), one forward+backward of the policy, one no-grad forward of the anchor and, only when
the anchor is not the reference, one more for the logged KL. Log-probs never materialise the full
[batch, length, vocab] log-softmax (``rsoup_lib.logprobs``).

The run folder (config, metrics, checkpoints, snapshots, final policy) is ``rsoup_lib.runs``.
Multi-process: the policy and the optimiser go through ``accelerator.prepare``
(``rsoup_lib.scale_out``): under ``accelerate launch --multi_gpu --num_processes P`` DDP (on a
CPU-only machine torchrun starts the processes and the trainer runs gloo on CPU); FSDP and
DeepSpeed are refused with a message saying why (``scale_out``). Each process takes
``batch_prompts / P`` prompts of the step's batch and the engine combines the gradients, so the
update is the one of a single process computing the whole batch.
Resume: the data order is a pure function of (seed, step) and the checkpoints restore the RNG
states, so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from rsoup_lib import runs
from rsoup_lib.errors import UserError
from rsoup_lib.io import atomic_write_json
from rsoup_lib.runs import policy_dir, read_metrics, trajectory  # noqa: F401  (the trainer's outputs)

if TYPE_CHECKING:
    import torch

    from rsoup_lib.sampling import Sampled

# torch is imported inside the functions, so that `rsoup --help` (which reads RLConfig's fields
# to build `rsoup train`'s flags) does not pay for it.

ANCHORS = ("sft", "ema")
LOSS_AGGREGATIONS = ("sequence", "token_mean")


def _field(default, help: str):
    """A config field whose ``help`` reaches ``rsoup train --help``."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RLConfig:
    """Everything that determines an RL run (the run-cache key is ``cache_config(config)``)."""

    policy: str = _field("tiny", "initial policy: a name load_policy knows (tiny, smollm2-135m-instruct), a model folder, or cache:KEY/policy")
    reward: str = _field("sentiment", 'a reward name or a weighted sum "sentiment:0.5,conciseness:0.5"')
    steps: int = _field(150, "optimiser steps")
    batch_prompts: int = _field(8, "prompts per step (across all processes)")
    k: int = _field(4, "completions per prompt (RLOO needs k >= 2)")
    max_new_tokens: int = _field(32, "tokens sampled per completion at most")
    lr: float = _field(1e-4, "AdamW learning rate")
    beta: float = _field(0.05, "KL coefficient beta (>= 0)")
    anchor: str = _field("sft", "what the KL penalty pulls towards: sft (the frozen init) or ema (WARP)")
    ema_rate: float = _field(0.01, "mu of the EMA anchor, in [0, 1]")
    lora: bool = _field(False, "train LoRA adapters (peft) instead of every weight")
    lora_rank: int = _field(16, "LoRA rank")
    lora_alpha: float = _field(32.0, "LoRA alpha (scaling alpha / rank)")
    grad_accum: int = _field(1, "micro-batches per optimiser step (split by prompt)")
    max_grad_norm: float = _field(1.0, "gradient clipping norm; 0 disables clipping (the norm is still logged)")
    weight_decay: float = _field(0.0, "AdamW weight decay")
    loss_aggregation: str = _field("sequence", "sequence (sum of token log-probs) or token_mean")
    temperature: float = _field(1.0, "sampling temperature (the log-probs use the same)")
    prompt_split: str = _field("train", "prompt split to train on (rsoup_lib.prompts)")
    checkpoint_every: int = _field(50, "steps between checkpoints to resume from; 0: none")
    snapshot_every: int = _field(0, "steps between kept policy snapshots (snapshots/step-N/); 0: none")
    reference: str = _field("", "policy the logged KL is measured against ('' = the init); WARP's later iterations give the SFT policy")
    seed: int = _field(0, "seed of the prompt order, the sampling and the LoRA init")
    device: str = _field("cpu", "cpu, cuda or auto")
    dtype: str = _field("float32", "float32 or bfloat16")
    logprob_chunk: int = _field(256, "positions per chunk of the log-prob computation (rsoup_lib.logprobs)")

    def validate(self) -> None:
        """Every field checked before anything runs or is written; a ``UserError`` names the
        field, its value and the range it must lie in."""
        from rsoup_lib.models import check_device, check_dtype
        from rsoup_lib.rewards import parse_weights

        def bad(msg):
            raise UserError(f"RL config: {msg} (see `rsoup train --help`)")

        check_field_types(RLConfig, asdict(self), "RL config: ")
        if self.k < 2:
            bad(f"k={self.k}: RLOO needs at least 2 completions per prompt")
        for name, low in (("steps", 0), ("batch_prompts", 1), ("max_new_tokens", 1), ("grad_accum", 1),
                          ("checkpoint_every", 0), ("snapshot_every", 0), ("lora_rank", 1), ("logprob_chunk", 1)):
            if getattr(self, name) < low:
                bad(f"{name}={getattr(self, name)} must be >= {low}")
        for name, what in (("lr", "the learning rate"), ("beta", "the KL coefficient; 0 turns the KL penalty off"),
                           ("max_grad_norm", "0 turns clipping off"), ("weight_decay", "AdamW's; 0 is none")):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                bad(f"{name}={value} must be >= 0 ({what})")
        if not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            bad(f"lora_alpha={self.lora_alpha} must be > 0")
        if self.anchor not in ANCHORS:
            bad(f"anchor {self.anchor!r} is not one of {ANCHORS}")
        if not 0.0 <= self.ema_rate <= 1.0:
            bad(f"ema_rate {self.ema_rate} must lie in [0, 1]")
        if self.loss_aggregation not in LOSS_AGGREGATIONS:
            bad(f"loss_aggregation {self.loss_aggregation!r} is not one of {LOSS_AGGREGATIONS}")
        if self.batch_prompts % self.grad_accum:
            bad(f"batch_prompts={self.batch_prompts} must be a multiple of grad_accum={self.grad_accum}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            bad(f"temperature={self.temperature} must be > 0")
        check_dtype(self.dtype)
        check_device(self.device)
        parse_weights(self.reward)
    @classmethod
    def from_profile(cls, profile, **overrides) -> "RLConfig":
        """The RL fields of a ``rsoup_lib.profiles.Profile`` (or a dict of its parameters)."""
        params = profile if isinstance(profile, dict) else dataclasses.asdict(profile)
        names = {f.name for f in dataclasses.fields(cls)}
        values = {n: v for n, v in params.items() if n in names}
        values.update(overrides)
        return cls(**values)


def check_field_types(cls, values: dict[str, Any], where: str) -> None:
    """``UserError`` unless every value in ``values`` that names a field of the dataclass ``cls``
    has the field's type (an int is a float too; a bool is not an int). For configs read from
    files, where ``steps: ten`` would otherwise fail deep inside the run."""
    kinds = {"int": ("an int", lambda v: isinstance(v, int) and not isinstance(v, bool)),
             "float": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
             "str": ("a string", lambda v: isinstance(v, str)),
             "bool": ("a bool (true or false)", lambda v: isinstance(v, bool))}  # fmt: skip
    for f in dataclasses.fields(cls):
        kind = kinds.get(str(f.type))
        if f.name in values and kind and not kind[1](values[f.name]):
            raise UserError(f"{where}{f.name}={values[f.name]!r} must be {kind[0]}")


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
# A hook returning a weight w_i for every sample, shape [n], that multiplies the sample's reward
# advantage (the KL part is left as it is): A_i = w_i * RLOO(r)_i - RLOO(beta KL)_i. The
# group-robust chapter's variance penalty enters REINFORCE this way (rsoup_lib.group_robust).
AdvantageWeightFn = Callable[[Batch], "torch.Tensor"]


# ----------------------------------------------------------------------------- the equations
def rloo_advantages(shaped: torch.Tensor) -> torch.Tensor:
    """[prompts, k] shaped rewards -> leave-one-out advantages A_j = r_j - mean_{i != j} r_i."""
    k = shaped.shape[-1]
    return shaped - (shaped.sum(-1, keepdim=True) - shaped) / (k - 1)


def rloo_loss(logp, mask, anchor_logp, reference_logp, scores, betas, k: int, aggregation: str, n_global: int,
              weights=None):
    """Steps 3-5 of the module docstring for one micro-batch of [n, C] token log-probs.

    ``weights`` (optional, [n]) scale each sample's reward advantage and leave its KL advantage:
    A_j = w_j * RLOO(r)_j - RLOO(beta KL)_j, which is step 4 when every w_j = 1 (RLOO is linear).

    Returns ``(loss, sums)``: the loss to backpropagate (its share of the global batch mean) and
    the sums this micro-batch adds to the step's metrics.
    """
    seq_logp = (logp * mask).sum(-1)
    kl_anchor = ((logp.detach() - anchor_logp) * mask).sum(-1)  # sum_t log pi - log pi_anchor
    kl_reference = ((logp.detach() - reference_logp) * mask).sum(-1)
    shaped = scores - betas * kl_anchor  # r_beta = r - beta * KL
    if weights is None:
        advantages = rloo_advantages(shaped.view(-1, k)).view(-1)
    else:
        kl_part = rloo_advantages((betas * kl_anchor).view(-1, k)).view(-1)
        advantages = weights * rloo_advantages(scores.view(-1, k)).view(-1) - kl_part
    if aggregation == "token_mean":
        seq_logp = seq_logp / mask.sum(-1).clamp(min=1)
    loss = -(advantages * seq_logp).sum() / n_global  # summed over micro-batches and processes
    sums = {"loss": loss.detach() * n_global, "shaped_reward": shaped.sum(), "kl_anchor": kl_anchor.sum(),
            "kl_sft": kl_reference.sum()}  # fmt: skip
    return loss, sums


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


def scaled_logprobs(model, sampled: Sampled, rows, config: RLConfig, entropy: bool = True):
    """Token log-probs and entropies of ``rows`` of a sampled batch, at the sampling temperature
    (``entropy=False``: no entropies, None, for the anchor and the reference: same log-probs)."""
    from rsoup_lib.logprobs import completion_logprobs

    return completion_logprobs(
        model, sampled.sequences[rows], sampled.attention_mask[rows], sampled.prompt_len, config.logprob_chunk,
        hidden_scale=1.0 / config.temperature, group_size=config.k, entropy=entropy,
    )  # fmt: skip


# ----------------------------------------------------------------------------- the anchor
class Anchor:
    """The frozen policies of the KL terms: the anchor (the frozen init, or the EMA of the
    policy) and the reference of the logged KL (the init, or ``config.reference``)."""

    def __init__(self, config: RLConfig, model, trainable: dict, device):
        self.config = config
        if config.lora:  # base weights = theta_init
            self.frozen, self.init_weights = model, model.disable_adapter
        else:
            self.frozen, self.init_weights = copy.deepcopy(model).requires_grad_(False), contextlib.nullcontext
        # float32 whatever the model's dtype: in bfloat16, mu = 0.01 updates would round away
        self.ema = {n: p.detach().float().clone() for n, p in trainable.items()} if config.anchor == "ema" else None
        self.reference = None
        if config.reference and config.reference != config.policy:
            self.reference = _load_model(config.reference, config, device)[0].requires_grad_(False)

    def logprobs(self, model, sampled: Sampled, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """(anchor, reference) token log-probs of ``rows``, without gradient."""
        import torch

        with torch.no_grad():  # before the policy forward: the EMA swap writes into its weights
            if self.ema is None:
                with self.init_weights():
                    anchor = scaled_logprobs(self.frozen, sampled, rows, self.config, entropy=False)[0]
                init = anchor  # anchor == init: the KL to the init is the KL to the anchor
            else:
                target = model if self.config.lora else self.frozen
                with _swapped_weights(target, self.ema):
                    anchor = scaled_logprobs(target, sampled, rows, self.config, entropy=False)[0]
                init = None
                if self.reference is None:
                    with self.init_weights():
                        init = scaled_logprobs(self.frozen, sampled, rows, self.config, entropy=False)[0]
            if self.reference is not None:
                return anchor, scaled_logprobs(self.reference, sampled, rows, self.config, entropy=False)[0]
        return anchor, init

    def update(self, trainable: dict) -> None:
        """theta_ema <- (1 - mu) theta_ema + mu theta (step 7), in place, in float32."""
        from rsoup_lib.merge import ema_update_

        if self.ema is not None:
            ema_update_(list(self.ema.values()), [trainable[n] for n in self.ema], self.config.ema_rate)


@contextlib.contextmanager
def _swapped_weights(model, state: dict[str, torch.Tensor]):
    """Temporarily load ``state`` (a subset of named parameters, any float dtype) into ``model``.

    A tensor of the parameter's dtype, shape and device (the float32 EMA of a float32 model) is
    put in place by reference, no copy: the forward reads the very same numbers a copy would
    hold, and nothing writes to the weights inside the block (the anchor's no-grad forward).
    Any other tensor (a float32 EMA of a bfloat16 model) is copied in, rounded to the
    parameter's dtype, and the parameter's own values are copied back after. By reference it
    saves three passes over the weights per step (``tiny``: 14 ms of a 1.1 s EMA step, 1 thread)."""
    import torch

    params = dict(model.named_parameters())
    same = {n for n, t in state.items() if _same_layout(params[n], t)}
    originals = {n: params[n].data for n in same}
    saved = {n: params[n].detach().clone() for n in state if n not in same}
    with torch.no_grad():
        for n, t in state.items():
            if n in same:
                params[n].data = t
            else:
                params[n].copy_(t)
    try:
        yield model
    finally:
        with torch.no_grad():
            for n, t in originals.items():
                params[n].data = t
            for n, t in saved.items():
                params[n].copy_(t)


def _same_layout(param: torch.Tensor, t: torch.Tensor) -> bool:
    return (param.dtype == t.dtype and param.shape == t.shape and param.device == t.device
            and param.stride() == t.stride())  # fmt: skip


# ----------------------------------------------------------------------------- set-up
def _load_model(name: str, config: RLConfig, device):
    from rsoup_lib.cache import resolve
    from rsoup_lib.models import load_policy

    model, tokenizer = load_policy(resolve(name), device=str(device), dtype=config.dtype, seed=config.seed)
    return model.eval(), tokenizer  # eval: no dropout, samples and log-probs come from one function


def _load_policy(config: RLConfig, device):
    import torch

    torch.manual_seed(config.seed)
    model, tokenizer = _load_model(config.policy, config, device)
    if config.lora:
        import peft

        torch.manual_seed(config.seed)  # LoRA A matrices are random: same seed, same init
        lora = peft.LoraConfig(
            r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules="all-linear"
        )
        with warnings.catch_warnings():  # peft reads transformers' deprecated is_gradient_checkpointing
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = peft.get_peft_model(model, lora).eval()
    return model, tokenizer


@dataclass
class _Run:
    """Everything a training loop holds, built once by ``_set_up``."""

    config: RLConfig
    out_dir: Path
    accelerator: Any
    model: Any
    tokenizer: Any
    trainable: dict
    optimizer: Any  # prepared by accelerate
    anchor: Anchor
    policy_logprobs: Any  # scale_out.PolicyLogprobs of ``model``, prepared (DDP-wrapped when distributed)
    records: list[dict]
    reward: Callable
    start_step: int
    metrics_path: Path | None

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def _set_up(config: RLConfig, out_dir: Path, prompts, reward_fn) -> _Run:
    """Processes, prompts, reward, policy, optimiser, anchor, and the checkpoint to resume from."""
    import torch
    from accelerate import Accelerator

    from rsoup_lib import scale_out
    from rsoup_lib.models import resolve_device
    from rsoup_lib.rewards import Reward, get_reward

    accelerator = Accelerator(cpu=resolve_device(config.device) == "cpu")
    scale_out.check_supported(config, accelerator)
    world = accelerator.num_processes
    if config.batch_prompts % (world * config.grad_accum):
        raise UserError(
            f"batch_prompts={config.batch_prompts} must be a multiple of processes x grad_accum = "
            f"{world} x {config.grad_accum}"
        )
    if prompts is None:
        from rsoup_lib.prompts import load_prompts

        prompts = load_prompts(config.prompt_split)
    records = [p if isinstance(p, dict) else {"prompt": str(p)} for p in prompts]
    if not records:
        raise UserError("no prompts to train on")
    if reward_fn:  # named after the function, so that an error says which reward broke
        reward = Reward(getattr(reward_fn, "__name__", "custom"), reward_fn, -math.inf, math.inf)
    else:
        reward = get_reward(config.reward)

    model, tokenizer = _load_policy(config, accelerator.device)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    # fused: one kernel for the whole update instead of a loop over the tensors (tiny, 2 threads:
    # clip + step 15 -> 4 ms); the same update up to float rounding
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in trainable.values())
    optimizer = torch.optim.AdamW(list(trainable.values()), lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    anchor = Anchor(config, model, trainable, accelerator.device)
    policy_logprobs, optimizer = scale_out.prepare(accelerator, model, optimizer)
    run = _Run(config, out_dir, accelerator, model, tokenizer, trainable, optimizer, anchor, policy_logprobs, records,
               reward, 0, None)  # fmt: skip

    if run.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    ckpt = runs.latest_checkpoint(out_dir)
    if ckpt is not None:
        run.start_step = runs.load_checkpoint(ckpt, trainable, optimizer, anchor.ema, run.rank, world)
    else:
        torch.manual_seed(config.seed + 1_000_003 * run.rank)  # each process samples its own completions
    if run.main:
        atomic_write_json(out_dir / "config.json", asdict(config))
        run.metrics_path = runs.start_metrics(out_dir, run.start_step)
    return run


# ----------------------------------------------------------------------------- the loop
def train(
    config: RLConfig,
    out_dir: str | Path,
    *,
    prompts: Sequence[str | dict] | None = None,
    reward_fn: Callable[[list[str], list[str]], list[float]] | None = None,
    kl_coef_fn: KLCoefFn | None = None,
    advantage_weight_fn: AdvantageWeightFn | None = None,
    progress: bool = True,
    stop_at_step: int | None = None,
    num_threads: int | None = None,
) -> Path:
    """Train (or resume training) a policy into ``out_dir``; returns ``out_dir``.

    ``prompts``: instructions (or prompt records) to train on; default ``load_prompts(config.
    prompt_split)``. ``reward_fn(prompts, completions)`` replaces ``config.reward`` as the
    training reward (e.g. a learned reward model); ``kl_coef_fn`` sets per-sample betas;
    ``advantage_weight_fn`` per-sample weights on the reward advantages (``rloo_loss``).
    ``stop_at_step``: return right after that step, as if the process had been killed there
    (no checkpoint beyond the regular ones, no final policy): how the tests simulate a kill.
    ``num_threads``: torch CPU threads while training (``profiles.using_threads``); None keeps
    torch's. Not part of the config: it changes speed, not the algorithm.
    """
    import torch

    from rsoup_lib.profiles import using_threads

    config.validate()
    out_dir = Path(out_dir)
    runs.check_run_folder(out_dir, asdict(config))
    if (out_dir / "summary.json").is_file():  # already complete; a kill may have cut the
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # final clean-up short
        return out_dir
    fresh = not out_dir.exists()
    # The trainer owns the global RNG while it runs (that is what makes resuming exact) and
    # hands the caller's back untouched.
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with using_threads(num_threads), torch.random.fork_rng(devices=devices):
            run = _set_up(config, out_dir, prompts, reward_fn)
            _train(run, kl_coef_fn, progress, stop_at_step, advantage_weight_fn)
    except UserError:
        # A run that fails on its first steps (a reward returning NaN) leaves no folder behind;
        # one with a checkpoint keeps it, to resume from once the cause is fixed.
        if fresh and runs.latest_checkpoint(out_dir) is None:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return out_dir


def _train(run: _Run, kl_coef_fn: KLCoefFn | None, progress: bool, stop_at_step: int | None,
           advantage_weight_fn: AdvantageWeightFn | None = None) -> None:
    """The loop: steps 1-7 of the module docstring, then logging, checkpoints and the policy."""
    import torch
    from tqdm.auto import tqdm

    from rsoup_lib import scale_out
    from rsoup_lib.sampling import sample_completions

    config, model, k = run.config, run.model, run.config.k
    per_process = config.batch_prompts // run.world
    micro = per_process // config.grad_accum  # prompts per micro-batch
    n_global = config.batch_prompts * k
    bar = tqdm(total=config.steps, initial=run.start_step, disable=not (progress and run.main), desc=f"rl {config.reward}")
    for step in range(run.start_step, config.steps):
        t0 = time.perf_counter()
        idx = batch_indices(step, config.batch_prompts, len(run.records), config.seed)
        rows_records = [run.records[i] for i in idx[run.rank * per_process : (run.rank + 1) * per_process] for _ in range(k)]
        instructions = [r["prompt"] for r in rows_records]
        # 1. sample k completions per prompt
        sampled = sample_completions(model, run.tokenizer, instructions, config.max_new_tokens, config.temperature, k)
        t_gen = time.perf_counter() - t0
        # 2. score them
        scores = torch.tensor(run.reward(instructions, sampled.texts), dtype=torch.float32, device=run.accelerator.device)
        batch = Batch(step, rows_records, sampled.texts, scores, sampled.mask.sum(-1))
        betas = kl_coef_fn(batch).to(scores.device, torch.float32) if kl_coef_fn else torch.full_like(scores, config.beta)
        weights = advantage_weight_fn(batch).to(scores.device, torch.float32) if advantage_weight_fn else None
        # 3-5. per micro-batch: anchor log-probs, policy log-probs, shaped reward, RLOO loss, backward
        sums = {}
        for m in range(config.grad_accum):
            rows = slice(m * micro * k, (m + 1) * micro * k)
            anchor_logp, reference_logp = run.anchor.logprobs(model, sampled, rows)
            with scale_out.no_sync(run.accelerator, run.policy_logprobs, m == config.grad_accum - 1):
                logp, entropy = run.policy_logprobs(sampled.sequences[rows], sampled.attention_mask[rows],
                                                    sampled.prompt_len, config.logprob_chunk, 1.0 / config.temperature, k)  # fmt: skip
                mask = sampled.mask[rows]
                loss, micro_sums = rloo_loss(logp, mask, anchor_logp, reference_logp, scores[rows], betas[rows],
                                             k, config.loss_aggregation, n_global,
                                             None if weights is None else weights[rows])  # fmt: skip
                scale_out.backward(run.accelerator, loss)
            micro_sums.update(entropy=(entropy.detach() * mask).sum(), completion_tokens=mask.sum())
            sums = {name: sums.get(name, 0.0) + value for name, value in micro_sums.items()}
        # 6. optimiser step; 7. EMA anchor
        grad_norm = _optimiser_step(run)
        run.anchor.update(run.trainable)
        row = _log_row(run, step, sums, scores, instructions, sampled.texts, grad_norm, t0, t_gen, n_global)
        bar.update(1)
        bar.set_postfix(reward=f"{row['reward']:.3f}", kl=f"{row['kl_sft']:.2f}")
        _save_progress(run, step + 1)
        if stop_at_step is not None and step + 1 >= stop_at_step:
            bar.close()
            return
    bar.close()
    if run.main:  # the trained policy, as a Hugging Face folder; the run is complete
        runs.save_policy(model, run.tokenizer, config, run.out_dir)
        atomic_write_json(run.out_dir / "summary.json", runs.summary(run.metrics_path))
        shutil.rmtree(run.out_dir / "checkpoints", ignore_errors=True)
    run.accelerator.wait_for_everyone()


def _optimiser_step(run: _Run) -> float:
    """Clip, step; returns the gradient norm. The engine already combined the gradients of the
    processes during the backward pass (``scale_out``)."""
    from rsoup_lib import scale_out

    max_norm = run.config.max_grad_norm if run.config.max_grad_norm > 0 else math.inf
    grad_norm = scale_out.clip_gradients(list(run.trainable.values()), max_norm)
    if not math.isfinite(float(grad_norm)):  # a step would write NaN into every weight
        raise UserError(
            f"the gradient norm is {float(grad_norm)}: training diverged (lr={run.config.lr}); "
            "lower lr or max_grad_norm and train into a new --out"
        )
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)


def _log_row(run: _Run, step, sums, scores, instructions, texts, grad_norm, t0, t_gen, n_global) -> dict:
    """One line of metrics.jsonl: means over the global batch of the step's sums, and every
    registered reward of the same completions (the trained one is not scored twice)."""
    import torch

    from rsoup_lib.rewards import REWARDS

    totals = {**sums, "reward": scores.sum()}
    for r in REWARDS.values():
        trained = r is run.reward  # the registered reward trained on (a bare name) is not scored twice
        totals[f"reward/{r.name}"] = scores.sum().cpu() if trained else torch.tensor(r(instructions, texts)).sum()
    names = list(totals)
    values = torch.stack([totals[n].to(scores.device) for n in names])
    if run.world > 1:
        values = run.accelerator.reduce(values, reduction="sum")
    t = dict(zip(names, values.tolist()))
    seconds = time.perf_counter() - t0
    row = {
        "step": step,
        "reward": t["reward"] / n_global,
        **{n: t[n] / n_global for n in names if n.startswith("reward/")},
        **{n: t[n] / n_global for n in ("shaped_reward", "kl_anchor", "kl_sft")},
        "entropy": t["entropy"] / max(t["completion_tokens"], 1.0),
        "completion_tokens": t["completion_tokens"] / n_global,
        "loss": t["loss"] / n_global,
        "grad_norm": grad_norm,
        "seconds": seconds,
        "generate_seconds": t_gen,
        "samples_per_s": n_global / seconds,
    }
    if run.main:
        runs.append_metrics(run.metrics_path, row)
    return row


def _save_progress(run: _Run, done: int) -> None:
    """A checkpoint every ``checkpoint_every`` steps, a snapshot every ``snapshot_every``."""
    config = run.config
    if config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.steps:
        rng_states = [runs.rng_state()]
        if run.world > 1:
            from accelerate.utils import gather_object

            rng_states = gather_object(rng_states)
        if run.main:
            runs.save_checkpoint(run.out_dir, done, run.trainable, run.optimizer, run.anchor.ema, rng_states, asdict(config))
        run.accelerator.wait_for_everyone()
    if config.snapshot_every and done % config.snapshot_every == 0 and done < config.steps and run.main:
        runs.save_snapshot(run.model, run.tokenizer, config, run.out_dir, done)


# ----------------------------------------------------------------------------- the run cache
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
    """What the run cache keys an RL run on: the config, plus the init's checksum when known.
    Fields added after runs were cached (``snapshot_every``, ``reference``) enter the key only
    when set, so the earlier runs keep their keys."""
    key = asdict(config)
    for added in ("snapshot_every", "reference"):
        if not key[added]:
            del key[added]
    if config.anchor == "ema" and config.dtype != "float32":
        key["ema_dtype"] = "float32"  # earlier code kept this EMA in the model's dtype: a different run
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
