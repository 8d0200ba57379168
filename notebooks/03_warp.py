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
# # 3. WARP: weight averaged rewarded policies
#
# Chapter 1 trained one policy per reward with a KL penalty towards the SFT policy; chapter 2
# averaged the weights of policies trained on *different* rewards. WARP {cite}`rame2024warp`
# averages weights too, but for a single reward, and it does so at three moments of every
# iteration:
#
# 1. **EMA anchor.** The KL penalty pulls the policy towards an exponential moving average of
#    itself instead of the frozen SFT policy, so the anchor follows the policy and the penalty
#    holds it back less and less as training goes on.
# 2. **SLERP of task vectors.** $M$ policies trained from the same init, differing only in
#    their seed, are merged by spherical interpolation of their task vectors
#    $\delta_m = \theta_m - \theta_{init}$, which keeps the length of those vectors where a
#    plain average would shrink it.
# 3. **LITI.** The merge is interpolated back towards the init; sliding the coefficient traces a
#    front of policies that trade reward for KL, and one of them starts the next iteration.
#
# The paper makes a claim about each stage, and this chapter checks each claim with a verdict
# computed from this build's numbers:
#
# | stage | claim | claim id |
# |---|---|---|
# | a | the EMA anchor's KL-reward front lies above the SFT anchor's | `ema-anchor` |
# | b | SLERP gives more reward than LERP at equal $\lambda$ | `slerp-vs-lerp-lambda` |
# | b | SLERP's KL-reward curve lies above LERP's at equal KL | `slerp-vs-lerp-kl` |
# | c | the LITI front lies above a single run's trajectory | `liti-above-run` |
# | d | iterating moves the front up | `iterations-improve` |
#
# The x-axis of every figure is the **KL to the SFT policy**, estimated by Monte Carlo on
# held-out prompts,
#
# $$\mathrm{KL} \approx \frac1n\sum_{i} \sum_t \big[\log\pi_\theta(y_{it}\mid\cdot) -
#   \log\pi_{sft}(y_{it}\mid\cdot)\big], \qquad y_i \sim \pi_\theta(\cdot \mid x_i),$$
#
# whatever the policy was anchored to during training: an EMA-anchored run pays its penalty to
# a moving target, but it is judged, like every other policy, by how far it went from SFT
# (chapter 1).
#
# ## How a claim is judged
#
# Every policy of the chapter is evaluated on the same $n$ held-out prompts, with the same
# sampling seed (common random numbers), and the evaluation keeps the reward and the KL term of
# every prompt. Two kinds of statistic then compare policies:
#
# - a **paired difference** for two policies (or two averages of policies) at the same
#   setting: $d_i = a_i - b_i$ per prompt, reported as $\bar d \pm s_d/\sqrt n$; what the two
#   share prompt by prompt cancels;
# - a **front gap** for two fronts of (KL, reward) points: each front is replaced by its upper
#   envelope $R(\kappa)$ (the Pareto points, KL minimised and reward maximised, joined by
#   segments), and
#
#   $$\mathrm{gap}(A, B) = \frac{1}{\kappa_{hi}-\kappa_{lo}}\int_{\kappa_{lo}}^{\kappa_{hi}}
#     \big(R_A(\kappa) - R_B(\kappa)\big)\,d\kappa$$
#
#   over the KL range both fronts cover: the reward that front $A$ has over front $B$ at equal
#   KL, on average. Its standard error comes from a bootstrap over prompts that draws the same
#   prompts for every point of both fronts.
#
# A claim **holds** when its statistic is more than two standard errors in the claim's
# direction, is the **opposite** when it is more than two standard errors the other way, is
# **not confirmed** in between, and is **untested** when the statistic does not exist (two fronts
# that share no KL range). After each verdict the chapter says what the paper reports and whether
# this build agrees; both sentences are written from the numbers when the book is built.

