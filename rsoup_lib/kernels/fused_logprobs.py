"""Fused token log-probabilities in Triton: hidden states x output projection, / temperature,
log-softmax, gather the sampled token, forward and backward, without the [tokens, vocabulary]
logits in memory (book chapter 1's RLOO step spends most of its time here on a GPU).

For a sampled token y_t with final hidden state h_t, output projection W ([V, H]) and
temperature T (``scale`` = 1 / T):

    z_tv = scale * h_t . W_v
    log pi(y_t | .) = z_{t, y_t} - logsumexp_v z_tv                     (the returned log-prob)
    H_t = logsumexp_v z_tv - sum_v softmax(z_t)_v z_tv                 (the entropy, no gradient)

**Forward** (``_forward_kernel``): one program per block of ``BLOCK_N`` rows walks the vocabulary
in blocks of ``BLOCK_V`` columns; each [BLOCK_N, BLOCK_V] tile of z is formed in registers
(a ``tl.dot`` over the hidden size in blocks of ``BLOCK_H``, fp32 accumulation of bf16 inputs)
and folded into an online logsumexp (running max m, running sum s = sum exp(z - m) and
t = sum exp(z - m) z for the entropy, both rescaled by exp(m_old - m_new) when the max moves).
Only three floats per row reach memory: log-prob, entropy and the logsumexp kept for backward.

**Backward**: with g_t the incoming gradient of log pi(y_t),

    dL/dz_tv = g_t (1[v = y_t] - softmax(z_t)_v),
    dL/dh_t = scale * sum_v dL/dz_tv W_v,     dL/dW_v = scale * sum_t dL/dz_tv h_t.

Each is one kernel that recomputes its tiles of z from (h, W) and the saved logsumexp:
``_grad_hidden_kernel`` owns a block of rows and walks the vocabulary, ``_grad_weight_kernel``
owns a block of the vocabulary and walks the rows. Each program adds into fp32 output rows that
no other program touches, so there are no atomics and the result is bitwise reproducible (a
kernel with atomic adds, as in Cut Cross-Entropy, does two fewer tile matmuls but sums in a
run-dependent order; the library promises same seed, same numbers). Cost: 5 [N, V, H] matmuls
per forward+backward (1 forward, 2 recomputes, 2 gradients) against 3 for the naive path, for
O(N + V) extra memory instead of O(N V). Offsets are computed in int64 (a 256k x 8k projection
has more than 2^31 elements).

Why our own kernel and not Liger-Kernel's fused linear cross-entropy: Liger returns the mean
cross-entropy (a scalar loss), while RLOO and the KL penalty need every token's log-prob (and
the entropy as a metric), with a per-token incoming gradient; ``benchmarks/logprob_kernel.py``
times the two side by side.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the torch path runs instead (rsoup_lib.logprobs)
    triton = None
    tl = None

SWITCH = "RSOUP_FUSED_LOGPROBS"  # "0": never use the kernel


def triton_available() -> bool:
    return triton is not None


def interpreting() -> bool:
    """Triton's interpreter (``TRITON_INTERPRET=1`` when this module was imported): the kernels
    run on CPU tensors, slowly; for tests."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def kernel_enabled(hidden: torch.Tensor) -> bool:
    """Whether ``token_logprobs`` should use the kernel for ``hidden``: a CUDA tensor, Triton
    installed, and the switch not set to 0."""
    return hidden.is_cuda and triton is not None and os.environ.get(SWITCH, "1") != "0"


