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
# # 1. RLHF per reward
#
# Rewarded soups start from $N$ policies, each fine-tuned with RL on **one** proxy reward from
# the **same** initialisation, with the same algorithm, hyperparameters and seed: only the
# reward differs. This chapter trains those policies, one per reward, and looks at what each
# reward actually teaches, including where the policy learns to game it.
#
# ## The objective
#
# For prompts $x$ and completions $y \sim \pi_\theta(\cdot \mid x)$ we maximise the reward minus
# a KL penalty that keeps the policy near the supervised (SFT) model it started from:
#
# $$\max_\theta\; \mathbb{E}_x \mathbb{E}_{y \sim \pi_\theta}\big[r(x, y)\big] - \beta\,
#   \mathrm{KL}\big(\pi_\theta(\cdot\mid x)\,\|\,\pi_{\text{sft}}(\cdot\mid x)\big).$$
#
# Each completion's reward is shaped with its own sequence-level KL estimate,
# $r_\beta(x, y) = r(x, y) - \beta \sum_t \big[\log \pi_\theta(y_t\mid\cdot) - \log
# \pi_{\text{sft}}(y_t\mid\cdot)\big]$, and the update is REINFORCE with a leave-one-out
# baseline (RLOO): for $k$ completions of the same prompt,
#
# $$A_j = r_\beta(x, y_j) - \frac{1}{k-1}\sum_{i\neq j} r_\beta(x, y_i), \qquad
#   \mathcal{L}(\theta) = -\frac{1}{k}\sum_j A_j \log \pi_\theta(y_j \mid x).$$
#
# No critic, no clipping: the baseline alone reduces the variance. The trainer is
# `rsoup_lib.rl.train`; every run goes through the run cache, so chapters 2 and 3 reuse these
# policies instead of training them again.
#
# ## The rewards
#
# | reward | range | what it scores |
# |---|---|---|
# | `sentiment` | [-1, 1] | VADER compound score of the review |
# | `readability` | [0, 1] | Flesch reading ease / 100 (short words, short sentences) |
# | `conciseness` | [0, 1] | 1 - min(words, 48) / 48 |
# | `specificity` | [0, 1] | distinct film terms (plot, acting, director, score, ...) / 4, capped at 1 |
#
# All four are *proxies*: cheap rules that a policy can satisfy in ways a reader would not
# call a better review. That is the point of this chapter's last section.

# %% tags=["parameters"]
profile = "cpu"
policy = "tiny"
device = "cpu"
dtype = "float32"
steps = 100
batch_prompts = 8
k = 4
max_new_tokens = 32
lr = 1e-4
beta = 0.05
eval_prompts = 128
eval_max_new_tokens = 32
seed = 0
lora = False
lora_rank = 16
rewards = ["sentiment", "readability", "conciseness", "specificity"]
threads = 1  # torch CPU threads (0: torch's default); on a busy 2-core box use 1

# %%
import time

import pandas as pd
import plotly.graph_objects as go
import torch
from IPython.display import Markdown, display
from plotly.subplots import make_subplots

from rsoup_lib.evaluate import evaluate
from rsoup_lib.hacking import detect
from rsoup_lib.models import load_policy
from rsoup_lib.profiles import set_threads
from rsoup_lib.prompts import load_prompts
from rsoup_lib.rewards import REWARDS
from rsoup_lib.rl import RLConfig, cached_train, policy_dir, read_metrics

set_threads(threads)  # this kernel's training and evaluation

# %% [markdown]
# ## Training one policy per reward
#
# Same init, same hyperparameters, same seed (so the same prompt order); only `reward` changes.

# %%
configs = {
    r: RLConfig(
        policy=policy, reward=r, steps=steps, batch_prompts=batch_prompts, k=k,
        max_new_tokens=max_new_tokens, lr=lr, beta=beta, lora=lora, lora_rank=lora_rank,
        seed=seed, device=device, dtype=dtype,
    )  # fmt: skip
    for r in rewards
}
runs, train_seconds = {}, {}
for r, cfg in configs.items():
    t0 = time.perf_counter()
    runs[r] = cached_train(cfg, progress=False)
    train_seconds[r] = time.perf_counter() - t0
