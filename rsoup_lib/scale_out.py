"""Scale-out of the RL trainer (``rsoup_lib.rl``) through accelerate: the policy and its
optimiser go through ``accelerator.prepare``, so one process, DDP (the default of
``accelerate launch --multi_gpu``) and FSDP (``accelerate launch --config_file
configs/accelerate/8gpu_fsdp.yaml``) run the same loop. Why not TRL's trainer: the RLOO step of
book chapter 1 needs the anchor's log-probs, the EMA anchor of chapter 3 and the per-sample KL
hook, which TRL's RLOOTrainer does not expose; the engine work (gradient buckets, sharding) is
accelerate's and torch's, not ours.

The update is the one of a single process computing the whole batch: each process holds
``batch_prompts / P`` prompts and backpropagates its share of the global-batch loss
(``rl.rloo_loss`` divides by the global batch), and the engine *averages* gradients over the P
processes, so the loss is multiplied by P before the backward pass (P = 1: untouched).

The gradient flows through the engine's wrapper only if the forward does, so the policy's
log-prob computation is one module, ``PolicyLogprobs``, and that module is what gets prepared:
DDP's gradient hooks and FSDP's unsharding see the forward, while sampling, the anchor's no-grad
log-probs and saving use the bare policy inside ``full_parameters`` (FSDP: gathered, read-only).

What is refused, with a ``UserError`` naming the combination:
- DeepSpeed: its engine owns the optimiser step, clipping and checkpoints, none of which this
  loop routes through it yet;
- FSDP with ``anchor=ema``: the EMA is kept per parameter on each process, and sharded
  parameters are 1/P of each tensor, so the anchor swap would load shards into full tensors;
- FSDP with ``checkpoint_every > 0``: checkpoints hold each process's full parameters and
  optimiser state, and FSDP's optimiser state is sharded, so a resume would not be exact.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from rsoup_lib.errors import UserError


class PolicyLogprobs(torch.nn.Module):
    """The policy's completion log-probs (``logprobs.completion_logprobs``) as a module whose
    forward the engine's wrapper runs."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy
        # FSDP's auto-wrap policy reads the decoder-layer class names from here
        base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
        self._no_split_modules = getattr(base, "_no_split_modules", None)

    def forward(self, sequences, attention_mask, prompt_len: int, chunk_size: int, hidden_scale: float,
                group_size: int):  # fmt: skip
        from rsoup_lib.logprobs import completion_logprobs

        return completion_logprobs(self.policy, sequences, attention_mask, prompt_len, chunk_size,
                                   hidden_scale=hidden_scale, group_size=group_size)  # fmt: skip


def engine(accelerator) -> str:
    """"single", "ddp", "fsdp", "deepspeed" or another accelerate distributed type, lower-case."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        return "fsdp"
    if kind == DistributedType.DEEPSPEED:
        return "deepspeed"
    if accelerator.num_processes == 1:
        return "single"
    return "ddp"  # MULTI_GPU, MULTI_CPU, MULTI_XPU...: DistributedDataParallel


def check_supported(config, accelerator) -> None:
    """``UserError`` for the combinations of module docstring's list."""
    kind = engine(accelerator)
    if kind == "deepspeed":
        raise UserError(
            "DeepSpeed is not supported by the RL trainer yet (its engine owns the optimiser step, clipping and "
            "checkpoints); launch with configs/accelerate/8gpu_ddp.yaml (DDP) or 8gpu_fsdp.yaml (FSDP)"
        )
    if kind == "fsdp" and config.anchor == "ema":
        raise UserError(
            "anchor=ema under FSDP is not supported: the EMA anchor is kept per parameter and FSDP shards "
            "parameters; use DDP (configs/accelerate/8gpu_ddp.yaml, with lora=true for large models) or anchor=sft"
        )
    if kind == "fsdp" and config.checkpoint_every:
        raise UserError(
            f"checkpoint_every={config.checkpoint_every} under FSDP is not supported: resuming needs the "
            "optimiser state, which FSDP shards; set checkpoint_every=0 or use DDP"
        )


def prepare(accelerator, model, optimizer):
    """(wrapped ``PolicyLogprobs`` of ``model``, prepared optimiser). The bare ``model`` keeps
    working for sampling and the anchor (its parameters are the wrapper's)."""
    return accelerator.prepare(PolicyLogprobs(model), optimizer)


def full_parameters(accelerator, wrapped) -> contextlib.AbstractContextManager:
    """Inside: the bare policy's parameters are whole tensors, read-only (FSDP gathers them;
    every process must enter). Elsewhere a no-op."""
    if engine(accelerator) != "fsdp":
        return contextlib.nullcontext()
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    return FSDP.summon_full_params(wrapped, writeback=False)


def backward(accelerator, loss: torch.Tensor) -> None:
    """Backpropagate this process's share of the global loss; engines average gradients over
    processes, so the loss is scaled by their number (the sum of the shares is the update)."""
    world = accelerator.num_processes
    accelerator.backward(loss * world if world > 1 else loss)


def no_sync(accelerator, wrapped, last_micro_batch: bool) -> contextlib.AbstractContextManager:
    """Skip the gradient all-reduce on every micro-batch but the last of a step."""
    return contextlib.nullcontext() if last_micro_batch else accelerator.no_sync(wrapped)


def clip_gradients(accelerator, wrapped, params: list, max_norm: float) -> Any:
    """Clip to ``max_norm`` and return the total gradient norm over all processes (FSDP: over
    the shards, through the engine; otherwise every process holds the summed gradients)."""
    if engine(accelerator) == "fsdp":
        return accelerator.clip_grad_norm_(list(wrapped.parameters()), max_norm)
    return torch.nn.utils.clip_grad_norm_(params, max_norm)
