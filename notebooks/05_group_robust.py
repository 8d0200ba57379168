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
# # 5. Group-invariant RLHF
#
# Zheng et al. {cite}`zheng2024improving` argue that RL from a reward takes **shortcuts**: it
# raises the reward where that is easy and neglects the samples where it is hard, so the
# average improves while some kinds of prompt are served worse than before. Their remedy trains
# the policy to perform consistently across groups of samples that are **inferred**, not
# labelled: a classifier splits the samples into the groups whose returns differ most, the
# policy is penalised for the variance of the group returns, and each sample gets its own KL
# coefficient (easy samples stay near the reference, hard ones may explore). They report four
# things, and this chapter tests each with a verdict computed from this build's numbers:
#
# | claim | claim id |
# |---|---|
# | the worst group's reward improves over plain RL, at comparable KL | `gi-worst-group` |
# | the mean reward does not drop (beyond noise) | `gi-mean-reward` |
# | a group held out of training improves | `gi-held-out` |
# | training is more stable across seeds | `gi-seed-stability` |
#
# No public code exists; the method here is the book's reading of the paper, built on the one
# RL trainer of chapter 1 through two per-sample hooks.
#
# **The groups at our scale.** Every prompt asks for a review in a tone: positive, negative,
# mixed, or any (no tone requested). The tone is a hidden `group` field of the prompt records:
# the learner never reads it, only the evaluation (and the clearly marked oracle) does. The
# reward, `tone_fidelity`, is the review's sentiment in the direction asked for, so the groups
# pull in different directions: a policy that writes the same kind of review whatever it is
# asked serves some requests and fails others. One tone is **held out of training** in every
# run and evaluated as an out-of-distribution group.
#
# **The budget.** The chapter trains seven policies (two seeds of plain RLOO, two of the
# group-invariant method, two ablations and the oracle) and must build in a few minutes on two
# CPU cores, so its runs are short: `rl_steps` steps each (below), with the learning rate
# scaled by `lr_scale` so that such a short run still moves clearly away from SFT (the KL to
# SFT each policy reached is in the table of every method below). Every method gets the same
# steps, batch, prompts, learning rate and beta.

# **Why `mixed` is held out.** This choice was made after measuring the SFT policy and plain
# RLOO, before the method was run. In that first measurement (not part of this build: data
# version 4 of `tiny`, whose SFT rewards differ from this build's table below; plain RLOO with
# all four tones in training, 60 steps, learning rate 3e-4, seed 0; `rsoup train
# --reward tone_fidelity --steps 60 --lr 3e-4 --checkpoint-every 0 --out runs/all-tones` then
# `rsoup eval --policy runs/all-tones --rewards tone_fidelity,sentiment --n 192 --by group`), the
# `mixed` reward rose from +0.29 to +0.76 while the three other tones lost (positive +0.14 to
# +0.03, any +0.34 to +0.11) and the mean sentiment fell from +0.15 to +0.06: the policy found
# the cheapest shortcut the reward offers, reviews without sentiment, which a `mixed` request
# pays for ($1 - 2|s|$ is 1 at $s = 0$) and the three others do not. Holding `mixed` out removes
# that shortcut and leaves the one the paper has in mind: the three training tones are served
# by one kind of review more than another, and a policy can raise the average by serving the
# majority. The held-out tone then asks something none of the training tones asks (a balanced
# review), which makes it a genuine out-of-distribution test.

# %% tags=["parameters"]
profile = "cpu"  # smoke | cpu | gpu: the run sizes of the whole book (`rsoup profiles`)
overrides = {}  # profile fields to change, e.g. {"steps": 500, "policy": "/path/to/any/hf-causal-lm"}
reward = "tone_fidelity"  # the training reward: sentiment in the requested direction
holdout = "mixed"  # the requested tone held out of training (out-of-distribution group)
rl_steps = 48  # steps of every run of this chapter (at most the profile's steps)
lr_scale = 3.0  # learning rate = lr_scale x the profile's, for these short runs
alpha = 1.0  # weight of the variance penalty
c0 = 0.5  # adaptive KL: beta_i = beta (c0 + c1 p(g_high | x_i, y_i))
c1 = 1.0  # (see c0)
seeds = [0, 1]  # seeds of plain RLOO and of the group-invariant method