metrics = {r: pd.DataFrame(read_metrics(run)) for r, run in runs.items()}
display(Markdown(
    "| reward | steps | seconds per step (training) | obtained in (s, this build) |\n|---|---|---|---|\n"
    + "\n".join(
        f"| `{r}` | {len(m)} | {m['seconds'].mean():.2f} | {train_seconds[r]:.1f}"
        f"{' (cached)' if train_seconds[r] < 0.5 * m['seconds'].sum() else ''} |"
        for r, m in metrics.items()
    )
))  # fmt: skip

# %% [markdown]
# ## Learning curves
#
# The training reward (on the completions sampled at each step, a moving average over 10 steps)
# and the KL to the SFT policy, estimated on the same completions as
# $\sum_t \log\pi_\theta(y_t\mid\cdot) - \log\pi_{\text{sft}}(y_t\mid\cdot)$.

# %%
def smooth(s, w=10):
    return s.rolling(w, min_periods=1).mean()


fig = make_subplots(rows=1, cols=2, subplot_titles=("trained reward", "KL to SFT (nats)"))
for i, (r, m) in enumerate(metrics.items()):
    color = f"hsl({i * 360 // max(len(metrics), 1)},65%,45%)"
    fig.add_trace(go.Scatter(x=m["step"], y=smooth(m[f"reward/{r}"]), name=r, line=dict(color=color)), 1, 1)
    fig.add_trace(go.Scatter(x=m["step"], y=smooth(m["kl_sft"]), name=r, line=dict(color=color),
                             showlegend=False), 1, 2)  # fmt: skip
fig.update_xaxes(title_text="step")
fig.update_layout(height=380, title="One RL run per reward, same init and hyperparameters")
fig.show()

# %% [markdown]
# ## KL-reward trajectories
#
# Each run traced in the plane that matters for alignment: how much reward it bought for how far
# it moved from the SFT policy (methods.md, section 1: the KL to SFT is the x-axis of every
# KL-reward figure). Rewards are rescaled to [0, 1] by their documented range so that the four
# runs share one axis.

# %%
fig = go.Figure()
for i, (r, m) in enumerate(metrics.items()):
    lo, hi = REWARDS[r].low, REWARDS[r].high
    fig.add_trace(go.Scatter(
        x=smooth(m["kl_sft"]), y=(smooth(m[f"reward/{r}"]) - lo) / (hi - lo), mode="lines+markers",
        marker=dict(size=4), name=r, text=[f"step {s}" for s in m["step"]],
    ))  # fmt: skip
fig.update_layout(height=420, xaxis_title="KL to SFT (nats, training samples)",
                  yaxis_title="trained reward, rescaled to [0, 1]", title="KL-reward trajectories")  # fmt: skip
fig.show()

# %% [markdown]
# ## Held-out evaluation
#
# Every policy (and the SFT init) is evaluated on the same held-out prompts with the same
# sampling seed (one completion per prompt), on **all four** rewards, with standard errors, and
# with the KL to SFT estimated by Monte Carlo on those completions. Off-diagonal entries show
# what optimising one reward does to the others.

# %%
sft = load_policy(policy, device=device, dtype=dtype)
policies = {"sft": sft, **{r: str(policy_dir(run)) for r, run in runs.items()}}
results = {
    name: evaluate(p, rewards, n=eval_prompts, seed=seed + 1, sft=sft, max_new_tokens=eval_max_new_tokens,
                   n_samples=eval_prompts, device=device, dtype=dtype)
    for name, p in policies.items()
}  # fmt: skip
table = pd.DataFrame({
    name: {**{r: f"{res.rewards[r]['mean']:+.3f} ± {res.rewards[r]['stderr']:.3f}" for r in rewards},
           "KL to SFT": f"{res.kl_to_sft:.2f} ± {res.kl_to_sft_stderr:.2f}",
           "distinct-2": f"{res.distinct_2:.2f}", "words": f"{res.mean_words:.1f}"}
    for name, res in results.items()
}).T  # fmt: skip
display(table)

