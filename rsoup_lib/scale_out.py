"""Scale-out of the RL trainer (``rsoup_lib.rl``) through accelerate: the policy and its
optimiser go through ``accelerator.prepare``, so one process and DDP (``accelerate launch
--multi_gpu`` or ``--config_file configs/accelerate/8gpu_ddp.yaml``) run the same loop. Why not
TRL's trainer: the RLOO step of book chapter 1 needs the anchor's log-probs, the EMA anchor of
chapter 3 and the per-sample KL hook, which TRL's RLOOTrainer does not expose; the engine work
(gradient buckets, overlap of communication with the backward pass) is accelerate's and torch's.

The update is the one of a single process computing the whole batch: each process holds
``batch_prompts / P`` prompts and backpropagates its share of the global-batch loss
(``rl.rloo_loss`` divides by the global batch), and DDP *averages* gradients over the P
processes, so the loss is multiplied by P before the backward pass (P = 1: untouched, so a
single process computes exactly what it did before accelerate was in the loop).

The gradient flows through the engine's wrapper only if the forward does, so the policy's
log-prob computation is one module, ``PolicyLogprobs``, and that module is what gets prepared;
sampling and the anchor's no-grad log-probs use the bare policy (same parameters).

Refused, with a ``UserError`` that names the engine and says what to use instead:
- FSDP. Sharded parameters break three things this loop relies on: sampling runs a different
  number of forward passes on each process (each stops when its own rows reach EOS), and FSDP's
  per-layer all-gathers need the same number everywhere (a hang); the EMA anchor and the anchor
  swap work on whole tensors; checkpoints save one process's optimiser state, which FSDP shards.
  The way to add it: an unsharded bf16 replica of the policy on each GPU for sampling and the
  anchors, refreshed from ``FSDP.summon_full_params`` after each optimiser step, the EMA kept
  against the replica, and ``FSDP.optim_state_dict`` in the checkpoints.
- DeepSpeed: its engine owns the optimiser step, clipping and checkpoints, none of which this
  loop routes through it; ZeRO-3 also shards parameters (as FSDP).
Models of 1B+ parameters train with DDP: LoRA (the adapters and their AdamW state are small)
or, on 80 GB GPUs, full fine-tuning up to about 3B parameters in bfloat16 (README).
"""

from __future__ import annotations

import contextlib

import torch

from rsoup_lib.errors import UserError


class PolicyLogprobs(torch.nn.Module):
    """The policy's completion log-probs (``logprobs.completion_logprobs``) as a module whose
    forward the engine's wrapper runs (DDP's gradient hooks fire for what this forward used)."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

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
    """``UserError`` for the engines of the module docstring's list."""
    kind = engine(accelerator)
    reasons = {
        "fsdp": "sampling would hang (each process stops at its own EOS while FSDP's all-gathers need every "
                "process), and the EMA anchor and the checkpoints work on whole, unsharded tensors",
        "deepspeed": "its engine owns the optimiser step, clipping and checkpoints, which this loop does not "
                     "route through it",
    }  # fmt: skip
    if kind in reasons:
        raise UserError(
            f"the RL trainer does not support {kind.upper()} (anchor={config.anchor}, lora={config.lora}): "
            f"{reasons[kind]}. Launch with DDP instead (configs/accelerate/8gpu_ddp.yaml), with --lora for "
            "models that do not fit on one GPU with their AdamW state"
        )


def prepare(accelerator, model, optimizer):
    """(prepared ``PolicyLogprobs`` of ``model``, prepared optimiser). The bare ``model`` keeps
    working for sampling and the anchor (its parameters are the wrapper's)."""
    return accelerator.prepare(PolicyLogprobs(model), optimizer)


def backward(accelerator, loss: torch.Tensor) -> None:
    """Backpropagate this process's share of the global loss; engines average gradients over
    processes, so the loss is scaled by their number (the sum of the shares is the update)."""
    world = accelerator.num_processes
    accelerator.backward(loss * world if world > 1 else loss)


def no_sync(accelerator, wrapped, last_micro_batch: bool) -> contextlib.AbstractContextManager:
    """Skip the gradient all-reduce on every micro-batch but the last of a step."""
    return contextlib.nullcontext() if last_micro_batch else accelerator.no_sync(wrapped)


def clip_gradients(params: list, max_norm: float) -> torch.Tensor:
    """Clip to ``max_norm``; returns the total gradient norm (after DDP's backward every process
    holds the combined gradients, so every process computes the same norm)."""
    return torch.nn.utils.clip_grad_norm_(params, max_norm)