# %%
import dataclasses

import numpy as np
import pandas as pd

from rsoup_lib import chapter, figures, rl, stats
from rsoup_lib import group_robust as gr
from rsoup_lib.evaluate import labels_of
from rsoup_lib.models import load_policy
from rsoup_lib.prompts import load_prompts
from rsoup_lib.verdicts import verdict

P = chapter.setup(profile, overrides)
steps = min(P.steps, rl_steps)
test_prompts = load_prompts("test")
n_eval = max(P.eval_prompts, len(test_prompts))  # every held-out prompt: about 48 per group
chapter.show_parameters(P, reward=reward, holdout=holdout, steps_here=steps, lr_here=float(f"{P.lr * lr_scale:.3g}"),
                        alpha=alpha, c0=c0, c1=c1, seeds=seeds, eval_here=n_eval)  # fmt: skip

# %% [markdown]
# ## The reward and its groups
#
# `tone_fidelity` reads the VADER sentiment $s \in [-1, 1]$ of the review and scores it against
# the tone the instruction asks for: $s$ for a positive request, $-s$ for a negative one,
# $1 - 2|s|$ for a mixed one (a balanced review) and $|s|$ when no tone is asked (a review that
# takes a side):

# %% tags=["hide-input"]
from rsoup_lib import rewards as reward_fns  # noqa: E402

chapter.show_source(reward_fns._tone_fidelity)

# %% [markdown]
# Before any training: the SFT policy's reward on every held-out prompt, by the hidden group
# (the same numbers as `rsoup eval --policy tiny --rewards tone_fidelity --by group`). A group
# whose mean is low is a *hard* group at the start.

# %%
sft = load_policy(P.policy, device=P.device, dtype=P.dtype)
evaluate = chapter.evaluator(P.with_overrides({"eval_prompts": n_eval}), [reward, "sentiment"], sft=sft,
                             n_samples=n_eval)  # fmt: skip
labels = labels_of(test_prompts, n_eval, "group")
groups = sorted(set(labels))
train_groups = [g for g in groups if g != holdout]
results = {"sft": evaluate(sft)}

# %% tags=["hide-input"]
chapter.group_table(results, labels, reward, holdout, train_groups)

# %% tags=["hide-input"]
sentiment_sft = gr.group_means(results["sft"].scores("sentiment"), labels, groups)
means_sft = gr.group_means(results["sft"].scores(reward), labels, groups)
lab_arr = np.asarray(labels)
gap_sft = stats.unpaired_difference(results["sft"].scores(reward)[lab_arr == groups[int(np.argmax(means_sft))]],
                                    results["sft"].scores(reward)[lab_arr == groups[int(np.argmin(means_sft))]])
chapter.markdown(
    "The SFT policy's mean sentiment (VADER, in [-1, 1]) per requested tone is "
    + ", ".join(f"{g} {v:+.2f}" for g, v in zip(groups, sentiment_sft))
    + (f": even a negative request gets a review whose sentiment is {sentiment_sft[groups.index('negative')]:+.2f} on "
       "average. " if "negative" in groups and sentiment_sft[groups.index("negative")] > 0 else ". ")
    + f"Its reward ranges from {means_sft.min():+.3f} ({groups[int(np.argmin(means_sft))]}) "
    f"to {means_sft.max():+.3f} ({groups[int(np.argmax(means_sft))]})"
    + (f"; the gap, {gap_sft} (unpaired: different prompts), is "
       + ("more than two standard errors: the groups differ in difficulty at the start." if gap_sft.value > 2 * gap_sft.se
          else "within two standard errors: at the start the groups are not clearly unequal."))
)