gain = {}
for r in rewards:
    before, after = results["sft"].rewards[r], results[r].rewards[r]
    se = (before["stderr"] ** 2 + after["stderr"] ** 2) ** 0.5
    gain[r] = (after["mean"] - before["mean"], se)
lines = []
for r, (d, se) in gain.items():
    z = d / se if se > 0 else float("inf") if d > 0 else 0.0
    verdict = "raised" if z > 3 else "did not clearly raise" if z > -3 else "lowered"
    lines.append(
        f"- Training on `{r}` {verdict} the held-out `{r}` reward: {results['sft'].rewards[r]['mean']:+.3f} → "
        f"{results[r].rewards[r]['mean']:+.3f} ({d:+.3f}, {z:+.1f} combined standard errors), at a KL to SFT of "
        f"{results[r].kl_to_sft:.2f} nats."
    )
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## Samples before and after
#
# The same held-out prompts and sampling seed for every policy, so each row compares the SFT
# policy's review with what each fine-tuned policy writes in its place.

# %%
n_show = 3
for i in range(min(n_show, eval_prompts)):
    prompt = results["sft"].samples[i]["prompt"]
    rows = "\n".join(
        f"| `{name}` | {res.samples[i]['completion'].strip().replace('|', '/').replace(chr(10), ' ') or '*(empty)*'} |"
        for name, res in results.items()
    )
    display(Markdown(f"**Prompt:** {prompt}\n\n| policy | completion |\n|---|---|\n{rows}"))

# %% [markdown]
# ## Reward hacking
#
# A proxy reward is *hacked* when the policy raises it in a way that does not make a better
# review. We do not decide this by reading: simple detectors are computed on the held-out
# completions of each policy and compared with the SFT policy's:
#
# - **repetition**: share of the words of a completion that repeat an earlier word of it
#   (e.g. "great great great" for sentiment);
# - **collapse**: distinct-2 (unique bigrams / all bigrams over all completions) falling well
#   below SFT's: the policy writes the same thing for every prompt;
# - **empty or truncated answers**: completions with no words, or far shorter than SFT's;
# - **keyword stuffing**: share of words that are film terms (what `specificity` counts);
# - **ignored instructions**: the prompt asks for a *negative* review and the completion is
#   clearly positive (VADER compound > 0.5), which a sentiment reward pays for;
# - **stock opening**: the share of completions that start with the policy's most common first
#   two words (one template for every prompt).
#
# A detector fires when it moves by more than a fixed threshold against the SFT policy; the
# worst offending sample is shown as evidence. The detectors and their thresholds are
# `rsoup_lib/hacking.py`.

# %%
tone_of = {p["prompt"]: p["tone"] for p in load_prompts("test")}
stats, found = detect(results, tone_of, base="sft")
display(pd.DataFrame(stats).T)
if found:
    display(Markdown("Detected reward hacking:\n\n" + "\n".join(
        f"- **`{f.policy}` policy: {f.label}** ({f.why}). Example: *{f.example['prompt']}* → "
        f"\"{f.example['completion'].strip()[:200] or '(empty)'}\""
        for f in found
    )))  # fmt: skip
else:
    display(Markdown(
        "No detector fired: at this KL budget (beta = "
        f"{beta}, {steps} steps) none of the policies moved far enough from SFT to game its reward "
        "in a way these detectors see."
    ))

# %% [markdown]
# ## What carries over
#
# These policies are the endpoints of every front in the next chapters: the rewarded soup
# interpolates their weights (chapter 2), and WARP's first stage is the same trainer with an
# EMA anchor (chapter 3). Because each run is stored in the run cache under its full
# configuration, those chapters load these policies rather than training them again.
