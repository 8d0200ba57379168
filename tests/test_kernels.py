"""The fused Triton log-prob kernel (rsoup_lib.kernels) against the torch paths of
rsoup_lib.logprobs: values, entropies and gradients on random inputs of odd sizes (vocabulary,
hidden size and rows not multiples of the tiles), temperature != 1, fp32 and bf16.

On CUDA the kernels are compiled; without a GPU they run through Triton's interpreter
(``TRITON_INTERPRET=1``, set here before the kernels are defined), on sizes small enough for
seconds. Skipped when Triton is not installed.
"""

import os

import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu":
    # Before Triton is first imported: it reads the flag once (conftest.py sets it too, before
    # any test module is collected). Without a GPU nothing can run a compiled kernel anyway.
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from rsoup_lib import logprobs  # noqa: E402


@pytest.fixture(scope="module")
def fused():
    import rsoup_lib.kernels.fused_logprobs as module

    assert DEVICE == "cuda" or module.interpreting()
    return module


def random_problem(n, h, v, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g).to(DEVICE, dtype)
    weight = (torch.randn(v, h, generator=g) / h**0.5 * 3).to(DEVICE, dtype)
    targets = torch.randint(0, v, (n,), generator=g).to(DEVICE)
    grad_out = torch.randn(n, generator=g).to(DEVICE)
    return hidden, weight, targets, grad_out


def value_and_grads(fn, hidden, weight, targets, grad_out, **kw):
    hidden = hidden.detach().clone().requires_grad_()
    weight = weight.detach().clone().requires_grad_()
    logp, entropy = fn(hidden, weight, targets, **kw)
    (logp * grad_out).sum().backward()
    return logp.detach(), entropy.detach(), hidden.grad, weight.grad


def reference(hidden, weight, targets, grad_out, scale):
    """The naive path in float64: full logits, full log-softmax."""
    def naive(h, w, t):
        log_softmax = torch.log_softmax((h * scale) @ w.T, dim=-1)
        entropy = -(log_softmax.exp() * log_softmax).sum(-1)
        return log_softmax.gather(-1, t[:, None]).squeeze(-1), entropy.detach()

    return value_and_grads(naive, hidden.double(), weight.double(), targets, grad_out.double())


@pytest.mark.parametrize("n,h,v", [(37, 45, 203), (1, 16, 50), (70, 33, 97)])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_fp32_matches_the_naive_path(fused, n, h, v, temperature):
    problem = random_problem(n, h, v, torch.float32, seed=n + v)
    got = value_and_grads(fused.fused_token_logprobs, *problem, scale=1 / temperature)
    want = reference(*problem, 1 / temperature)
    for name, a, b in zip(("logp", "entropy", "grad hidden", "grad weight"), got, want):
        assert a.dtype == (torch.float32 if name in ("logp", "entropy") else problem[0].dtype), name
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4, msg=lambda m: f"{name}: {m}")


def test_bf16_matches_the_chunked_torch_path(fused):
    """bf16 inputs, fp32 accumulation: as close to the float64 reference as the chunked torch
    path in bf16 is (the gradients are rounded to bf16 on the way out, as the torch path's)."""
    temperature = 0.8
    problem = random_problem(53, 40, 150, torch.bfloat16, seed=3)
    got = value_and_grads(fused.fused_token_logprobs, *problem, scale=1 / temperature)

    def chunked(h, w, t):
        return logprobs.token_logprobs(h / temperature, w, t, chunk_size=16)

    torch_path = value_and_grads(chunked, *problem)
    want = reference(*problem, 1 / temperature)
    for name, a, b, c in zip(("logp", "entropy", "grad hidden", "grad weight"), got, torch_path, want):
        err_kernel = (a.double() - c).abs().max().item()
        err_torch = (b.double() - c).abs().max().item()
        scale = c.abs().max().item()
        assert err_kernel <= max(2 * err_torch, 1e-5 * scale), (name, err_kernel, err_torch)
        assert err_kernel <= 2e-2 * scale, (name, err_kernel, scale)