# %% [markdown]
# ## The method
#
# **Groups.** A small classifier $p_\phi(g \mid x, y)$ with $K = 2$ soft groups reads the prompt
# and the completion as hashed bags of words (a linear layer and a softmax: cheap next to a
# policy step). For the samples $i$ of the last few training batches, with rewards $R_i$ and
# memberships $p_{ig}$,
#
# $$N_g = \sum_i p_{ig},\quad \pi_g = \frac{N_g}{n},\quad R_g = \frac{\sum_i p_{ig} R_i}{N_g},\quad
#   \bar R = \sum_g \pi_g R_g,\qquad
#   \mathrm{Var}_g(R_g) = \sum_g \pi_g\,(R_g - \bar R)^2 .$$
#
# $\phi$ takes gradient-ascent steps on $\mathrm{Var}_g(R_g)$ before every policy step: it looks
# for the split with the largest gap in performance. The variance weights each group by its mass
# $\pi_g$; without the weights, a "group" of one outlier sample would maximise it.

# %% tags=["hide-input"]
chapter.show_source(gr.group_returns)
chapter.show_source(gr.group_variance)
chapter.show_source(gr.GroupClassifier.fit)

# %% [markdown]
# **Variance penalty.** The policy maximises $J(\theta) - \alpha\,\mathrm{Var}_g(R_g)$. RLOO
# estimates the gradient of $J$ with each sample's advantage times the gradient of its
# log-probability; a function of the batch's rewards enters the same estimator through its
# derivative with respect to each reward, and for the variance
#
# $$\frac{\partial\,\mathrm{Var}_g(R_g)}{\partial R_i} = \frac{2}{n}\sum_g p_{ig}\,(R_g - \bar R)$$
#
# (the terms through $\bar R$ cancel). So the penalty multiplies sample $i$'s reward advantage by
#
# $$w_i = 1 - \alpha\, n\,\frac{\partial\,\mathrm{Var}}{\partial R_i}
#   = 1 - 2\alpha\Big(\sum_g p_{ig} R_g - \bar R\Big):$$
#
# above 1 for samples of the hard group, below 1 for the easy one. The trainer takes these weights
# through its hook `advantage_weight_fn`, and leaves the KL part of the advantage unweighted:
# $A_i = w_i\,\mathrm{RLOO}(r)_i - \mathrm{RLOO}(\beta_i \mathrm{KL})_i$.

# %% tags=["hide-input"]
chapter.show_source(gr.variance_gradient)
chapter.show_source(gr.advantage_weights)
chapter.show_source(rl.rloo_loss, "the weights enter in the `else` branch")

# %% [markdown]
# **Adaptive KL.** Each sample's KL coefficient is
# $\beta_i = \beta\,(c_0 + c_1\,p_\phi(g_{high} \mid x_i, y_i))$, through the trainer's hook
# `kl_coef_fn`, where $g_{high}$ is the group with the larger return. With $c_0 = 0.5$ and
# $c_1 = 1$ the coefficient ranges from $\beta/2$ (surely hard) to $1.5\beta$ (surely easy),
# and its mean is $\beta$ when the two groups are equally likely: the KL budget of plain RLOO.

# %% tags=["hide-input"]
chapter.show_source(gr.adaptive_kl)

# %% [markdown]
# The hooks of one run compute all of this once per step: push the batch into the buffer, fit
# the classifier, and return the weights and the coefficients. The **oracle** replaces the
# inferred groups by the hidden labels (one group per requested tone): it uses information the
# method does not have, and shows what perfect group inference would give.

# %% tags=["hide-input"]
chapter.show_source(gr.GroupHooks._step)
chapter.show_source(gr.GroupHooks._memberships)

