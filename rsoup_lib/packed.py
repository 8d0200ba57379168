"""x @ W^T with W packed once: oneDNN's matmul for a weight used many times on a CPU.

torch's CPU matmul (``F.linear``, ``@``) hands a float32 product to the BLAS, which copies the
weight into its blocked layout at every call and, for a few dozen rows, runs on one thread. When
the same weight multiplies many small batches (a decoding step's 32 rows, 30 times a ``decode``
call; the 256-position chunks of the log-prob's output projection), packing it once for oneDNN
pays: ``torch.ops.mkldnn._reorder_linear_weight`` packs it, ``torch.ops.mkldnn._linear_pointwise``
multiplies (the pair torch's own CPU compiler uses for frozen linears). Measured at 2 threads
(Nov 2026, this machine), 32 rows by `tiny`'s 256 x 8,192 output projection: 2.5 ms -> 0.76 ms;
256 rows by SmolLM2's 576 x 49,152: 104 -> 79 ms, for a 40 ms packing.

The products differ from ``F.linear``'s by float rounding (another summation order). Where
oneDNN cannot run (a GPU, bfloat16, a build without the kernel) ``Projection`` is ``F.linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def packable(weight: torch.Tensor) -> bool:
    """Whether oneDNN's packed matmul can run x @ W^T for this weight (float32 on a CPU build
    with oneDNN)."""
    return (weight.device.type == "cpu" and weight.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


class Projection:
    """x [..., in] -> x @ W^T [..., out] for a fixed W [out, in] (no gradient): through oneDNN
    with W packed once for batches of about ``rows`` rows where it can, else ``F.linear``."""

    def __init__(self, weight: torch.Tensor, rows: int, packed: bool = True):
        self.packed = None
        if packed and packable(weight):
            try:
                with torch.no_grad():
                    self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows)
            except RuntimeError:  # a oneDNN build without this kernel (some non-x86 CPUs): the plain matmul
                pass
        self.weight = weight.detach() if self.packed is None else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return F.linear(x, self.weight)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")