def test_two_dimensional_targets_and_a_frozen_projection(fused):
    """[B, C] targets as completion_logprobs passes them; a weight without grad (LoRA's frozen
    head) gets none and the hidden gradient is unchanged."""
    hidden, weight, targets, grad_out = random_problem(6 * 7, 24, 77, torch.float32, seed=5)
    hidden = hidden.view(6, 7, 24).requires_grad_()
    logp, entropy = fused.fused_token_logprobs(hidden, weight, targets.view(6, 7), scale=1.3)
    assert logp.shape == entropy.shape == (6, 7)
    assert not entropy.requires_grad
    (logp * grad_out.view(6, 7)).sum().backward()
    want = reference(hidden.detach().view(42, 24), weight, targets, grad_out, 1.3)
    torch.testing.assert_close(hidden.grad.view(42, 24).double(), want[2], rtol=1e-4, atol=1e-4)
    assert weight.grad is None


def test_same_inputs_same_bits(fused):
    """No atomics: the kernel is bitwise reproducible (same seed, same numbers)."""
    problem = random_problem(29, 20, 71, torch.float32, seed=9)
    a = value_and_grads(fused.fused_token_logprobs, *problem, scale=0.9)
    b = value_and_grads(fused.fused_token_logprobs, *problem, scale=0.9)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_dispatch_uses_the_kernel_only_on_cuda_and_the_switch_turns_it_off(fused, monkeypatch):
    cpu = torch.zeros(2, 3)
    assert not logprobs._fused_kernel_enabled(cpu)  # the CPU keeps the chunked torch path
    if torch.cuda.is_available():
        assert logprobs._fused_kernel_enabled(cpu.cuda())
        monkeypatch.setenv(fused.SWITCH, "0")
        assert not logprobs._fused_kernel_enabled(cpu.cuda())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the dispatch goes to the kernel there")
def test_token_logprobs_on_cuda_goes_through_the_kernel_and_agrees(fused, monkeypatch):
    problem = random_problem(300, 64, 1000, torch.bfloat16, seed=1)
    with_kernel = value_and_grads(logprobs.token_logprobs, *problem)
    monkeypatch.setenv(fused.SWITCH, "0")
    torch_path = value_and_grads(logprobs.token_logprobs, *problem)
    for a, b in zip(with_kernel, torch_path):
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)


COMPILE_SCRIPT = """
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import rsoup_lib.kernels.fused_logprobs as K

blocks = {"BLOCK_N": 64, "BLOCK_V": 128, "BLOCK_H": 32, "PRECISION": "tf32"}  # what _blocks picks on CUDA
sizes = {"n_rows": "i32", "n_vocab": "i32", "hidden_size": "i32", "stride_h": "i32", "stride_w": "i32"}
ins = {"h_ptr": "*bf16", "w_ptr": "*bf16", "t_ptr": "*i64"}
kernels = {
    K._forward_kernel: {**ins, "logp_ptr": "*fp32", "ent_ptr": "*fp32", "lse_ptr": "*fp32", **sizes},
    K._grad_hidden_kernel: {**ins, "lse_ptr": "*fp32", "g_ptr": "*fp32", "dh_ptr": "*fp32", **sizes, "stride_dh": "i32"},
    K._grad_weight_kernel: {**ins, "lse_ptr": "*fp32", "g_ptr": "*fp32", "dw_ptr": "*fp32", **sizes, "stride_dw": "i32"},
}
for fn, sig in kernels.items():
    sig = {**sig, "scale": "fp32", **{k: "constexpr" for k in blocks}}
    k = triton.compile(ASTSource(fn, sig, blocks), target=GPUTarget("cuda", 90, 32), options={"num_warps": 8, "num_stages": 2})
    assert len(k.asm["cubin"]) > 0
    print(fn.__name__, "shared", k.metadata.shared)
"""


def test_kernels_compile_for_an_h100_without_a_gpu(tmp_path):
    """The interpreter runs the kernels' arithmetic, not the compiler: compile the bf16 kernels
    for sm_90 with Triton's bundled ptxas (no GPU needed), in a process without the interpreter."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), TRITON_DEFAULT_FP_FUSION="1")
    proc = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shared = [int(line.split()[-1]) for line in proc.stdout.splitlines()]
    assert len(shared) == 3 and max(shared) <= 227 * 1024  # H100: 227 KiB of shared memory per block