# %% [markdown]
# ## Training
#
# Seven runs, all on the training prompts without the held-out tone, with the same steps, batch,
# learning rate and $\beta$ (the KL budget: the adaptive coefficient moves $\beta$ per sample
# around the same value, and the KL each policy actually reached is measured below and reported
# next to every comparison): plain RLOO with a fixed $\beta$ (two seeds), the group-invariant
# method (two seeds), the method without the adaptive KL and without the variance penalty
# (seed 0), and the oracle (seed 0). `gr.cached_train` trains through `rl.train` and the run
# cache.

# %%
rl_config = rl.RLConfig.from_profile(P, reward=reward, steps=steps, lr=P.lr * lr_scale)
base = gr.GroupConfig(alpha=alpha, c0=c0, c1=c1, holdout=holdout)
plan = {f"plain s{s}": ("plain", s) for s in seeds}
plan.update({f"group s{s}": ("group", s) for s in seeds})
plan.update({"no adaptive KL s0": ("no_adaptive_kl", seeds[0]), "no variance s0": ("no_variance", seeds[0]),
             "oracle s0": ("oracle", seeds[0])})  # fmt: skip
trained = {name: chapter.timed(gr.cached_train, dataclasses.replace(rl_config, seed=s),
                               dataclasses.replace(base, method=m))
           for name, (m, s) in plan.items()}  # fmt: skip
runs = {name: run for name, (run, _) in trained.items()}

# %% [markdown]
# What each run cost: its steps, its seconds per step when trained, and the time this build
# took to obtain it (a run found in the cache takes well under its training time).

# %% tags=["hide-input"]
metrics = {name: pd.DataFrame(rl.read_metrics(run)) for name, run in runs.items()}
chapter.table([
    {"run": name, "steps": len(m), "seconds per step (training)": f"{m['seconds'].mean():.2f}",
     "obtained in (s, this build)": f"{trained[name][1]:.1f}"}
    for name, m in metrics.items()
], index="run")  # fmt: skip

# %% [markdown]
# ## Per-group learning curves
#
# The training reward of each hidden group, on the completions sampled at each step (a moving
# average over 10 steps; the labels are read for this figure only), for the first seed of plain
# RLOO, of the group-invariant method and of the oracle.

# %% tags=["hide-input"]
logs = {name: pd.DataFrame(gr.read_group_metrics(run)) for name, run in runs.items()}


def series(name, key, g, scale=1.0):
    """(steps, values) of one logged quantity of one hidden group (steps without the group skipped)."""
    d = logs[name][["step", f"{key}/{g}"]].dropna() if f"{key}/{g}" in logs[name] else pd.DataFrame({"step": [], "v": []})
    return list(d["step"]), list(d.iloc[:, 1] / scale)


shown = [f"plain s{seeds[0]}", f"group s{seeds[0]}", f"oracle s{seeds[0]}"]
figures.log_panels("Training reward per hidden group",
                   {g: {name: series(name, "reward", g) for name in shown} for g in train_groups}).show()

# %% [markdown]
# How to read the curves: each point is the mean reward of the samples of one tone in one
# training batch (about a third of 32 samples), smoothed over 10 steps, so they are noisy. A
# shortcut shows as one tone's curve rising while another's stays flat or falls; the method is
# meant to lift the lowest curve. The held-out evaluation that follows is what the verdicts use.
#
# ## Held-out evaluation
#
# Every policy answers the same held-out prompts (all of them, about 48 per requested tone) with
# the same sampling seed, so per-prompt differences are paired.

# %%
results.update({name: evaluate(str(rl.policy_dir(run))) for name, run in runs.items()})
scores = {name: res.scores(reward) for name, res in results.items()}

# %% [markdown]
# ### The shortcut
#
# Plain RLOO against the SFT policy, per hidden group: the paired difference on each group's
# prompts (both seeds of plain RLOO averaged prompt by prompt). A shortcut shows as gains on some
# groups and losses on others.

