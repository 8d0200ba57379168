"""Profiles: the typed parameter sets that papermill injects into every notebook.

A profile answers "how big a run?" once for the whole book:

- ``smoke``  tiny random models built on the fly; seconds per notebook; used by the test suite.
- ``cpu``    (default) the embedded ``tiny`` review model the project trains and ships; the whole
             book regenerates in about 30 minutes on an idle 2-core machine (two notebooks at a time).
- ``gpu``    SmolLM2-135M-Instruct (or any Hugging Face causal LM, by overriding ``policy``),
             LoRA, larger batches and more steps.

Each notebook declares the parameters it reads in its ``parameters`` cell; the book builder
injects the profile's values for those names, then any ``-p name=value`` overrides. A notebook
may declare parameters of its own that no profile sets; its cell then holds the default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from rsoup_lib.errors import UserError


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    # The policy every chapter starts from: "tiny-random", "tiny", "smollm2-135m-instruct",
    # a Hugging Face model id available locally, or a path to a model folder.
    policy: str = "tiny"
    # The teacher that wrote the SFT demonstrations, shown beside the policy in chapter 0
    # ("" to skip it, as the smoke profile does).
    teacher: str = "smollm2-135m-instruct"
    device: str = "cpu"  # "cpu", "cuda" or "auto"
    dtype: str = "float32"
    # torch CPU threads for the notebooks' work (0: torch's default; capped at the core count).
    # Small models are sensitive to this: see the cpu profile.
    threads: int = 1
    # notebooks the book builder executes at once, each in its own kernel with `threads` threads
    # (rsoup_lib.book.regenerate); runs that two chapters share are computed once (the run
    # cache's lock makes the second wait for the first).
    jobs: int = 1
    lora: bool = False  # LoRA adapters (peft) instead of full fine-tuning
    lora_rank: int = 16
    # RL (KL-regularised RLOO, see rsoup_lib.rl)
    steps: int = 150  # optimiser steps per RL run
    batch_prompts: int = 8  # prompts per step
    k: int = 4  # completions per prompt (RLOO needs k >= 2)
    max_new_tokens: int = 32
    lr: float = 3e-4
    beta: float = 0.05  # KL coefficient
    # Evaluation
    eval_prompts: int = 128  # held-out prompts, one completion each
    eval_max_new_tokens: int = 32
    n_lambdas: int = 11  # points on an interpolation front (0, 0.1, ..., 1)
    seed: int = 0

    def with_overrides(self, overrides: dict[str, Any]) -> "Profile":
        """This profile with some fields changed; an unknown name or a value of the wrong type is
        a ``UserError`` that lists the fields (ints are accepted where floats are expected)."""
        fields = {f.name: f for f in dataclasses.fields(self) if f.name not in ("name", "description")}
        for name, value in overrides.items():
            if name not in fields:
                raise UserError(f"profile {self.name}: no field {name!r} to override; the fields are: {', '.join(fields)}")
            expected = type(getattr(self, name))
            ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
            if not ok and not (expected is float and isinstance(value, int) and not isinstance(value, bool)):
                raise UserError(f"profile override {name}={value!r}: expected a {expected.__name__}")
        return dataclasses.replace(self, **{k: (float(v) if isinstance(getattr(self, k), float) else v)
                                            for k, v in overrides.items()})  # fmt: skip

    def parameters(self) -> dict[str, Any]:
        """Every field but the description, as papermill parameters."""
        params = dataclasses.asdict(self)
        params.pop("description")
        params["profile"] = params.pop("name")
        return params


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile(
            name="smoke",
            description="Tiny random models built on the fly; seconds per notebook (tests).",
            policy="tiny-random",
            teacher="",
            steps=3,
            batch_prompts=2,
            k=2,
            max_new_tokens=8,
            lr=1e-3,
            eval_prompts=8,
            eval_max_new_tokens=8,
            n_lambdas=3,
        ),
        Profile(
            name="cpu",
            description="The embedded tiny review model on a 2-core CPU (default; the book as published).",
            # Measured on the tiny model (1 thread, ~1 s per step at 8 x 4 x 32 tokens): lr 1e-4
            # reaches the sentiment of lr 3e-4 at half the KL to SFT; 100 steps keep chapter 1
            # (four runs) within about 7 minutes.
            steps=100,
            # Two notebooks at once with one thread each, not one notebook with two threads: a
            # step of tiny's small matrix products gains only ~1.25x from a second thread
            # (benchmarks/rl_step.py: 28.6 samples/s with 1 thread, 35.5 with 2), two
            # 1-thread kernels ~2x. One thread also keeps a step steady on a busy machine.
            threads=1,
            jobs=2,
            lr=1e-4,
        ),
        Profile(
            name="gpu",
            description="SmolLM2-135M-Instruct with LoRA on a GPU; override `policy` for any HF causal LM.",
            policy="smollm2-135m-instruct",
            device="cuda",
            dtype="bfloat16",
            threads=0,
            lora=True,
            steps=300,
            batch_prompts=16,
            k=4,
            max_new_tokens=64,
            lr=1e-4,
            eval_prompts=256,
            eval_max_new_tokens=64,
        ),
    ]
}

DEFAULT_PROFILE = "cpu"


def set_threads(threads: int | None) -> int:
    """Apply a thread count to torch in this process: None or 0 keeps torch's default, and more
    threads than CPU cores are capped at the core count. Returns the number of threads in use.
    The one place rsoup sets torch's CPU threads (notebooks, commands, the trainer)."""
    import os

    import torch

    if threads is not None and threads < 0:
        raise UserError(f"threads={threads}: use 0 for torch's default or a positive number")
    if threads:
        torch.set_num_threads(min(threads, os.cpu_count() or 1))
    return torch.get_num_threads()


@contextlib.contextmanager
def using_threads(threads: int | None):
    """``set_threads(threads)`` for the duration of a block, then torch's previous setting."""
    import torch

    before = torch.get_num_threads()
    try:
        yield set_threads(threads)
    finally:
        torch.set_num_threads(before)


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UserError(
            f"unknown profile {name!r}; the profiles are: {', '.join(PROFILES)} (see `rsoup profiles`)"
        ) from None


def parse_override(text: str) -> tuple[str, Any]:
    """``name=value`` -> (name, value); the value is read as JSON when it parses (numbers,
    true/false, lists), else kept as a string: ``steps=10``, ``lora=true``, ``policy=gpt2``."""
    if "=" not in text:
        raise UserError(f"parameter override {text!r} is not of the form name=value (e.g. steps=10)")
    name, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip(), value
