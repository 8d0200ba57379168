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
# # 2. Rewarded soups
#
# Chapter 1 trained one policy per reward, each from the same initialisation with the same
# hyperparameters and seed. A **rewarded soup** (Ramé et al., 2023) does not train anything
# else: it averages those policies' *weights*,
#
# $$\theta(\lambda) = \sum_i \lambda_i\, \theta_i, \qquad \lambda_i \ge 0,\; \sum_i \lambda_i = 1,$$
#
# and claims that sweeping $\lambda$ traces a front of trade-offs between the rewards that is
# close to what multi-objective RL (MORL) would reach by training one policy per preference,
# at the cost of $N$ trainings instead of one per preference. Two things must hold for that:
#
# 1. **Linear mode connectivity (LMC)**: the rewards of the soup are at least the
#    interpolation of the endpoints' rewards,
#    $R_k(\theta(\lambda)) \ge \sum_i \lambda_i R_k(\theta_i)$, so the soup is not worse than
#    "flipping a coin" between the specialists;
# 2. **the front is near MORL's**: for a preference $\mu$, the soup's best point rivals the policy
#    trained on the scalarised reward $\sum_i \mu_i r_i$.
#
# This chapter measures both on our tiny review model, with error bars, and ends with a
# verdict computed from the numbers. Every soup is written into one live model in place
# (`rsoup_lib.front.Front`: the task vectors stay in memory, and each point of a front costs one
# fused pass over the weights, no reloading), so the cost of a front is the cost of evaluating it.
#
# **The two rewards.** We pair `sentiment` (VADER compound score of the review, in [-1, 1]) with
# `conciseness` (1 - min(words, 48) / 48). They pull in opposite directions: VADER scores the
# sentiment-bearing words a review contains, so the cheapest way to raise it is to write more,
# and more effusive, words; conciseness pays for every word removed, and the emptiest review is
# the most concise and has a neutral sentiment of 0. The table below checks this tension on the
# held-out prompts rather than asserting it.

# %% tags=["parameters"]
profile = "cpu"
policy = "tiny"
device = "cpu"
dtype = "float32"
threads = 1  # torch CPU threads (0: torch's default)
steps = 150
batch_prompts = 8
k = 4
max_new_tokens = 32
lr = 3e-4
beta = 0.05
eval_prompts = 128
eval_max_new_tokens = 32
n_lambdas = 11
seed = 0
lora = False
lora_rank = 16
reward_pair = ["sentiment", "conciseness"]
third_reward = "specificity"
mus = [0.25, 0.5, 0.75]  # MORL preferences: weight of the second reward
simplex_steps = 3  # the 3-reward simplex grid has step 1/simplex_steps (3: 10 points, centre included)
lora_lambdas = [0.0, 0.25, 0.5, 0.75, 1.0]
lora_steps_fraction = 0.33  # the LoRA pair trains for this share of steps (all of them under LoRA profiles)

# %%
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from IPython.display import Markdown, display
from plotly.subplots import make_subplots

from rsoup_lib.evaluate import evaluate
from rsoup_lib.front import Front
from rsoup_lib.merge import lora_ab_lerp, lora_deltas, lerp
from rsoup_lib.models import load_policy
from rsoup_lib.pareto import distance_to_front, hypervolume_2d, pareto_mask
from rsoup_lib.profiles import set_threads
from rsoup_lib.rl import RLConfig, cached_train, policy_dir, read_metrics

set_threads(threads)
r1, r2 = reward_pair
all_rewards = [r1, r2, third_reward]


def rl_config(reward, use_lora=lora, n_steps=steps):
    """Chapter 1's configuration, field for field, so the run cache hands back its policies."""
    return RLConfig(
        policy=policy, reward=reward, steps=n_steps, batch_prompts=batch_prompts, k=k,
        max_new_tokens=max_new_tokens, lr=lr, beta=beta, lora=use_lora, lora_rank=lora_rank,
        seed=seed, device=device, dtype=dtype,
    )  # fmt: skip


def train(reward, use_lora=lora, n_steps=steps):
    """(run folder, training seconds as recorded when the run was trained, this build's seconds)."""
    t0 = time.perf_counter()
    run = cached_train(rl_config(reward, use_lora, n_steps), progress=False)
    return run, sum(m["seconds"] for m in read_metrics(run)), time.perf_counter() - t0