# %% tags=["hide-input"]
plain = np.mean([scores[f"plain s{s}"] for s in seeds], axis=0)
method = np.mean([scores[f"group s{s}"] for s in seeds], axis=0)
shortcut = {g: gr.group_gap(plain, scores["sft"], labels, g) for g in groups}
chapter.table([{"group": g + (" (held out)" if g == holdout else ""), "SFT": f"{gr.group_means(scores['sft'], labels, [g])[0]:+.3f}",
                "plain RLOO": f"{gr.group_means(plain, labels, [g])[0]:+.3f}", "paired difference ± se": str(e)}
               for g, e in shortcut.items()], index="group")  # fmt: skip

# %% tags=["hide-input"]
worst_sft = train_groups[int(np.argmin(gr.group_means(scores["sft"], labels, train_groups)))]
chapter.markdown(chapter.shortcut_sentence(shortcut, worst_sft))

# %% [markdown]
# ### Every method, per group
#
# Mean reward per hidden group (± its standard error over that group's prompts), the worst of
# the training groups, and the KL to SFT. The per-group standard errors are over about 48
# prompts each; the verdicts below do not compare these intervals: they use paired statistics,
# the differences between two policies prompt by prompt.

# %% tags=["hide-input"]
chapter.group_table(results, labels, reward, holdout, train_groups)

# %% [markdown]
# ## The inferred groups against the hidden labels
#
# Which samples did the classifier put in the hard group? The final classifier of each
# group-invariant run applied to its own policy's held-out completions: the mean of
# $p_\phi(g_{high} \mid x, y)$ per hidden group. A classifier that found the tones would give the
# hard tones a low $p_{high}$.

# %% tags=["hide-input"]
inferred = chapter.table([{"run": name, **row} for name in runs if name.startswith(("group", "no "))
                          for row in gr.inferred_vs_hidden(runs[name], results[name], labels, reward)])  # fmt: skip
inferred.pivot(index="run", columns="hidden group", values="mean p_high").round(2)

# %% [markdown]
# The same question along training: the mean $p_{high}$ of each hidden group in each training
# batch (first seed of the method), next to the per-sample KL coefficients
# $\beta_i/\beta$ and advantage weights $w_i$ those memberships produced.

# %% tags=["hide-input"]
name = f"group s{seeds[0]}"
panels = {"mean p_high": "p_high", "KL coefficient beta_i / beta": "beta", "advantage weight w_i": "weight"}
figures.log_panels(f"Inferred groups along training ({name})",
                   {title: {g: series(name, key, g, P.beta if key == "beta" else 1.0) for g in train_groups}
                    for title, key in panels.items()}).show()  # fmt: skip

# %% tags=["hide-input"]
agree = inferred[inferred["run"] == name].set_index("hidden group")
hardest = agree.loc[train_groups, "group's reward"].idxmin()
lowest_p = agree.loc[train_groups, "mean p_high"].idxmin()
beta_ratio = {run: np.nanmean(logs[run][[c for c in logs[run] if c.startswith("beta/")]].to_numpy()) / P.beta
              for run in runs if not run.startswith("plain")}  # fmt: skip
chapter.markdown(
    "Averaged over training (steps and tones), the KL coefficient was "
    + ", ".join(f"{ratio:.2f} β for `{run}`" for run, ratio in beta_ratio.items())
    + " (plain RLOO: 1.00 β by construction). Above 1, the adaptive KL pulled towards SFT harder than plain RLOO "
    "on average (most samples were called easy); below 1, less. The KL each policy reached is measured "
    "below and reported beside every comparison.\n\n"
    f"For `{name}`, the training group with the lowest held-out reward is `{hardest}` and the group the classifier "
    f"calls hard most often is `{lowest_p}` (mean p_high {agree.loc[lowest_p, 'mean p_high']:.2f}, against "
    f"{agree.loc[train_groups, 'mean p_high'].max():.2f} for the most 'easy' one): the inferred split "
    + ("points at the hardest requested tone." if hardest == lowest_p else
       "does not single out the hardest requested tone: whatever it separates, it is not mainly the tone asked for.")
)  # fmt: skip