# %% tags=["parameters"]
profile = "cpu"  # smoke | cpu | gpu: the run sizes of the whole book (`rsoup profiles`)
overrides = {}  # profile fields to change, e.g. {"steps": 500, "policy": "/path/to/any/hf-causal-lm"}
reward = "sentiment"  # one reward, as in the paper
ema_rate = 0.01  # mu, the EMA anchor's rate (WARP: 0.01)
beta_multipliers = [0.0, 1.0, 4.0]  # stage a: the profile's beta times these (0: no KL term)
liti_etas = [0.0, 0.1, 0.3, 0.5, 0.8, 1.0]  # stages c, d: the points of every LITI front
max_m = 3  # stage c: fronts for M from 2 to max_m merged runs
trajectory_points = 4  # stage c: snapshots of the single run evaluated on held-out prompts
iterations = 3  # stage d: iterations 1 to this (3 in the paper)
warp_eta = 0.3  # LITI step that gives the next iteration's init

# %% [markdown]
# The set-up: the profile's run sizes, the RL recipe every run of the chapter starts from (the
# same as chapter 1's, so the SFT-anchored run at the profile's $\beta$ comes from the run
# cache), and one evaluator for every policy. It keeps every held-out completion, because the
# reward-hacking detectors of stage a read them.

# %%
import dataclasses

import numpy as np

from rsoup_lib import chapter, figures, merge, pareto, rl, stats, warp
from rsoup_lib.checkpoints import load_state_dict, policy_state
from rsoup_lib.front import Front
from rsoup_lib.hacking import detect
from rsoup_lib.models import load_policy
from rsoup_lib.prompts import load_prompts
from rsoup_lib.rl import RLConfig, cached_train, policy_dir, read_metrics, trajectory
from rsoup_lib.verdicts import verdict, verdict_table

P = chapter.setup(profile, overrides)
chapter.show_parameters(P, reward=reward, ema_rate=ema_rate, beta_multipliers=beta_multipliers, liti_etas=liti_etas,
                        max_m=max_m, trajectory_points=trajectory_points, iterations=iterations, warp_eta=warp_eta)  # fmt: skip