def params_of(run):
    model, _ = load_policy(str(policy_dir(run)), device=device, dtype=dtype)
    return {k_: p.detach().clone() for k_, p in model.named_parameters()}


sft = load_policy(policy, device=device, dtype=dtype)
model, tokenizer = load_policy(policy, device=device, dtype=dtype)  # the live model every soup is written into
model.eval()
init = {k_: p.detach().clone() for k_, p in model.named_parameters()}


def score(pair=None):
    """Evaluate the live model (or a pair) on every reward: means, standard errors, KL to SFT."""
    res = evaluate(pair or (model, tokenizer), all_rewards, n=eval_prompts, seed=seed + 1, sft=sft,
                   max_new_tokens=eval_max_new_tokens, n_samples=3, device=device, dtype=dtype)  # fmt: skip
    return res


def row(res, **extra):
    out = dict(extra)
    for r in all_rewards:
        out[r], out[r + "_se"] = res.rewards[r]["mean"], res.rewards[r]["stderr"]
    out["kl"], out["samples"] = res.kl_to_sft, res.samples
    return out


# %% [markdown]
# ## The specialists
#
# Both endpoints come from chapter 1's run cache (same configuration, so the same key); a build
# that starts with an empty cache trains them here.

# %%
runs, seconds = {}, {}
for r in all_rewards:
    runs[r], seconds[r], build_s = train(r)
specialists = {name: params_of(runs[name]) for name in all_rewards}
sft_res = score(sft)

# %% [markdown]
# ## The rewarded-soup front
#
# $\theta(\lambda) = (1-\lambda)\,\theta_1 + \lambda\,\theta_2$ for $\lambda$ on a regular grid of
# [0, 1], where $\theta_1$ is the specialist of the first reward (`sentiment`) and $\theta_2$ of the
# second (`conciseness`). Every point is evaluated on the same held-out prompts with the same
# sampling seed; error bars are one standard error over prompts. The endpoints are the
# specialists themselves, and the table first checks that the two rewards are in tension.

# %%
lambdas = [round(x, 4) for x in np.linspace(0.0, 1.0, n_lambdas)]
front = Front.from_state_dicts(model, init, [specialists[r1], specialists[r2]])
t0 = time.perf_counter()
rs, rs_res = [], []
for lam in lambdas:
    front.lerp([1 - lam, lam])
    rs_res.append(score())
    rs.append(row(rs_res[-1], lam=lam))
rs_seconds = time.perf_counter() - t0
rs_df = pd.DataFrame(rs)
spec_res = {r1: rs_res[0], r2: rs_res[-1]}  # lambda = 0 and 1: the specialists themselves
table = pd.DataFrame({
    name: {r: f"{res.rewards[r]['mean']:+.3f} ± {res.rewards[r]['stderr']:.3f}" for r in reward_pair}
    | {"KL to SFT": f"{res.kl_to_sft:.2f}", "words": f"{res.mean_words:.1f}"}
    for name, res in {"sft": sft_res, **{f"trained on {n}": spec_res[n] for n in reward_pair}}.items()
}).T  # fmt: skip
display(table)
d1 = spec_res[r1].rewards[r1]["mean"] - spec_res[r2].rewards[r1]["mean"]
d2 = spec_res[r2].rewards[r2]["mean"] - spec_res[r1].rewards[r2]["mean"]
tension = d1 > 0 and d2 > 0
display(Markdown(
    f"The `{r1}` specialist beats the `{r2}` specialist on `{r1}` by {d1:+.3f}, and the `{r2}` specialist "
    f"beats it on `{r2}` by {d2:+.3f}: "
    + ("each reward is bought at the other's expense, so there is a trade-off to trace."
       if tension else "the two specialists do **not** trade one reward for the other here, so the front "
       "below is not a trade-off curve; read it with that in mind.")
))  # fmt: skip


def errorbar_trace(df, name, color, text=None, mode="lines+markers", symbol="circle"):
    return go.Scatter(
        x=df[r1], y=df[r2], name=name, mode=mode, text=text, marker=dict(color=color, size=8, symbol=symbol),
        error_x=dict(type="data", array=df[r1 + "_se"], thickness=1), error_y=dict(type="data", array=df[r2 + "_se"], thickness=1),
    )  # fmt: skip