# %% [markdown]
# ## Verdicts
#
# Each claim compares the group-invariant method with plain RLOO, both averaged over their
# seeds prompt by prompt, on the same held-out prompts:
#
# - **worst group**: $\min_g \bar R_g$ over the training tones, method minus plain, with a paired
#   bootstrap over prompts (each replicate draws the same prompts, with their labels, for both);
#   the KL difference is reported beside it, since the claim is at comparable KL;
# - **mean reward**: the paired difference on the training tones' prompts; for this claim only
#   *opposite* (a drop beyond two standard errors) contradicts the paper;
# - **held-out group**: the paired difference on the held-out tone's prompts;
# - **stability across seeds**: the spread of the per-group means across seeds (their standard
#   deviation, averaged over the training tones), plain minus method, bootstrapped over prompts.
#
# Every standard error below is over prompts: it counts the noise of the held-out prompts, not
# the noise of training (see *Numerical noise* at the end of the chapter).

# %%
in_dist = np.isin(labels, train_groups)
worst = gr.worst_group_gap(method, plain, labels, train_groups)
mean_gap = stats.paired_difference(method[in_dist], plain[in_dist])
held = gr.group_gap(method, plain, labels, holdout)
spread = gr.seed_spread_gap([scores[f"plain s{s}"] for s in seeds], [scores[f"group s{s}"] for s in seeds],
                            labels, train_groups)  # fmt: skip
kl_of = {name: res.kls() for name, res in results.items() if name != "sft"}
kl_gap = stats.paired_difference(np.mean([kl_of[f"group s{s}"] for s in seeds], 0),
                                 np.mean([kl_of[f"plain s{s}"] for s in seeds], 0))  # fmt: skip
verdicts = [
    verdict("gi-worst-group", "group-invariant RLOO raises the worst training group's reward over plain RLOO",
            worst, f"worst-group difference, paired bootstrap over {worst.n} held-out prompts, {len(seeds)} seeds each"),
    verdict("gi-mean-reward", "group-invariant RLOO's mean reward on the training tones is at least plain RLOO's",
            mean_gap, f"paired difference over {mean_gap.n} held-out prompts of the training tones"),
    verdict("gi-held-out", f"group-invariant RLOO raises the reward of the held-out tone ({holdout})",
            held, f"paired difference over the {held.n} held-out prompts of that tone"),
    verdict("gi-seed-stability", "group-invariant RLOO's per-group results vary less across seeds than plain RLOO's",
            spread, f"seed spread (plain minus method), paired bootstrap over {len(labels)} prompts"),
]  # fmt: skip
chapter.show_verdicts(verdicts)

# %% tags=["hide-input"]
kl_words = ("at a larger KL" if kl_gap.value > 2 * kl_gap.se else "at a smaller KL" if kl_gap.value < -2 * kl_gap.se
            else "at a KL within two standard errors of plain RLOO's")
predict = {
    "gi-worst-group": ("a higher worst-group reward", ["holds"]),
    "gi-mean-reward": ("no drop in the mean reward", ["holds", "not confirmed"]),
    "gi-held-out": ("a better reward on groups not seen in training", ["holds"]),
    "gi-seed-stability": ("more stable training across seeds", ["holds"]),
}
lines = [f"- `{v.claim_id}`: " + chapter.compare_with_paper(v, *predict[v.claim_id]) for v in verdicts]
lines[0] += f" The method's KL to SFT differs from plain RLOO's by {kl_gap} nats ({kl_words})."
chapter.markdown("\n".join(lines))

# %% [markdown]
# ## The ablations and the oracle
#
# The same paired statistics for every other run against plain RLOO (seed-averaged): worst
# training group, mean over the training tones, the held-out tone, and the KL difference. The
# oracle knows the tones; the ablations keep one of the method's two parts.

