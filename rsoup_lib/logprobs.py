"""Token log-probabilities without the full [batch, length, vocab] log-softmax.

For a completion token y_t with final hidden state h_t and output projection W (vocab x hidden),

    log pi(y_t | x, y_<t) = h_t . W[y_t]  -  logsumexp_v (h_t . W[v])

The naive way builds logits = h @ W.T for every position ([B, T, V] floats, 1.6 GB for
SmolLM2's 49,152-token vocabulary at batch 64 x 128 tokens), then a log-softmax of the same
size, and autograd keeps both for the backward pass.

Here ``ChunkedTokenLogprobs`` walks over the flattened positions in chunks of ``chunk_size``
rows: per chunk it forms the [chunk, V] logits, takes their log-softmax in one fused pass, keeps
only the target's log-prob (one float per position), and throws the rest away. The backward pass
recomputes each chunk's log-softmax from (h, W) and uses

    d logp_t / d logits_t = onehot(y_t) - softmax(logits_t)

so peak memory is O(chunk x V) instead of O(B x T x V), at the cost of one extra chunk matmul
in the backward pass. That matmul is skipped for the first chunks that fit in ``keep_bytes``
(``KEEP_BYTES``, 512 MiB): the forward keeps their probabilities (or log-probabilities) and the
backward uses them instead of recomputing them (the very same numbers: same matmul, same inputs),
so peak memory is O(min(B x T x V, keep_bytes / 4) + chunk x V), below the naive path's several
vocabulary-sized tensors, and no extra matmul while they fit. Without gradient (the anchor,
evaluation) nothing is kept. The entropy of pi(. | x, y_<t), H = - sum_v p_v log p_v, comes out of
the same chunks and is returned without gradient (a metric); its p is what the backward needs,
so with gradient it costs one dot product per position. Callers that discard it (the anchor and
reference of an RL step, the evaluator's KL) pass ``entropy=False`` and get None; the log-probs
are the same numbers, bit for bit (the entropy never enters them).

On a CPU the output projection is packed once for oneDNN when it multiplies two chunks or more
(``rsoup_lib.packed``): each chunk's matmul is then faster (SmolLM2's 256 x 576 x 49,152:
104 -> 79 ms at 2 threads, for a 40 ms packing), and the backward's recomputed chunks go through
the same packed weight, so kept and recomputed chunks stay the same numbers. The packed copy adds
V x H floats to the peak (113 MiB at SmolLM2's shape). With it, forward + backward at batch 16 x
128 positions and SmolLM2's shape takes 2.38 s against the naive path's 2.60 s
(``benchmarks/rl_step.py``, 2 threads, Nov 2026; 0.99-1.04x before the packing).

One fused ``log_softmax`` per chunk (rather than ``logsumexp``, a gather and, in the backward,
``exp(logits - lse)``) saves passes over [chunk, V]: at `tiny`'s shape (960 positions, 8k
vocabulary, one thread) forward + backward with the entropy went from 186 to 165 ms, and at
SmolLM2's vocabulary (2,048 positions) from 5.3 to 4.8 s.

On CUDA with Triton installed, ``token_logprobs`` hands the same computation to the fused
Triton kernel of ``rsoup_lib.kernels`` (no [chunk, V] logits at all, tiles in registers);
``RSOUP_FUSED_LOGPROBS=0`` in the environment keeps the torch path there too.
"""

from __future__ import annotations

import torch

from rsoup_lib.packed import Projection

DEFAULT_CHUNK = 256  # positions per chunk: 256 x 49,152 floats = 50 MB at SmolLM2's vocab
# float32 logits the forward may keep for the backward (the first chunks, while they fit): those
# chunks skip the recomputation. 512 MiB holds a whole batch of 16 x 128 positions at SmolLM2's
# vocabulary, or every position of a cpu-profile step of `tiny` (32 MB).
KEEP_BYTES = 512 * 2**20