if triton is not None:

    @triton.jit
    def _dot(a, b, acc, PRECISION: tl.constexpr):
        """acc + a @ b. PRECISION "upcast": both operands to fp32 first (exact for bf16; Triton
        3.9's interpreter multiplies bf16 tiles as raw uint16, so the interpreter takes this way)."""
        if PRECISION == "upcast":
            return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
        else:
            return tl.dot(a, b, acc, input_precision=PRECISION)

    @triton.jit
    def _logits_tile(h_ptr, w_ptr, rows, cols, n_rows, n_vocab, hidden_size, stride_h, stride_w, scale,
                     BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr,
                     PRECISION: tl.constexpr):  # fmt: skip
        """z = scale * h[rows] @ W[cols].T, a [BLOCK_N, BLOCK_V] fp32 tile (zeros off the edges)."""
        acc = tl.zeros((BLOCK_N, BLOCK_V), dtype=tl.float32)
        for k0 in range(0, hidden_size, BLOCK_H):
            ks = k0 + tl.arange(0, BLOCK_H)
            k_ok = ks < hidden_size
            h = tl.load(h_ptr + rows[:, None].to(tl.int64) * stride_h + ks[None, :],
                        mask=(rows[:, None] < n_rows) & k_ok[None, :], other=0.0)  # fmt: skip
            w = tl.load(w_ptr + cols[:, None].to(tl.int64) * stride_w + ks[None, :],
                        mask=(cols[:, None] < n_vocab) & k_ok[None, :], other=0.0)  # fmt: skip
            acc = _dot(h, tl.trans(w), acc, PRECISION)
        return acc * scale

    @triton.jit
    def _forward_kernel(h_ptr, w_ptr, t_ptr, logp_ptr, ent_ptr, lse_ptr, n_rows, n_vocab, hidden_size,
                        stride_h, stride_w, scale, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr,
                        BLOCK_H: tl.constexpr, PRECISION: tl.constexpr):  # fmt: skip
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < n_rows
        target = tl.load(t_ptr + rows, mask=row_ok, other=0)
        m = tl.full((BLOCK_N,), float("-inf"), dtype=tl.float32)
        s = tl.zeros((BLOCK_N,), dtype=tl.float32)
        t = tl.zeros((BLOCK_N,), dtype=tl.float32)
        target_z = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for v0 in range(0, n_vocab, BLOCK_V):
            cols = v0 + tl.arange(0, BLOCK_V)
            col_ok = cols < n_vocab
            z = _logits_tile(h_ptr, w_ptr, rows, cols, n_rows, n_vocab, hidden_size, stride_h, stride_w, scale,
                             BLOCK_N, BLOCK_V, BLOCK_H, PRECISION)  # fmt: skip
            z = tl.where(col_ok[None, :], z, float("-inf"))
            m_new = tl.maximum(m, tl.max(z, axis=1))
            alpha = tl.exp(m - m_new)
            e = tl.exp(z - m_new[:, None])
            s = s * alpha + tl.sum(e, axis=1)
            t = t * alpha + tl.sum(e * tl.where(col_ok[None, :], z, 0.0), axis=1)  # e = 0 off the edge
            target_z += tl.sum(tl.where(cols[None, :] == target[:, None], z, 0.0), axis=1)
            m = m_new
        lse = m + tl.log(s)
        tl.store(logp_ptr + rows, target_z - lse, mask=row_ok)
        tl.store(ent_ptr + rows, lse - t / s, mask=row_ok)
        tl.store(lse_ptr + rows, lse, mask=row_ok)

    @triton.jit
    def _grad_logits_tile(h_ptr, w_ptr, rows, cols, target, lse, g, n_rows, n_vocab, hidden_size, stride_h,
                          stride_w, scale, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr,
                          PRECISION: tl.constexpr):  # fmt: skip
        """scale * dL/dz on a tile: g (1[v = y] - softmax(z)_v) scale, zero off the edges."""
        z = _logits_tile(h_ptr, w_ptr, rows, cols, n_rows, n_vocab, hidden_size, stride_h, stride_w, scale,
                         BLOCK_N, BLOCK_V, BLOCK_H, PRECISION)  # fmt: skip
        p = tl.where((cols < n_vocab)[None, :], tl.exp(z - lse[:, None]), 0.0)
        onehot = tl.where(cols[None, :] == target[:, None], 1.0, 0.0)
        return g[:, None] * (onehot - p) * scale

    @triton.jit
    def _grad_hidden_kernel(h_ptr, w_ptr, t_ptr, lse_ptr, g_ptr, dh_ptr, n_rows, n_vocab, hidden_size,
                            stride_h, stride_w, stride_dh, scale, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr,
                            BLOCK_H: tl.constexpr, PRECISION: tl.constexpr):  # fmt: skip
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < n_rows
        target = tl.load(t_ptr + rows, mask=row_ok, other=0)
        lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
        g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)
        for v0 in range(0, n_vocab, BLOCK_V):
            cols = v0 + tl.arange(0, BLOCK_V)
            gz = _grad_logits_tile(h_ptr, w_ptr, rows, cols, target, lse, g, n_rows, n_vocab, hidden_size,
                                   stride_h, stride_w, scale, BLOCK_N, BLOCK_V, BLOCK_H, PRECISION)  # fmt: skip
            gz = gz.to(w_ptr.dtype.element_ty)
            for k0 in range(0, hidden_size, BLOCK_H):
                ks = k0 + tl.arange(0, BLOCK_H)
                k_ok = ks < hidden_size
                w = tl.load(w_ptr + cols[:, None].to(tl.int64) * stride_w + ks[None, :],
                            mask=(cols < n_vocab)[:, None] & k_ok[None, :], other=0.0)  # fmt: skip
                out = dh_ptr + rows[:, None].to(tl.int64) * stride_dh + ks[None, :]
                out_ok = row_ok[:, None] & k_ok[None, :]
                acc = _dot(gz, w, tl.load(out, mask=out_ok, other=0.0), PRECISION)
                tl.store(out, acc, mask=out_ok)

    @triton.jit
    def _grad_weight_kernel(h_ptr, w_ptr, t_ptr, lse_ptr, g_ptr, dw_ptr, n_rows, n_vocab, hidden_size,
                            stride_h, stride_w, stride_dw, scale, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr,
                            BLOCK_H: tl.constexpr, PRECISION: tl.constexpr):  # fmt: skip
        cols = tl.program_id(0) * BLOCK_V + tl.arange(0, BLOCK_V)
        col_ok = cols < n_vocab
        for r0 in range(0, n_rows, BLOCK_N):
            rows = r0 + tl.arange(0, BLOCK_N)
            row_ok = rows < n_rows
            target = tl.load(t_ptr + rows, mask=row_ok, other=0)
            lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
            g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)
            gz = _grad_logits_tile(h_ptr, w_ptr, rows, cols, target, lse, g, n_rows, n_vocab, hidden_size,
                                   stride_h, stride_w, scale, BLOCK_N, BLOCK_V, BLOCK_H, PRECISION)  # fmt: skip
            gz_t = tl.trans(gz.to(h_ptr.dtype.element_ty))  # [BLOCK_V, BLOCK_N]
            for k0 in range(0, hidden_size, BLOCK_H):
                ks = k0 + tl.arange(0, BLOCK_H)
                k_ok = ks < hidden_size
                h = tl.load(h_ptr + rows[:, None].to(tl.int64) * stride_h + ks[None, :],
                            mask=row_ok[:, None] & k_ok[None, :], other=0.0)  # fmt: skip
                out = dw_ptr + cols[:, None].to(tl.int64) * stride_dw + ks[None, :]
                out_ok = col_ok[:, None] & k_ok[None, :]
                acc = _dot(gz_t, h, tl.load(out, mask=out_ok, other=0.0), PRECISION)
                tl.store(out, acc, mask=out_ok)