fig = go.Figure([errorbar_trace(rs_df, "rewarded soup θ(λ)", "royalblue", [f"λ={x}" for x in rs_df["lam"]])])
fig.add_trace(go.Scatter(x=[sft_res.rewards[r1]["mean"]], y=[sft_res.rewards[r2]["mean"]], name="SFT init",
                         mode="markers", marker=dict(color="black", size=10, symbol="x")))  # fmt: skip
fig.update_layout(height=450, xaxis_title=f"{r1} (held-out mean)", yaxis_title=f"{r2} (held-out mean)",
                  title="Rewarded-soup front (λ = weight of the " + r2 + " policy)")  # fmt: skip
fig.show()

# %% [markdown]
# ## Linear mode connectivity
#
# For each reward $k$, the soup's reward against the straight line between the endpoints'
# rewards, $(1-\lambda) R_k(\theta_1) + \lambda R_k(\theta_2)$. The gap
# $R_k(\theta(\lambda)) - \text{line}$ is positive when the soup beats the interpolation of
# its endpoints. Its error bar combines the three standard errors (independent prompts per
# point, so this is conservative).

# %%
fig = make_subplots(rows=1, cols=2, subplot_titles=[f"{r}: soup vs straight line" for r in reward_pair] )
gap_rows = []
for c, r in enumerate(reward_pair, 1):
    y0, y1 = rs_df[r].iloc[0], rs_df[r].iloc[-1]
    s0, s1 = rs_df[r + "_se"].iloc[0], rs_df[r + "_se"].iloc[-1]
    line = [(1 - lam) * y0 + lam * y1 for lam in lambdas]
    gap = rs_df[r] - line
    gap_se = np.sqrt(rs_df[r + "_se"] ** 2 + ((1 - rs_df["lam"]) * s0) ** 2 + (rs_df["lam"] * s1) ** 2)
    fig.add_trace(go.Scatter(x=lambdas, y=rs_df[r], error_y=dict(array=rs_df[r + "_se"]), name=f"{r}: soup"), 1, c)
    fig.add_trace(go.Scatter(x=lambdas, y=line, name=f"{r}: line", line=dict(dash="dash")), 1, c)
    fig.add_trace(go.Bar(x=lambdas, y=gap, error_y=dict(array=gap_se), name=f"{r}: gap", opacity=0.5), 1, c)
    for lam, g, se in zip(lambdas, gap, gap_se):
        if 0 < lam < 1:
            gap_rows.append({"reward": r, "lam": lam, "gap": g, "se": se})
fig.update_xaxes(title_text="λ")
fig.update_layout(height=420, title="LMC check: reward of θ(λ) vs the line between the endpoints (bars: the gap)")
fig.show()
gaps = pd.DataFrame(gap_rows)
display(gaps.pivot(index="lam", columns="reward", values="gap").round(3))

# %% [markdown]
# ## MORL: one run per preference
#
# The baseline the soup claims to approximate: for each preference $\mu$, an RL run on the
# scalarised reward $(1-\mu)\, r_1 + \mu\, r_2$ with the same init,
# hyperparameters, seed and number of steps as each specialist. Hypervolumes use one reference
# point for both fronts: the componentwise minimum over every evaluated point.

# %%
morl = []
morl_seconds = 0.0
for mu in mus:
    run, secs, _ = train(f"{r1}:{1 - mu},{r2}:{mu}")
    morl_seconds += secs
    res = score(load_policy(str(policy_dir(run)), device=device, dtype=dtype))
    morl.append(row(res, mu=mu))
morl_df = pd.DataFrame(morl)

points_rs = list(zip(rs_df[r1], rs_df[r2]))
points_morl = list(zip(morl_df[r1], morl_df[r2]))
ref = (min(p[0] for p in points_rs + points_morl), min(p[1] for p in points_rs + points_morl))
hv_rs, hv_morl = hypervolume_2d(points_rs, ref), hypervolume_2d(points_morl, ref)
order = np.argsort(rs_df[r1].to_numpy())
rs_polyline = [points_rs[i] for i in order]
dists = [distance_to_front(p, rs_polyline) for p in points_morl]
rs_cost = seconds[r1] + seconds[r2]