base = RLConfig.from_profile(P, reward=reward, ema_rate=ema_rate)
snapshot_every = max(1, P.steps // trajectory_points)  # EMA runs keep snapshots: stage c evaluates them
sft = load_policy(P.policy, device=P.device, dtype=P.dtype)
held_out = chapter.evaluator(P, [reward], sft=sft, n_samples=P.eval_prompts)
evals = {P.policy: held_out(sft)}  # policy name -> its held-out evaluation, each computed once


def evaluated(name):
    """The held-out evaluation of a policy folder (stages a and c share policies: evaluated once)."""
    if name not in evals:
        evals[name] = held_out(name)
    return evals[name]


def front_points(results):
    """A front for rsoup_lib.stats: one [n_prompts, 2] array (KL to SFT, reward) per policy."""
    return [chapter.per_prompt(r, ["kl", reward]) for r in results]


FRONT_GAP = f"stats.front_gap, paired bootstrap over {P.eval_prompts} prompts"

# %% [markdown]
# The statistic behind three of the five verdicts, as the library computes it: the gap between
# two fronts of mean points (the integral above), then its bootstrap over prompts.

# %%
chapter.show_source(pareto.front_gap)
chapter.show_source(stats.front_gap)

# %% [markdown]
# ## a. EMA anchor vs SFT anchor
#
# The RL objective of chapter 1 penalises the KL to an *anchor* policy,
#
# $$\max_\theta\; \mathbb{E}_x \mathbb{E}_{y \sim \pi_\theta}\big[r(x, y)\big] - \beta\,
#   \mathrm{KL}\big(\pi_\theta(\cdot\mid x)\,\|\,\pi_{anchor}(\cdot\mid x)\big),$$
#
# and there the anchor was the frozen SFT policy. WARP's anchor is the exponential moving
# average of the policy's own weights, updated after every optimiser step:
#
# $$\theta_{ema} \leftarrow (1-\mu)\,\theta_{ema} + \mu\,\theta, \qquad
#   \theta_{ema}^{(T)} = (1-\mu)^T\,\theta_{init} + \sum_{t=1}^{T} \mu\,(1-\mu)^{T-t}\,\theta^{(t)}.$$
#
# The anchor starts at the init and drifts after the policy with a lag of about $1/\mu$ steps:
# early on the penalty acts as in chapter 1; later it only stops the policy from moving *fast*,
# not from moving *far*. This is the trainer's step 7, kept in float32 whatever the model's dtype
# (with $\mu = 0.01$ a bfloat16 EMA would round most updates away and stay at SFT):

# %%
chapter.show_source(rl.Anchor.update)
chapter.show_source(merge.ema_update_)

# %% tags=["hide-input"]
chapter.markdown(
    f"With μ = {ema_rate} and {P.steps} steps, the anchor at the end of a run still carries "
    f"(1 − μ)^T = {(1 - ema_rate) ** P.steps:.2f} of the init's weight: the longer the run, the further the anchor moves."
)

# %% [markdown]
# The experiment: the same RL recipe, the same seed and the same number of steps, for the
# profile's $\beta$ times each of `beta_multipliers` (0, 1 and 4 by default), with either anchor.
# With $\beta = 0$ there is no KL term and the anchor plays no role, so one run stands for
# both: it shows what the reward alone does to the policy. Every final policy is then evaluated
# on the held-out prompts.

# %%
betas = [P.beta * m for m in beta_multipliers]
stage_a = {}  # (beta, anchor) -> (run folder, held-out evaluation of its final policy)
for b in betas:
    for anchor in ["sft"] if b == 0 else ["sft", "ema"]:
        cfg = dataclasses.replace(base, beta=b, anchor=anchor, snapshot_every=snapshot_every if anchor == "ema" else 0)
        run = cached_train(cfg, progress=False)
        stage_a[b, anchor] = run, evaluated(str(policy_dir(run)))

# %% [markdown]
# Lines are the training-batch estimates logged at every step (a moving average over 10 steps),
# with the KL measured against SFT for both anchors; diamonds are the final policies on the
# held-out prompts, with one standard error over prompts in each direction. Solid lines are the
# profile's $\beta$, dashed lines its other multiples, the dotted grey line the run without KL
# term.

# %% tags=["hide-input"]
fig = figures.new(f"EMA vs SFT anchor ({reward}): training batches and held-out final policies", figures.KL_AXIS,
                  f"{reward} reward", height=500)  # fmt: skip
for (b, anchor), (run, res) in stage_a.items():
    name = f"β = {b:g}, " + ("no KL term" if b == 0 else f"{anchor.upper()} anchor")
    color = "#7f7f7f" if b == 0 else figures.color(1 if anchor == "ema" else 0)
    dash = "dot" if b == 0 else "solid" if b == P.beta else "dash"
    figures.training_path(fig, read_metrics(run), name, color=color, dash=dash)
    figures.front(fig, [res], "kl", reward, name, color=color, mode="markers", symbol="diamond", size=11, showlegend=False)
fig.show()
chapter.table([{"β": b, "anchor": a if b else "none (no KL term)", f"{reward}": str(stats.mean(r.scores(reward))),
                "KL to SFT": str(stats.mean(r.kls()))} for (b, a), (_, r) in stage_a.items()])  # fmt: skip

# %% [markdown]
# **The verdict.** For each anchor, the final policies at $\beta > 0$ form a front (one
# point per $\beta$); the claim is that the EMA front lies above the SFT front where both have
# points at the same KL, measured by the front gap of the introduction.

# %%
anchor_front = {a: front_points([res for (b, an), (_, res) in stage_a.items() if an == a and b > 0]) for a in ("ema", "sft")}
v_a = verdict("ema-anchor", "the EMA anchor's front of final policies lies above the SFT anchor's at equal KL",
              stats.front_gap(anchor_front["ema"], anchor_front["sft"]), FRONT_GAP)  # fmt: skip
chapter.show_verdict(v_a, "WARP reports that the EMA anchor gives a better KL-reward trade-off than the SFT anchor, "
                          "more reward at the same KL")  # fmt: skip

# %% [markdown]
# **Without a KL term.** A proxy reward optimised with nothing to hold the policy back is
# where reward hacking shows first. Rather than reading the samples and deciding, the
# $\beta = 0$ policy's held-out completions (all of them, from the evaluation above) go through the
# detectors of chapter 1 (`rsoup_lib.hacking`: repetition, collapse of distinct bigrams, empty
# answers, keyword stuffing, ignored instructions, a stock opening), each compared with the SFT
# policy's completions on the same prompts. A detector is a fixed threshold on one statistic: one
# that fires is evidence of that particular failure, with the worst sample shown; none firing
# means none of *these* patterns, not that the reward was earned honestly.

# %%
tone_of = {p["prompt"]: p["tone"] for p in load_prompts("test")}
no_kl = stage_a[0.0, "sft"][1] if 0.0 in betas else None
detector_stats, found = detect({"SFT": evals[P.policy], "β = 0": no_kl}, tone_of, base="SFT") if no_kl is not None else ({}, [])

# %% tags=["hide-input"]
if no_kl is None:
    chapter.markdown("This build has no β = 0 run (`beta_multipliers` has no 0), so no detector ran.")
else:
    evidence = "\n".join(f"- **{f.label}** ({f.why}). Example: *{f.example['prompt']}* → "
                         f"\"{f.example['completion'].strip()[:200] or '(empty)'}\"" for f in found)  # fmt: skip
    chapter.markdown(
        f"Without a KL term the policy reaches a {reward} of {no_kl.rewards[reward]['mean']:+.3f} (SFT: "
        f"{evals[P.policy].rewards[reward]['mean']:+.3f}) at a KL to SFT of "
        f"{no_kl.kl_to_sft:.2f} nats, and " + (f"{len(found)} detector(s) fire against the SFT policy: this run games "
        "its reward in ways the detectors see.\n\n" + evidence if found else "none of the detectors fires against the SFT "
        "policy: at this scale the unregularised run shows none of the forms of reward hacking they look for."))  # fmt: skip
chapter.table([{"policy": name, **s} for name, s in detector_stats.items()], index="policy") if detector_stats else None

# %% [markdown]
# ## b. SLERP vs LERP
#
# Two EMA-anchored runs that differ only in their seed are the first iteration of WARP
# ($M = 2$; with $1 \in$ `beta_multipliers`, the first of them is stage a's EMA run at the
# profile's $\beta$, taken from the run cache). Their task vectors
# $\delta_m = \theta_m - \theta_{init}$ are merged either linearly,
# $\mathrm{lerp}(\lambda) = \theta_{init} + (1-\lambda)\,\delta_1 + \lambda\,\delta_2$, or
# spherically,
#
# $$\mathrm{slerp}(\lambda) = \theta_{init} + \frac{\sin((1-\lambda)\Omega)}{\sin\Omega}\,\delta_1 +
#   \frac{\sin(\lambda\Omega)}{\sin\Omega}\,\delta_2, \qquad
#   \cos\Omega = \frac{\langle \delta_1, \delta_2\rangle}{\|\delta_1\|\,\|\delta_2\|},$$
#
# with the angle $\Omega$ computed per parameter tensor. The two coefficients, with the linear
# fallback when the task vectors are parallel (no angle to turn through) or one is zero:

# %%
chapter.show_source(merge.slerp_coefficients)

# %% [markdown]
# `merge.slerp` applies them tensor by tensor to state dicts (and iterates with
# $\lambda = 1/m$ for $M > 2$). To sweep $\lambda$, every merge is written in place into one
# live model (`rsoup_lib.front.Front`: $\theta_{init} + c_1\delta_1 + c_2\delta_2$, with the
# SLERP coefficients from the Gram matrix of the task vectors) and evaluated on the held-out
# prompts. At $\lambda = 0$ and $\lambda = 1$ both merges are one of the two runs, bit for bit,
# so those two points are evaluated once and serve both curves.

# %%
warp_cfg = warp.WarpConfig(
    rl=dataclasses.replace(base, anchor="ema", snapshot_every=snapshot_every), m=2, iterations=1, eta=warp_eta,
    front_etas=tuple(liti_etas), eval_prompts=P.eval_prompts, eval_seed=P.seed + 1, eval_max_new_tokens=P.eval_max_new_tokens,
)  # fmt: skip
it1 = warp.warp(warp_cfg, progress=False)[0]  # M = 2 EMA-anchored runs, their SLERP, its LITI
init_sd, run_sds = policy_state(P.policy), [load_state_dict(policy_dir(r)) for r in it1.runs]
model, tok = load_policy(P.policy, device=P.device, dtype=P.dtype)
front = Front.from_state_dicts(model, init_sd, run_sds)
lams = np.linspace(0, 1, P.n_lambdas)
curves = {"slerp": [], "lerp": []}
for lam in map(float, lams):
    front.slerp(lam)
    curves["slerp"].append(held_out((model, tok)))
    if lam in (0.0, 1.0):  # both merges are one of the runs, bit for bit: evaluated once
        curves["lerp"].append(curves["slerp"][-1])
    else:
        front.lerp([1 - lam, lam])
        curves["lerp"].append(held_out((model, tok)))
front.reset()

# %% tags=["hide-input"]
figures.merges_by_lambda(f"SLERP vs LERP of two EMA-anchored runs ({reward})", lams, curves, reward).show()

# %% [markdown]
# **The verdicts.** At equal $\lambda$ the two merges are compared prompt by prompt: for each
# prompt, the mean over the interior $\lambda$ (where the merges differ) of the SLERP reward
# minus the LERP reward, then the mean and standard error of that over prompts. The $\lambda$
# points share their prompts, so they are not independent measurements and are not treated as
# such. At equal KL the question is whether SLERP's points lie beyond the front LERP traces in
# the (KL, reward) plane: the mean signed distance of SLERP's interior points to LERP's front
# (positive beyond it, negative behind it). A front gap over a shared KL range would not do:
# SLERP keeps the task vector long, so its points can all sit at larger KL than LERP's and the
# two fronts need not share any KL range.
#
# The two verdicts answer different questions and can disagree. SLERP's merge sits further
# from the init than LERP's (its task vector is longer), so it can win at equal $\lambda$ simply
# by having moved further, paying for its reward with KL. The comparison at equal KL asks
# whether the extra reward is worth the extra KL, which is what matters for a front.

# %%
interior = [i for i, lam in enumerate(lams) if 0 < lam < 1]
per_prompt_mean = {m: np.mean([curves[m][i].scores(reward) for i in interior], axis=0) for m in curves} if interior else {}
v_lam = verdict("slerp-vs-lerp-lambda", "SLERP gives more reward than LERP at equal λ (mean over the interior λ)",
                stats.paired_difference(per_prompt_mean["slerp"], per_prompt_mean["lerp"]) if interior
                else stats.undefined("no interior λ: raise n_lambdas"),
                f"paired difference over {P.eval_prompts} prompts of each prompt's mean over {len(interior)} interior λ")  # fmt: skip
chapter.show_verdict(v_lam, "WARP reports that SLERP reaches more reward than LERP at the same λ, because LERP "
                            "shortens task vectors that are far from parallel")  # fmt: skip
v_kl = verdict("slerp-vs-lerp-kl", "SLERP's interior points lie beyond LERP's (KL, reward) front",
               stats.mean_distance_to_front([front_points(curves["slerp"])[i] for i in interior],
                                            front_points(curves["lerp"]), maximize=(False, True))
               if interior else stats.undefined("no interior λ: raise n_lambdas"),
               f"mean signed distance of the {len(interior)} interior SLERP points to the LERP front "
               f"(KL minimised, reward maximised), joint bootstrap over {P.eval_prompts} prompts")  # fmt: skip
chapter.show_verdict(v_kl, "WARP chooses SLERP over LERP for the front it builds; read at equal KL, its argument "
                           "(the longer task vector buys reward, not only KL) predicts SLERP's curve above LERP's")  # fmt: skip

# %% [markdown]
# **Why SLERP and LERP differ: norms and angles.** If $\|\delta_1\| = \|\delta_2\|$, SLERP
# keeps the norm of the merged task vector at $\|\delta_1\|$ for every $\lambda$, while LERP
# shrinks it to
#
# $$\frac{\|(1-\lambda)\,\delta_1 + \lambda\,\delta_2\|}{\|\delta_1\|} =
#   \sqrt{1 - 2\,(1-\cos\Omega)\,(\lambda-\lambda^2)},$$
#
# the more so as the angle $\Omega$ between the task vectors grows: at $\lambda = 1/2$ and
# $\Omega = 90°$ only $1/\sqrt2 \approx 0.71$ of the norm is left. WARP reports task vectors
# of independent runs that are nearly orthogonal per tensor, while the full weights stay nearly
# parallel: the runs move in different directions, by little compared with the weights.
# Below, the measured norms of both merges (through `merge.slerp` and `merge.lerp` on the state
# dicts), the formula evaluated at the measured whole-model angle, and the angles per tensor.

# %%
chapter.show_source(chapter.lerp_norm_ratio)
deltas = chapter.task_vectors(init_sd, run_sds)
cos_model = chapter.whole_model_cosine(*deltas)
norms = chapter.merged_norms(init_sd, run_sds, lams)
formula = [chapter.lerp_norm_ratio(cos_model, lam) for lam in lams]
angles = chapter.tensor_angles(init_sd, run_sds)

# %% tags=["hide-input"]
figures.task_vector_geometry(lams, norms, formula, angles).show()
if angles["task vectors"]:
    mid, med_task, med_w = int(np.argmin(np.abs(lams - 0.5))), np.median(angles["task vectors"]), np.median(angles["weights"])
    ratio = chapter.task_vector_norm(deltas[1]) / chapter.task_vector_norm(deltas[0])
    chapter.markdown(
        f"At λ = {lams[mid]:.2f} the merged task vector keeps {norms['slerp'][mid]:.2f} of ‖δ₁‖ with SLERP and "
        f"{norms['lerp'][mid]:.2f} with LERP; the formula gives {formula[mid]:.2f} for LERP from the whole-model angle "
        f"of {np.degrees(np.arccos(np.clip(cos_model, -1, 1))):.1f}° (it assumes equal norms; here ‖δ₂‖/‖δ₁‖ = {ratio:.2f}). "
        f"Per tensor, the median angle is {med_task:.1f}° between the task vectors, "
        f"{'closer to orthogonal than to parallel' if med_task > 45 else 'closer to parallel than to orthogonal'}, "
        f"and {med_w:.2f}° between the full weights, {'nearly parallel' if med_w < 10 else 'far from parallel'}.")  # fmt: skip
else:
    chapter.markdown("No tensor moved in both runs (zero task vectors): norms and angles are undefined in this build.")

# %% [markdown]
# ## c. LITI: trading reward for KL along a front
#
# In WARP the SLERP merge has more reward than either run, and more KL too (stage b's figure
# shows where this build's merges lie). WARP's third stage interpolates it back towards the init,
#
# $$\theta^{\eta} = (1-\eta)\,\theta_{init} + \eta\,\theta_{slerp}, \qquad \eta \in [0, 1],$$
#
# which recovers what the init knew and traces, as $\eta$ slides from 1 to 0, a front from the
# merge down to the SFT policy itself:

# %%
chapter.show_source(merge.liti)

# %% [markdown]
# The claim is that this front lies above what a single RL run offers along its own training,
# i.e. that stopping one run earlier is a worse way to spend a KL budget than shrinking a merge.
# The single run is the first EMA-anchored run of stage b; it kept `trajectory_points`
# snapshots, and each snapshot, like the fronts, is evaluated on the held-out prompts, so the
# trajectory and the fronts are measured alike (its training-batch estimates are drawn faintly
# for reference only). The fronts are drawn for $M = 2$ (the merge of stage b) up to
# `max_m` runs, the extra runs differing only in their seed. At $\eta = 0$ every front is the
# SFT policy, which was evaluated once at the start.
#
# Reading the figure: every held-out curve starts at the SFT policy (KL 0). The trajectory
# ends at the run's final policy; a LITI front ends at its merge ($\eta = 1$), usually further
# right and higher. Where the curves overlap in KL, the one on top gives more reward for the same
# distance from SFT; the front gap averages that vertical distance over the shared KL range.

# %%
liti_fronts = {}
for M in range(2, max_m + 1):
    cfg_m = dataclasses.replace(warp_cfg, m=M)
    slerp_m = it1.slerp if M == 2 else warp.warp(cfg_m, progress=False)[0].slerp
    liti_fronts[M] = chapter.liti_front(cfg_m, slerp_m, liti_etas, at_zero=evals[P.policy])
single = [(step, evaluated(name)) for step, name in trajectory(it1.runs[0])]  # init, snapshots, final policy

# %% tags=["hide-input"]
fig = figures.new("LITI fronts of SLERP vs a single run's trajectory", figures.KL_AXIS, f"{reward} reward", height=500)
figures.training_path(fig, read_metrics(it1.runs[0]), "single run (training batches)", color="#c7c7c7")
figures.front(fig, [r for _, r in single], "kl", reward, "single run (held-out, by step)", color="#7f7f7f",
              labels=[f"step {s}" for s, _ in single], symbol="diamond", size=9)  # fmt: skip
for M, pts in liti_fronts.items():
    figures.front(fig, pts, "kl", reward, f"LITI of SLERP, M = {M}", labels=[f"η = {e:g}" for e in liti_etas],
                  color=figures.color(M - 1))  # fmt: skip
fig.show()

# %% [markdown]
# **The verdict** compares the $M = 2$ front with the run's trajectory by the front gap; the
# larger $M$ are in the table below it.

# %%
run_front = front_points([r for _, r in single])
gaps_c = {M: stats.front_gap(front_points(pts), run_front) for M, pts in liti_fronts.items()}
v_c = verdict("liti-above-run", "the LITI front of M = 2 merged runs lies above one run's held-out trajectory at equal KL",
              gaps_c[2], f"{FRONT_GAP}; not equal compute: 2 RL runs for the front, 1 for the trajectory")  # fmt: skip
chapter.show_verdict(v_c, "WARP reports that the LITI front of its merged policies improves on the fine-tuning "
                          "trajectory of a single RL run")  # fmt: skip

# %% tags=["hide-input"]
so = {"holds": "The front wins with twice the RL compute, so this is not evidence that WARP beats a single run of the same cost.",
      "opposite": "The front falls below the trajectory even with twice the RL compute on its side.",
      "not confirmed": "Even with twice the RL compute on the front's side, this build cannot tell the two apart.",
      "untested": ""}[v_c.outcome]  # fmt: skip
chapter.markdown(
    f"**Compute.** The M = 2 front costs 2 RL runs of {P.steps} steps each (the single run itself and one more seed), "
    f"plus one merge and {len(liti_etas) - 1} evaluations; the trajectory costs that 1 run: the two are not compared "
    f"at equal compute. {so}"
)
chapter.table([{"M": M, "RL runs": M, "reward gap to the trajectory at equal KL": chapter.estimate_text(g),
                "95% interval": g.interval() if np.isfinite(g.value) else "—"} for M, g in gaps_c.items()])  # fmt: skip

# %% [markdown]
# ## d. Iterated WARP
#
# One iteration is the three stages in a row; the next one starts from a point of the previous
# front:
#
# $$\theta^{i} = (1-\eta)\,\theta^{i-1} + \eta\,\theta_{slerp}^{i}, \qquad \theta^{0} =
#   \theta_{sft},$$
#
# where $\theta_{slerp}^{i}$ merges $M$ EMA-anchored runs started from $\theta^{i-1}$ (here
# $\eta$ = `warp_eta`). Each run's EMA anchor starts at its own init $\theta^{i-1}$, but every
# run records the SFT policy as its reference, so its logged KL, like every evaluation here, is
# the KL to SFT. The front of iteration $i$ is
# $\{(1-\eta')\,\theta_{sft} + \eta'\,\theta_{slerp}^{i},\ \eta' \in$ `liti_etas` $\}$:
# iteration 1's is stage c's $M = 2$ front, reused rather than evaluated again.
#
# What iterating changes: the runs of iteration $i$ start from $\theta^{i-1}$, already some
# KL away from SFT and already rewarded, so their merge usually reaches further than
# iteration 1's. Whether that buys reward *at equal KL*, rather than only more KL, is what the
# verdict below measures; a later front that lies on the earlier one, extended to the right,
# would not count as an improvement. The loop, as `rsoup warp` and this chapter run it:

# %%
chapter.show_source(warp.warp_iteration)

# %%
iter_cfg = dataclasses.replace(warp_cfg, iterations=iterations)
its = warp.warp(iter_cfg, progress=False)
assert its[0].slerp == it1.slerp  # iteration 1 is stage b's merge (the same cache entry)
iter_fronts = {1: liti_fronts[2]}  # iteration -> its LITI front; iteration 1's is stage c's M = 2 front
for it in its[1:]:
    iter_fronts[it.index] = chapter.liti_front(iter_cfg, it.slerp, liti_etas, at_zero=evals[P.policy])

# %% tags=["hide-input"]
fig = figures.new("Iterated WARP: the front after each iteration", figures.KL_AXIS, f"{reward} reward", height=480)
for i, pts in iter_fronts.items():
    figures.front(fig, pts, "kl", reward, f"iteration {i}", labels=[f"η' = {e:g}" for e in liti_etas],
                  color=figures.color(i - 1))  # fmt: skip
fig.show()

# %% [markdown]
# **The verdict** compares the last iteration's front with the first by the front gap; the
# table gives each step, iteration $I$ against iteration $I-1$, as an estimate of its own.

# %%
pts_d = {i: front_points(pts) for i, pts in iter_fronts.items()}
last = max(pts_d)
v_d = verdict("iterations-improve", f"iteration {last}'s front lies above iteration 1's at equal KL",
              stats.front_gap(pts_d[last], pts_d[1]) if last > 1 else stats.undefined("only one iteration was run"),
              FRONT_GAP)  # fmt: skip
chapter.show_verdict(v_d, "WARP reports that each iteration moves the KL-reward front up, the front of a later "
                          "iteration above the earlier ones at the same KL")  # fmt: skip

# %% tags=["hide-input"]
steps_d = {i: stats.front_gap(pts_d[i], pts_d[i - 1]) for i in sorted(pts_d) if i > 1}
chapter.table([{"step": f"I = {i} vs I = {i - 1}", "reward gap at equal KL": chapter.estimate_text(g),
                "95% interval": g.interval() if np.isfinite(g.value) else "—"} for i, g in steps_d.items()])  # fmt: skip

# %% [markdown]
# **What the bootstraps resample.** Every front in this chapter is a list of policies evaluated on
# the same held-out prompts with the same sampling seed. A bootstrap replicate draws prompts with
# replacement, once, and recomputes every policy's mean KL and mean reward on that draw, then the
# statistic (a front gap, a distance to a front). The spread of the replicates is the uncertainty
# that comes from which prompts were asked and which completions were sampled. It does not include
# the randomness of training: each RL run is one seed, and stage c's trajectory and front share one
# of their runs, so the comparison of c is paired not only on prompts but on a training run too.
#
# **What each stage costs.** Stage a trains one run per $\beta$ and anchor. Stage b needs two
# EMA-anchored runs that differ only in their seed; the first is stage a's EMA run at the
# profile's $\beta$ (same configuration, so the run cache hands it back) and the second is new.
# Stage c adds one run for each $M$ beyond two, and stage d two runs for every iteration after
# the first, each starting from the previous iteration's LITI policy. Every merge and every
# front point after that is an evaluation, not a training: this is why WARP's front is cheap
# once its runs exist, and why the RL runs (stage a's and the iterations' above all), not the
# merges, dominate this chapter's time.

# %% [markdown]
# ## Summary
#
# The five claims and what this build measured, each with the statistic its verdict rests on:

# %% tags=["hide-input"]
chapter.markdown(verdict_table([v_a, v_lam, v_kl, v_c, v_d]))

# %% [markdown]
# How to read this table at the scale of the book. Every number rests on one seed per run and
# on the profile's held-out prompts; the standard errors cover the prompts, not the runs. A
# claim that is "not confirmed" here is a claim this build cannot tell apart from no effect, not
# a claim shown false; a "holds" or an "opposite" is an effect larger than the prompt noise for
# *these* trained policies, at this model size, reward and number of steps, not one shown to
# survive another draw of the training noise. Runs this short are sensitive even to the order of
# floating-point sums: the chapter built with one torch thread and with two (same data, same
# seed) did not agree on every verdict when it was written, and a later change of rounding alone
# in the trainer (a faster decoding step, equal to the old one up to ~1e-6 in the logits) changed
# every trained policy and flipped `ema-anchor` and `slerp-vs-lerp-kl` between the builds before
# and after it. The paper's experiments train Gemma 7B policies against a
# learned reward model, at a scale far beyond this book's; the mechanisms it relies on (an anchor that moves, task
# vectors that are nearly orthogonal, merges that stay in a basin of linear mode connectivity)
# can each be looked at in the figures above, on a CPU, and the gpu profile runs
# the same chapter on a real model.