def _blocks(hidden: torch.Tensor) -> dict:
    """Tile sizes: small under the interpreter (numpy per tile). On a GPU, chosen without one (no
    timing yet): of the configurations compiled for sm_90 with ptxas's register report, the one
    where none of the three kernels spills registers (64 x 128 x 64 with 8 warps spilled 356
    bytes in the weight-gradient kernel, 4-warp configurations spilled in all three)."""
    if not hidden.is_cuda:
        return dict(BLOCK_N=16, BLOCK_V=32, BLOCK_H=16)
    return dict(BLOCK_N=64, BLOCK_V=128, BLOCK_H=32, num_warps=8, num_stages=2)


def _precision(hidden: torch.Tensor) -> str:
    """How tiles are multiplied: fp32 inputs in exact fp32 ("ieee", as torch's matmul with TF32
    off); bf16/fp16 on tensor cores with fp32 accumulation; under the interpreter, "upcast"."""
    if not hidden.is_cuda:
        return "upcast"
    return "ieee" if hidden.dtype == torch.float32 else "tf32"


class FusedTokenLogprobs(torch.autograd.Function):
    """(hidden [N, H], weight [V, H], targets [N], scale) -> (logp [N], entropy [N]), float32;
    entropy carries no gradient. See the module docstring."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, scale: float):
        if triton is None:
            raise RuntimeError("the fused log-prob kernel needs Triton (pip install triton)")
        if hidden.dtype != weight.dtype:
            raise ValueError(f"hidden ({hidden.dtype}) and weight ({weight.dtype}) must share a dtype")
        hidden, weight, targets = hidden.contiguous(), weight.contiguous(), targets.contiguous()
        n, h = hidden.shape
        v = weight.shape[0]
        logp, entropy, lse = (torch.empty(n, dtype=torch.float32, device=hidden.device) for _ in range(3))
        blocks = _blocks(hidden)
        if n:
            _forward_kernel[(triton.cdiv(n, blocks["BLOCK_N"]),)](
                hidden, weight, targets, logp, entropy, lse, n, v, h, hidden.stride(0), weight.stride(0),
                float(scale), PRECISION=_precision(hidden), **blocks,
            )  # fmt: skip
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.scale = float(scale)
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        hidden, weight, targets, lse = ctx.saved_tensors
        n, h = hidden.shape
        v = weight.shape[0]
        g = grad_logp.float().contiguous()
        blocks = _blocks(hidden)
        args = (n, v, h, hidden.stride(0), weight.stride(0))
        precision = _precision(hidden)
        grad_hidden = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_hidden = torch.zeros(n, h, dtype=torch.float32, device=hidden.device)
            if n:
                _grad_hidden_kernel[(triton.cdiv(n, blocks["BLOCK_N"]),)](
                    hidden, weight, targets, lse, g, grad_hidden, *args, grad_hidden.stride(0), ctx.scale,
                    PRECISION=precision, **blocks,
                )  # fmt: skip
            grad_hidden = grad_hidden.to(hidden.dtype)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.zeros(v, h, dtype=torch.float32, device=weight.device)
            if n:
                _grad_weight_kernel[(triton.cdiv(v, blocks["BLOCK_V"]),)](
                    hidden, weight, targets, lse, g, grad_weight, *args, grad_weight.stride(0), ctx.scale,
                    PRECISION=precision, **blocks,
                )  # fmt: skip
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None


def fused_token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, scale: float = 1.0):
    """Log-prob of each target and the entropy of each next-token distribution at temperature
    1 / ``scale``: ``hidden`` [..., H], ``weight`` [V, H], ``targets`` [...] -> two float32
    tensors shaped like ``targets`` (only the first carries gradient). Same contract as
    ``rsoup_lib.logprobs.token_logprobs`` with the hidden states pre-multiplied by ``scale``."""
    shape = targets.shape
    logp, entropy = FusedTokenLogprobs.apply(hidden.reshape(-1, hidden.shape[-1]), weight, targets.reshape(-1), scale)
    return logp.view(shape), entropy.view(shape)
