"""GPU kernels of the library (book: "Running the book on a GPU" in the README).

``fused_logprobs``: token log-probabilities of sampled tokens straight from the final hidden
states and the output projection, in Triton, without the [tokens, vocabulary] logits in memory.
``rsoup_lib.logprobs.token_logprobs`` dispatches to it for CUDA tensors when Triton is installed;
``RSOUP_FUSED_LOGPROBS=0`` in the environment turns it off (the chunked torch path runs instead).
On a CPU the same kernels run through Triton's interpreter (``TRITON_INTERPRET=1``), which is how
the tests check them without a GPU.
"""

from rsoup_lib.kernels.fused_logprobs import (  # noqa: F401
    FusedTokenLogprobs,
    fused_token_logprobs,
    kernel_enabled,
    triton_available,
)