fig = make_subplots(rows=1, cols=2, subplot_titles=(f"rewarded soup: HV = {hv_rs:.4f}", f"MORL: HV = {hv_morl:.4f}"),
                    shared_yaxes=True)  # fmt: skip
fig.add_trace(errorbar_trace(rs_df, "rewarded soup", "royalblue", [f"λ={x}" for x in rs_df["lam"]]), 1, 1)
fig.add_trace(errorbar_trace(morl_df, "MORL", "firebrick", [f"μ={x}" for x in morl_df["mu"]], mode="markers", symbol="diamond"), 1, 2)
fig.add_trace(go.Scatter(x=rs_df[r1], y=rs_df[r2], mode="lines", line=dict(color="royalblue", dash="dot"),
                         name="soup (for reference)", showlegend=False), 1, 2)  # fmt: skip
fig.update_xaxes(title_text=r1)
fig.update_yaxes(title_text=r2, col=1)
fig.update_layout(height=430, title=f"Fronts side by side (reference point {ref[0]:+.3f}, {ref[1]:+.3f})")
fig.show()
display(pd.DataFrame({
    "method": ["rewarded soup", "MORL"],
    "trainings": [2, len(mus)],
    "training seconds (as recorded)": [round(rs_cost, 1), round(morl_seconds, 1)],
    "front points": [len(lambdas), len(mus)],
    "evaluation seconds (this build)": [round(rs_seconds, 1), None],
    "hypervolume": [round(hv_rs, 4), round(hv_morl, 4)],
}))  # fmt: skip
display(pd.DataFrame({"mu": mus, "signed distance to the soup front": np.round(dists, 4)}))

# %% [markdown]
# ## Three rewards: a simplex front
#
# With $N = 3$ specialists (the two above and `specificity`), $\lambda$ ranges over a grid of
# the simplex. One live model, three task vectors in memory; each point is written in place.

# %%
grid = [(i / simplex_steps, j / simplex_steps, (simplex_steps - i - j) / simplex_steps)
        for i in range(simplex_steps + 1) for j in range(simplex_steps + 1 - i)]  # fmt: skip
front3 = Front.from_state_dicts(model, init, [specialists[r] for r in all_rewards])
simplex = []
for w in grid:
    front3.lerp(list(w))
    simplex.append(row(score(), w=w))
sx = pd.DataFrame(simplex)
pareto3 = pareto_mask(sx[all_rewards].to_numpy(), maximize=(True, True, True))
fig = make_subplots(rows=1, cols=3, specs=[[{"type": "ternary"}] * 3], subplot_titles=all_rewards)
for c, r in enumerate(all_rewards, 1):
    fig.add_trace(go.Scatterternary(
        a=[w[0] for w in sx["w"]], b=[w[1] for w in sx["w"]], c=[w[2] for w in sx["w"]], mode="markers",
        marker=dict(size=11, color=sx[r], colorscale="Viridis", showscale=False,
                    line=dict(width=[2 if p else 0 for p in pareto3], color="red")),
        text=[f"{r} = {v:+.3f} ± {s:.3f}" for v, s in zip(sx[r], sx[r + "_se"])], name=r, showlegend=False,
    ), 1, c)  # fmt: skip
for i in range(1, 4):
    fig.layout[f"ternary{'' if i == 1 else i}"].update(aaxis_title=all_rewards[0], baxis_title=all_rewards[1],
                                                       caxis_title=all_rewards[2])  # fmt: skip
fig.update_layout(height=420, title="Simplex front: each reward over λ (red ring: Pareto-optimal over the three rewards)")
fig.show()
corner = {r: sx[r].iloc[grid.index(tuple(float(i == j) for j in range(3)))] for i, r in enumerate(all_rewards)}
center = sx.iloc[min(range(len(grid)), key=lambda i: sum((x - 1 / 3) ** 2 for x in grid[i]))]
center_w = center["w"]

# %% [markdown]
# ## Samples along the front
#
# The same held-out prompts and sampling seed at every $\lambda$: how the review changes as the
# soup moves from the first specialist ($\lambda = 0$) to the second ($\lambda = 1$).

