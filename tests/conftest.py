"""Shared test set-up: no hub downloads, a private cache directory, a deterministic CPU."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _no_cuda() -> bool:
    import torch

    return not torch.cuda.is_available()


# Without a GPU, Triton kernels run through its interpreter (tests/test_kernels.py). Triton reads
# the flag when it is first imported, by whichever test module or library imports it first, so
# it is set here, before any test module is collected.
if _no_cuda():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own run cache unless it sets RSOUP_CACHE_DIR itself."""
    monkeypatch.setenv("RSOUP_CACHE_DIR", str(tmp_path_factory.mktemp("rsoup-cache")))