class ChunkedTokenLogprobs(torch.autograd.Function):
    """(hidden [N, H], weight [V, H], targets [N]) -> (logp [N], entropy [N]); see the module."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size: int, keep_bytes: int = 0, with_entropy: bool = True):
        n = hidden.shape[0]
        # the output projection, packed once when it multiplies two chunks or more (``rsoup_lib.packed``)
        head = Projection(weight, chunk_size, packed=n > chunk_size)
        logp = hidden.new_empty(n, dtype=torch.float32)
        entropy = hidden.new_empty(n if with_entropy else 0, dtype=torch.float32)
        kept: list[torch.Tensor] = []  # the first chunks' probs (or log-probs), while they fit in keep_bytes
        for s in range(0, n, chunk_size):
            e = min(s + chunk_size, n)
            # one fused pass: log pi(. | context) for the chunk's positions, [c, V]
            log_probs = torch.log_softmax(head(hidden[s:e]).float(), dim=-1)
            logp[s:e] = log_probs.gather(1, targets[s:e, None]).squeeze(1)
            kept_chunk = log_probs
            if with_entropy:  # H = - sum_v p_v log p_v; the backward needs p itself, so keep p
                kept_chunk = log_probs.exp()
                entropy[s:e] = -torch.linalg.vecdot(kept_chunk, log_probs)
            if len(kept) * chunk_size == s and (len(kept) + 1) * kept_chunk.numel() * 4 <= keep_bytes:
                kept.append(kept_chunk)
        ctx.save_for_backward(hidden, weight, targets)
        ctx.chunk_size, ctx.head = chunk_size, head
        ctx.kept, ctx.kept_probs = kept, with_entropy
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        hidden, weight, targets = ctx.saved_tensors
        chunk_size, kept, kept_probs, head = ctx.chunk_size, ctx.kept, ctx.kept_probs, ctx.head
        ctx.kept, ctx.head = [], None
        grad_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        for i, s in enumerate(range(0, hidden.shape[0], chunk_size)):
            e = min(s + chunk_size, hidden.shape[0])
            if i < len(kept):  # the forward's numbers: what a recomputation would give
                probs, kept[i] = kept[i], None
                if not kept_probs:
                    probs = probs.exp_()
            else:
                probs = torch.log_softmax(head(hidden[s:e]).float(), dim=-1).exp_()
            # d logp / d logits = onehot(y) - softmax(logits), scaled by the incoming gradient
            grad_logits = probs.mul_(-grad_logp[s:e, None])  # in place
            grad_logits.scatter_add_(1, targets[s:e, None], grad_logp[s:e, None].float())
            grad_logits = grad_logits.to(hidden.dtype)
            if grad_hidden is not None:
                grad_hidden[s:e] = grad_logits @ weight
            if grad_weight is not None:
                grad_weight.addmm_(grad_logits.T.float(), hidden[s:e].float())
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None


def token_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int = DEFAULT_CHUNK,
    keep_bytes: int = KEEP_BYTES, entropy: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of each target and the entropy of each next-token distribution.

    ``hidden`` [..., H] final hidden states (after the last norm), ``weight`` [V, H] the output
    projection, ``targets`` [...] token ids. Returns two float32 tensors shaped like ``targets``;
    only the first carries gradient. ``keep_bytes``: how much of the forward's logits may be kept
    for the backward pass (only when gradients are recorded; 0: recompute every chunk).
    ``entropy=False``: skip the entropy (returned as None); the log-probs are unchanged, bit for bit.
    """
    if _fused_kernel_enabled(hidden):
        from rsoup_lib.kernels import fused_token_logprobs

        logp, ent = fused_token_logprobs(hidden, weight, targets)
        return logp, (ent if entropy else None)
    shape = targets.shape
    keep = keep_bytes if torch.is_grad_enabled() else 0
    logp, ent = ChunkedTokenLogprobs.apply(
        hidden.reshape(-1, hidden.shape[-1]), weight, targets.reshape(-1), chunk_size, keep, entropy
    )
    return logp.view(shape), (ent.view(shape) if entropy else None)


def _fused_kernel_enabled(hidden: torch.Tensor) -> bool:
    """CUDA tensor, Triton installed, switch not off (``rsoup_lib.kernels.kernel_enabled``)."""
    if not hidden.is_cuda:
        return False  # CPU: never import Triton
    from rsoup_lib.kernels import kernel_enabled

    return kernel_enabled(hidden)


def naive_token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor):
    """The reference: full logits and full log-softmax ([..., V] each). Tests and benchmarks only."""
    logprobs = torch.log_softmax((hidden @ weight.T).float(), dim=-1)
    logp = logprobs.gather(-1, targets[..., None]).squeeze(-1)
    entropy = -(logprobs.exp() * logprobs).sum(-1)
    return logp, entropy.detach()


def _decoder_and_head(model):
    """The transformer trunk (returns final normed hidden states) and the output projection of a
    causal LM, looking through peft wrappers (LoRA layers live inside the trunk, in place)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        raise NotImplementedError("output projections with a bias are not supported")
    return base.get_decoder(), head.weight


def completion_logprobs(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_len: int,
    chunk_size: int = DEFAULT_CHUNK,
    hidden_scale: float = 1.0,
    group_size: int = 1,
    entropy: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs and entropies of the completion part of ``input_ids``.

    ``input_ids`` [B, P + C] = left-padded prompts (P tokens) followed by completions (C tokens).
    Returns ``(logp, entropy)``, each [B, C]: position t scores completion token t given
    everything before it. Logits only for the C completion positions.
    ``hidden_scale`` multiplies the hidden states (1 / temperature scales the logits).

    ``group_size`` k > 1: rows come in groups of k that share their prompt (RLOO's k completions
    of one prompt). The trunk then runs once over the B / k distinct prompts, their key/value
    cache is repeated k times, and a second pass runs the completions on top of it, so prompt
    tokens cost 1/k of a plain forward (and backward). Same numbers up to float rounding.
    ``entropy=False``: the entropies are not computed (None), for callers that only need log-probs.
    """
    decoder, weight = _decoder_and_head(model)
    if group_size == 1:
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = decoder(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        # hidden[:, t] predicts token t + 1: the completion tokens are predicted from P-1 .. P+C-2.
        hidden = hidden[:, prompt_len - 1 : -1]
    else:
        k = group_size
        prompt_ids, prompt_mask = input_ids[::k, :prompt_len], attention_mask[::k, :prompt_len]
        prompt_pos = (prompt_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = decoder(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=prompt_pos, use_cache=True)
        hidden = out.last_hidden_state[:, -1:].repeat_interleave(k, dim=0)  # predicts completion token 0
        n_completion = input_ids.shape[1] - prompt_len
        if n_completion > 1:
            cache = out.past_key_values
            cache.batch_repeat_interleave(k)
            start = prompt_pos[:, -1:].repeat_interleave(k, dim=0) + 1
            steps = torch.arange(n_completion - 1, device=input_ids.device)[None]
            rest = decoder(
                input_ids=input_ids[:, prompt_len:-1], attention_mask=attention_mask[:, :-1],
                position_ids=start + steps, past_key_values=cache, use_cache=True,
            ).last_hidden_state
            hidden = torch.cat([hidden, rest], dim=1)
    if hidden_scale != 1.0:
        hidden = hidden * hidden_scale
    targets = input_ids[:, prompt_len:]
    return token_logprobs(hidden, weight, targets, chunk_size, entropy=entropy)