# %%
show = [0, len(lambdas) // 2, len(lambdas) - 1]
for i in range(min(2, len(rs[0]["samples"]))):
    prompt = rs[0]["samples"][i]["prompt"]
    lines = "\n".join(
        f"| λ = {rs[j]['lam']} | {rs[j]['samples'][i]['completion'].strip().replace('|', '/').replace(chr(10), ' ') or '*(empty)*'} |"
        for j in show
    )
    display(Markdown(f"**Prompt:** {prompt}\n\n| soup | completion |\n|---|---|\n{lines}"))

# %% [markdown]
# ## LoRA: merging the weight deltas vs averaging A and B
#
# With LoRA each policy is the base plus $\Delta W_i = s\, B_i A_i$ on the adapted layers. The
# faithful soup interpolates the deltas, $\Delta W(\lambda) = \sum_i \lambda_i s B_i A_i$ (linear in
# $\lambda$). The official rewarded-soups code averaged A and B separately,
# $\Delta W_{AB}(\lambda) = s\, (\sum_i \lambda_i B_i)(\sum_i \lambda_i A_i)$, which adds cross terms
# $\lambda_i \lambda_j B_i A_j$ and is quadratic in $\lambda$. Both agree at the endpoints; we train a
# LoRA variant of the two specialists (same hyperparameters, `lora=True`) and compare. To keep
# the chapter within the CPU budget the LoRA pair trains for a third of the steps (both members
# alike, so the comparison stays fair); when the book already runs with LoRA (the `gpu`
# profile) the specialists above are reused as they are.

# %%
lora_steps = steps if lora else max(1, round(steps * lora_steps_fraction))
lora_runs = {r: train(r, use_lora=True, n_steps=lora_steps) for r in reward_pair}
lora_base, _ = load_policy(policy, device=device, dtype=dtype)
lora_base.eval()


def adapter_of(run):
    import json

    from safetensors.torch import load_file

    folder = run / "adapter"
    return load_file(folder / "adapter_model.safetensors"), json.loads((folder / "adapter_config.json").read_text())


adapters = [adapter_of(lora_runs[r][0]) for r in reward_pair]
alpha = adapters[0][1]["lora_alpha"]
rslora = bool(adapters[0][1].get("use_rslora", False))
base_params = {n: p.detach().clone() for n, p in lora_base.named_parameters()}
lora_front = Front.from_lora(lora_base, [a for a, _ in adapters], [alpha, alpha], use_rslora=rslora)
lora_points = {"ΔW merge": [], "A/B average": []}
rel_diff = []
for lam in lora_lambdas:
    lora_front.lerp([1 - lam, lam])  # base + sum_i lambda_i s B_i A_i, in place
    lora_points["ΔW merge"].append(row(score((lora_base, tokenizer)), lam=lam))
    delta_w = lerp([lora_deltas(a, alpha, rslora) for a, _ in adapters], [1 - lam, lam])
    ab = lora_deltas(lora_ab_lerp([a for a, _ in adapters], [1 - lam, lam]), alpha, rslora)
    num = sum(float((ab[n] - delta_w[n]).pow(2).sum()) for n in ab)
    den = sum(float(delta_w[n].pow(2).sum()) for n in ab)
    rel_diff.append((num / den) ** 0.5 if den > 0 else 0.0)
    if lam in (0.0, 1.0):  # one adapter alone: both merges are that adapter, no need to evaluate twice
        lora_points["A/B average"].append(lora_points["ΔW merge"][-1])
        continue
    Front(lora_base, [ab], init=base_params).liti(1.0)  # base + s (sum_i lambda_i B_i)(sum_i lambda_i A_i)
    lora_points["A/B average"].append(row(score((lora_base, tokenizer)), lam=lam))
lora_front.reset()
fig = go.Figure()
for (name, pts), color in zip(lora_points.items(), ["seagreen", "darkorange"]):
    fig.add_trace(errorbar_trace(pd.DataFrame(pts), name, color, [f"λ={p['lam']}" for p in pts]))
fig.update_layout(height=430, xaxis_title=r1, yaxis_title=r2, title="LoRA soups: ΔW merging vs separate A/B averaging")
fig.show()
display(pd.DataFrame({"λ": lora_lambdas, "|ΔW_AB - ΔW| / |ΔW|": np.round(rel_diff, 3)}))
lora_hv = {name: hypervolume_2d([(p[r1], p[r2]) for p in pts],
                                (min(p[r1] for v in lora_points.values() for p in v), min(p[r2] for v in lora_points.values() for p in v)))
           for name, pts in lora_points.items()}  # fmt: skip

# %% [markdown]
# ## Verdict
#
# Computed from the numbers above (a difference counts when it exceeds two standard errors).

# %%
lines = []
for r in reward_pair:
    g = gaps[gaps.reward == r]
    below = g[g.gap < -2 * g.se]
    above = g[g.gap > 2 * g.se]
    holds = below.empty
    lines.append(
        f"- **LMC for `{r}`** {'holds' if holds else 'fails'}: over the {len(g)} interior values of λ the soup's "
        f"`{r}` is on average {g.gap.mean():+.3f} from the straight line between the endpoints "
        f"(significantly above the line at {len(above)} of them, significantly below at {len(below)}"
        + (f", worst at λ = {below.loc[below.gap.idxmin(), 'lam']}" if not holds else "") + ")."
    )
within = [d for d in dists if abs(d) <= 0.02]
beyond = [d for d in dists if d > 0.02]  # MORL reaches past the soup front
inside = [d for d in dists if d < -0.02]  # the soup front dominates the MORL point
if beyond:
    conclusion = f"MORL reaches points the soup does not (up to {max(beyond):+.3f} beyond its front)."
elif inside:
    conclusion = "the soup front reaches or dominates every MORL point."
else:
    conclusion = "the soup front is close to MORL's."
lines.append(
    f"- **RS vs MORL**: hypervolume {hv_rs:.4f} (soup, {len(lambdas)} points) vs {hv_morl:.4f} (MORL, {len(mus)} points)"
    + (f", a ratio of {hv_rs / hv_morl:.2f}" if hv_morl > 0 else "")
    + f". The MORL points lie at signed distances {', '.join(f'{d:+.3f}' for d in dists)} from the soup front "
    f"(negative: below it, on the side the soup dominates; positive: beyond it): {len(within)} of {len(dists)} "
    f"within 0.02 of it, {len(beyond)} beyond, {len(inside)} below; " + conclusion
)
lines.append(
    f"- **Cost**: the soup needed 2 trainings ({rs_cost:.0f} s as recorded, shared with chapter 1) and "
    f"{len(lambdas)} evaluations ({rs_seconds:.0f} s here); MORL needed {len(mus)} trainings ({morl_seconds:.0f} s) "
    f"for {len(mus)} points, i.e. {morl_seconds / len(mus):.0f} s per point against {rs_seconds / len(lambdas):.1f} s "
    "for a soup point once the specialists exist."
)
best_corner = max(corner[r] for r in all_rewards)
lines.append(
    f"- **Three rewards**: {sum(pareto3)} of the {len(grid)} simplex points {'is' if sum(pareto3) == 1 else 'are'} Pareto-optimal over "
    f"({', '.join(all_rewards)}); the most central soup λ = ({', '.join(f'{x:.2f}' for x in center_w)}) scores "
    + ", ".join(f"`{r}` {center[r]:+.3f} (specialist {corner[r]:+.3f})" for r in all_rewards) + "."
)
lines.append(
    f"- **LoRA** (a pair trained for {lora_steps} steps): at λ = 0.5 separate A/B averaging changes the merged delta by "
    f"{rel_diff[len(rel_diff) // 2]:.0%} of its norm; hypervolumes {lora_hv['ΔW merge']:.4f} (ΔW merge) vs "
    f"{lora_hv['A/B average']:.4f} (A/B average): A/B averaging covers "
    + ("less" if lora_hv["A/B average"] < lora_hv["ΔW merge"] else "more" if lora_hv["A/B average"] > lora_hv["ΔW merge"] else "the same")
    + " of the reward plane on this pair."
)
if not tension:
    lines.append("- Caveat: the endpoints did not trade one reward for the other at this budget, so the fronts are short.")
display(Markdown("\n".join(lines)))