# %% tags=["hide-input"]
others = {name: scores[name] for name in runs if not name.startswith("plain")}
chapter.table([
    {"policy": name, "worst group vs plain": str(gr.worst_group_gap(s, plain, labels, train_groups)),
     "mean (training tones) vs plain": str(stats.paired_difference(s[in_dist], plain[in_dist])),
     f"{holdout} (held out) vs plain": str(gr.group_gap(s, plain, labels, holdout)),
     "KL vs plain": str(stats.paired_difference(kl_of[name], np.mean([kl_of[f'plain s{x}'] for x in seeds], 0)))}
    for name, s in others.items()
], index="policy")  # fmt: skip

# %% [markdown]
# The ablations separate the method's two parts: `no adaptive KL` keeps the variance penalty
# with a fixed $\beta$, `no variance` keeps the adaptive $\beta_i$ without the penalty. The
# oracle's penalty uses the true tones, so where it beats the method, better group inference
# would have helped; where it does not, the penalty itself is the limit at this budget. Each of
# these is one seed, so its row is a single draw, compared with the two-seed average of plain
# RLOO, and its standard errors count the prompts, not the training: a gap between two rows can
# be a gap between two draws of the training noise (compare the two seeds of the method).
#
# ## What this chapter cannot show
#
# - **Short runs.** Seven runs must fit a build of a few minutes on two CPU cores, so each has a
#   few dozen steps; the paper trains for thousands. A shortcut that needs longer to form, or a
#   correction that needs longer to act, is invisible here.
# - **Two seeds.** A spread across two seeds is the smallest spread one can compute; the
#   stability verdict is a weak test, and its bootstrap only resamples prompts, not seeds.
# - **A bag-of-words classifier.** The paper's classifier reads the policy's representations; ours
#   reads hashed words of the prompt and the completion. Whether it finds the tones is measured
#   above, not assumed.
# - **One reward, one model.** `tone_fidelity` on a 5M-parameter policy is a toy with a known
#   group structure; the verdicts say what happens in this toy, not in the paper's setting.
# - **Numerical noise.** Runs this short are sensitive to everything, including the order in
#   which floating-point sums are taken: one rounding flip in one sampled token sends a run down
#   another trajectory, so every trained policy is in effect one draw of the training noise. The
#   same chapter built with one torch thread and with two trains slightly different policies, and
#   with data version 4 of `tiny` those builds did not agree on every verdict. Later, a change to
#   the trainer that altered nothing but float rounding (a faster decoding step whose logits equal
#   the model's up to about 1e-6, a packed output projection, a fused optimizer step) changed two
#   of this chapter's four verdicts between consecutive builds, one of them from an estimate more
#   than three standard errors from zero. The standard errors of the verdicts count the noise of
#   the held-out prompts, not of training, so an outcome well beyond two standard errors can
#   still be fragile: read each verdict as what these runs did, not as a settled property of the
#   method. More seeds (`seeds`) and longer runs (`rl_steps`) are the parameters that would
#   settle it.
#
# ## Closing note
#
# What this build measured, claim by claim, and how to reproduce one run of each kind from the
# command line (the chapter's runs are these, trained through the run cache):

# %% tags=["hide-input"]
commands = [gr.train_command(dataclasses.replace(rl_config, seed=s), dataclasses.replace(base, method=m),
                             f"runs/ch5-{m}-s{s}") for m, s in plan.values()]  # fmt: skip
commands.append(f"rsoup eval --policy runs/ch5-group-s{seeds[0]} --rewards {reward} --n {n_eval} --seed {P.seed + 1} --by group --json")
chapter.markdown("\n".join(f"- {v}" for v in verdicts) + "\n\n```bash\n" + "\n".join(commands) + "\n```\n\n"
                 f"Runs of {steps} steps with a learning rate of {rl_config.lr:g} and beta = {P.beta}; "
                 f"{len(seeds)} seeds of plain RLOO and of the method, one of each ablation and of the oracle: "
                 "a short budget, and two seeds are the least from which a spread can be computed, not a "
                 "precise measure of it.")  # fmt: skip
