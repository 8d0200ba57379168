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
# 2. **the front is near MORL's**: for a preference $\mu$, the soup's point rivals the policy
#    trained on the scalarised reward $\sum_i \mu_i r_i$.
#
# This chapter measures both on our review model and judges each of the paper's claims with a
# statistic that carries its own uncertainty. Every policy (the SFT model, the specialists, every
# soup, every MORL run) is evaluated on the *same* held-out prompts with the *same* sampling seed,
# so two policies are compared prompt by prompt (`rsoup_lib.stats`): a difference between two
# soups, or between a soup and the straight line through its endpoints, is a mean of per-prompt
# differences, and a difference between two fronts comes from a bootstrap that resamples the same
# prompts for every point of both. A claim *holds* when its signed statistic exceeds two standard
# errors, is the *opposite* below minus two, and is *not confirmed* in between
# (`rsoup_lib.verdicts`).
#
# Every soup is written into one live model in place (`rsoup_lib.front.Front`: the task vectors
# stay in memory, and each point of a front costs one fused pass over the weights, no reloading),
# so the cost of a front is the cost of evaluating it.
#
# **The two rewards.** We pair `sentiment` (VADER compound score of the review, in [-1, 1]) with
# `conciseness` (1 - min(words, 48) / 48). They can pull in opposite directions: VADER scores the
# sentiment-bearing words a review contains, so more, and more effusive, words can raise it;
# conciseness pays for every word removed, and the emptiest review is the most concise and has a
# neutral sentiment of 0. The first table below checks on the held-out prompts whether training on
# one reward costs the other, rather than asserting it (its last column is the length in words).
#
# **What to expect at this scale.** The published book uses a 5M-parameter review model, about a
# hundred RL steps per policy and 128 held-out prompts. The rewards move, but the comparisons judged
# here can be small, and a difference of a few hundredths can be within two standard errors over
# 128 prompts. A claim that comes out *not confirmed* here says that this build cannot tell the two
# sides apart, not that the paper is wrong; the sentence after each verdict says what the paper
# predicts and whether this build agrees, and both follow the numbers of the build you are reading.
# The standard errors count the prompts, not the training: each policy is one training run, one
# draw of the training noise, and a verdict of any outcome can change when the runs are drawn again
# (see *One training seed* at the end of the chapter).

# %% tags=["parameters"]
profile = "cpu"  # smoke | cpu | gpu: the run sizes of the whole book (`rsoup profiles`)
overrides = {}  # profile fields to change, e.g. {"steps": 500, "policy": "/path/to/any/hf-causal-lm"}
reward_pair = ["sentiment", "conciseness"]  # the two specialists of the soup (theta_1, theta_2)
third_reward = "specificity"  # the third specialist of the simplex
mus = [0.25, 0.5, 0.75]  # MORL preferences: weight of the second reward (one RL run each)
simplex_steps = 3  # the 3-reward simplex grid has step 1/simplex_steps (3: 10 points, centre included)
lora_lambdas = [0.0, 0.25, 0.5, 0.75, 1.0]
lora_steps_fraction = 0.33  # the LoRA pair trains for this share of steps (all of them under LoRA profiles)

# %%
import time

import numpy as np

from rsoup_lib import chapter, figures, merge, pareto, stats
from rsoup_lib.checkpoints import load_adapter, parameters
from rsoup_lib.front import Front
from rsoup_lib.models import load_policy
from rsoup_lib.rl import RLConfig, cached_train, policy_dir, read_metrics
from rsoup_lib.verdicts import outcome, verdict, verdict_table

P = chapter.setup(profile, overrides)
chapter.show_parameters(P, reward_pair=reward_pair, third_reward=third_reward, mus=mus, simplex_steps=simplex_steps)
r1, r2 = reward_pair
all_rewards = [r1, r2, third_reward]


def train(reward, **fields):
    """(run folder, training seconds as recorded); chapter 1's configuration, so the cache hands back its runs."""
    run = cached_train(RLConfig.from_profile(P, reward=reward, **fields), progress=False)
    return run, sum(m["seconds"] for m in read_metrics(run))


def load(name):
    model, tokenizer = load_policy(str(name), device=P.device, dtype=P.dtype)
    return model.eval(), tokenizer


def points(res):
    return chapter.per_prompt(res, [r1, r2])  # an evaluation as per-prompt points of the reward plane, [n, 2]


sft = load(P.policy)
evaluate = chapter.evaluator(P, all_rewards, sft=sft)  # the same prompts and seed for every policy
model, tokenizer = load(P.policy)  # the live model every soup is written into
init = parameters(model)

# %% [markdown]
# ## The specialists
#
# Both endpoints, and the third specialist used for the simplex, come from chapter 1's run cache:
# the configuration is built from the same profile (`RLConfig.from_profile`), so the cache key is
# the same and nothing is trained again. A build that starts with an empty cache trains them here.
# `parameters` copies a loaded policy's weights (`rsoup_lib.checkpoints`), named as the live model
# names them, so that the front below can hold them as task vectors.

# %%
runs, seconds = {}, {}
for r in all_rewards:
    runs[r], seconds[r] = train(r)
specialists = {r: parameters(load(policy_dir(runs[r]))[0]) for r in all_rewards}
sft_res = evaluate(sft)

# %% [markdown]
# ## The rewarded-soup front
#
# With two specialists the soup is one line segment in weight space,
#
# $$\theta(\lambda) = (1-\lambda)\,\theta_1 + \lambda\,\theta_2, \qquad \lambda \in [0, 1],$$
#
# where $\theta_1$ is the specialist of the first reward (`sentiment` by default) and $\theta_2$
# that of the second (`conciseness`). The library's `merge.lerp` is this equation for any number of
# state dicts:

# %%
chapter.show_source(merge.lerp)
chapter.show_source(Front.lerp, "the same soup written in place into the live model")

# %% [markdown]
# `Front.lerp` writes $\theta_{\text{init}} + \sum_i \lambda_i (\theta_i - \theta_{\text{init}})$,
# which equals $\sum_i \lambda_i \theta_i$ because the weights sum to one. We sweep $\lambda$ over a
# regular grid of $[0, 1]$ (the profile's `n_lambdas` points) and, in addition, at every MORL
# preference $\mu$, so that the soup and MORL can later be compared at the same preferences. The
# endpoints $\lambda = 0$ and $\lambda = 1$ are the specialists themselves; the table after the
# sweep gives their held-out rewards and the SFT policy's (mean ± one standard error over prompts),
# with the KL to the SFT policy, distinct-2 and the mean length in words.

# %%
grid = [round(float(x), 4) for x in np.linspace(0.0, 1.0, P.n_lambdas)]
lambdas = sorted(set(grid) | {round(float(mu), 4) for mu in mus})
front = Front.from_state_dicts(model, init, [specialists[r1], specialists[r2]])
soup, t0 = {}, time.perf_counter()
for lam in lambdas:
    front.lerp([1 - lam, lam])
    soup[lam] = evaluate((model, tokenizer))
soup_seconds = time.perf_counter() - t0
spec1, spec2 = soup[0.0], soup[1.0]
chapter.results_table({"SFT": sft_res, f"trained on {r1}": spec1, f"trained on {r2}": spec2}, reward_pair)

# %% [markdown]
# The two specialists should trade one reward for the other: the first beats the second on the
# first reward, and the second beats the first on the second reward. Both differences are paired
# over prompts (`stats.paired_difference`), so the sentence below follows the measured signs.

# %% tags=["hide-input"]
d1 = stats.paired_difference(spec1.scores(r1), spec2.scores(r1))
d2 = stats.paired_difference(spec2.scores(r2), spec1.scores(r2))
tension = outcome(d1) == "holds" and outcome(d2) == "holds"
chapter.markdown(f"On `{r1}`, its specialist minus the other: {d1}; on `{r2}`, its specialist minus the other: {d2} "
                 f"(paired over {d1.n} prompts). " + ("Each specialist leads on its own reward and trails on the "
                 "other's, so there is a trade-off to trace." if tension else "The specialists do **not** clearly "
                 "trade one reward for the other here (at least one of the two differences is not more than two "
                 "standard errors in its specialist's favour), so the front below is short."))  # fmt: skip
fig = figures.new(f"Rewarded-soup front (λ = weight of the {r2} specialist)", x=f"{r1} (held-out mean)",
                  y=f"{r2} (held-out mean)")  # fmt: skip
figures.front(fig, [soup[lam] for lam in lambdas], r1, r2, "rewarded soup θ(λ)", [f"λ={lam}" for lam in lambdas],
              color=figures.color(0))  # fmt: skip
figures.front(fig, [sft_res], r1, r2, "SFT init", mode="markers", symbol="x", size=11, color="black")
fig.show()

# %% [markdown]
# Each point carries one standard error over prompts in both directions; consecutive points are
# consecutive $\lambda$, from the first reward's specialist ($\lambda = 0$) to the second's
# ($\lambda = 1$). Hover a point to read its $\lambda$. A front that bows outwards, away from the
# origin, beats the straight chord between the specialists; one that sags towards the origin
# loses to it. The next section measures which, reward by reward.
#
# ## Linear mode connectivity
#
# For each reward $k$ and each $\lambda$, the **LMC gap** is the soup's reward minus the straight
# line between the endpoints' rewards,
#
# $$g_k(\lambda) = R_k(\theta(\lambda)) - \big[(1-\lambda)\, R_k(\theta_1) + \lambda\, R_k(\theta_2)\big],$$
#
# and LMC says $g_k(\lambda) \ge 0$: the soup is no worse than the line, there is no barrier of low
# reward between the two specialists. The soup and both endpoints are evaluated on the same
# prompts, so the gap is computed prompt by prompt, $g_{k,i}(\lambda) = R_{k,i}(\theta(\lambda)) -
# [(1-\lambda) R_{k,i}(\theta_1) + \lambda R_{k,i}(\theta_2)]$ for prompt $i$, and its standard
# error is that of a paired mean: the prompt-to-prompt variation that the three policies share
# cancels.

# %%
chapter.show_source(stats.lmc_gap)

# %% [markdown]
# The figure's error bars are these per-$\lambda$ paired errors. The *verdict* needs one number per
# reward: the mean gap over the interior grid points ($0 < \lambda < 1$; at the endpoints the gap is
# zero by construction). The $\lambda$ points share their prompts, so their gaps are correlated and
# must not be treated as independent measurements: the mean is taken per prompt first,
# $G_i = \frac{1}{m}\sum_j g_{k,i}(\lambda_j)$, and its standard error is that of the mean of the
# $G_i$.

# %%
chapter.show_source(stats.lmc_mean_gap)

# %%
interior = [lam for lam in grid if 0 < lam < 1]
lmc = {r: {lam: stats.lmc_gap(soup[lam].scores(r), spec1.scores(r), spec2.scores(r), lam) for lam in grid}
       for r in reward_pair}  # fmt: skip
lmc_mean = {r: stats.lmc_mean_gap([soup[lam].scores(r) for lam in grid], spec1.scores(r), spec2.scores(r), grid)
            for r in reward_pair}  # fmt: skip

# %% tags=["hide-input"]
figures.lmc("LMC: the soup vs the line between its endpoints", grid, {
    r: ([soup[lam].rewards[r]["mean"] for lam in grid], [soup[lam].rewards[r]["stderr"] for lam in grid],
        [lmc[r][lam] for lam in grid]) for r in reward_pair}).show()  # fmt: skip
chapter.table([{"λ": lam, **{f"gap in {r}": str(lmc[r][lam]) for r in reward_pair}} for lam in interior], index="λ")

# %% [markdown]
# The verdict for each reward is judged on the mean gap. The claim is phrased so that *holds* means
# the soup lies significantly **above** the line; *not confirmed* means it is within two standard
# errors of the line (no barrier, but no gain over the line that this build can tell from zero either);
# *opposite* means it lies significantly **below**: a barrier, LMC fails for that reward.

# %% tags=["hide-input"]
lmc_verdicts = [verdict(f"lmc-{r}", f"the soup's `{r}` lies above the straight line between its endpoints' (mean "
                        f"LMC gap over the {len(interior)} interior λ of the grid)", lmc_mean[r],
                        f"per-prompt mean gap over λ ∈ {interior}, paired over {lmc_mean[r].n} prompts")
                for r in reward_pair]  # fmt: skip
for r, v in zip(reward_pair, lmc_verdicts):
    worst = min(interior, key=lambda lam: lmc[r][lam].value) if interior else None
    reading = {"holds": f"the soup's `{r}` lies above the line ({v.estimate})", "not confirmed": f"the soup's `{r}` is "
               f"within two standard errors of the line ({v.estimate}): no barrier, but no gain distinguishable from "
               "zero either, on average over λ",
               "opposite": f"the soup's `{r}` falls below the line ({v.estimate}): a barrier between the specialists"}
    chapter.markdown(f"{v}\n\n" + (f"Its smallest gap is at λ = {worst}: {lmc[r][worst]}. " if worst is not None else "")
                     + chapter.compare_with_paper(v, "that the soup is at least as good as the line (no barrier, and "
                                                  "usually above it)", ["holds", "not confirmed"], reading))  # fmt: skip

# %% [markdown]
# ## MORL: one run per preference
#
# The baseline the soup claims to approximate: for each preference $\mu$, an RL run on the
# scalarised reward $(1-\mu)\, r_1 + \mu\, r_2$ with the same init, hyperparameters, seed and number
# of steps as each specialist. MORL needs one training per preference; the soup needs one per
# reward ($N = 2$ here) and then only evaluations. Each MORL policy is evaluated exactly like the
# soups: same prompts, same sampling seed.

# %%
morl, morl_seconds = {}, {}
for mu in mus:
    run, morl_seconds[mu] = train(f"{r1}:{1 - mu},{r2}:{mu}")
    morl[mu] = evaluate(str(policy_dir(run)))

# %% [markdown]
# ### Hypervolume at equal points
#
# A front is summarised by its **hypervolume**: the area of the reward plane that its points
# dominate, bounded below by a reference point $z$,
#
# $$\mathrm{HV}(F) = \operatorname{area}\Big(\bigcup_{p \in F} [z_1, p_1] \times [z_2, p_2]\Big).$$
#
# `pareto.hypervolume_2d` computes it from the mean points (sorted by the first reward, each point
# adds the strip it dominates above the previous ones), and `stats.hypervolume_difference` gives
# the difference of two fronts' hypervolumes its uncertainty:

# %%
chapter.show_source(pareto.hypervolume_2d)
chapter.show_source(stats.hypervolume_difference)

# %% [markdown]
# Three choices make the comparison fair.
#
# - **Equal points.** A front with more points covers more area by construction, so both fronts get
#   the same preferences: the MORL front is {specialist 1 ($\mu = 0$), the MORL runs, specialist 2
#   ($\mu = 1$)}, and the soup front is the soup at $\lambda \in \{0\} \cup \{\mu\} \cup \{1\}$ (the
#   reason the soup was also evaluated at every $\mu$). The specialists are on both sides.
# - **One reference point.** Per reward, the worst mean over the points of both fronts, lowered by a
#   tenth of that reward's range so that the extreme points add area too (`chapter.hv_reference`).
#   It is computed once from the full data and held fixed across bootstrap replicates: moving it
#   with the data would add noise that has nothing to do with the fronts.
# - **Paired bootstrap.** Every replicate draws one set of prompts and recomputes the mean point of
#   every policy of both fronts on it, so the shared endpoints move alike in both fronts and what
#   remains is the uncertainty of the interior points' difference. Each front's own hypervolume is
#   reported with its interval too; those intervals carry the prompt-to-prompt variation that the
#   paired difference cancels, so whether the fronts differ is read from the difference, not from
#   whether the two intervals overlap.

# %%
at_mu = [0.0] + [round(float(mu), 4) for mu in mus] + [1.0]
soup_front = [points(soup[lam]) for lam in at_mu]
morl_front = [points(spec1)] + [points(morl[mu]) for mu in mus] + [points(spec2)]
ref = chapter.hv_reference([soup_front, morl_front])
hv = {"rewarded soup": stats.hypervolume(soup_front, ref), "MORL": stats.hypervolume(morl_front, ref)}
hv_diff = stats.hypervolume_difference(soup_front, morl_front, ref)

# %% tags=["hide-input"]
fig = figures.new("Soup vs MORL at the same preferences",
                  x=f"{r1} (held-out mean)", y=f"{r2} (held-out mean)", height=480)  # fmt: skip
figures.front(fig, [soup[lam] for lam in lambdas], r1, r2, "rewarded soup, every λ", [f"λ={lam}" for lam in lambdas],
              color=figures.color(0), size=5)  # fmt: skip
figures.front(fig, [soup[lam] for lam in at_mu[1:-1]], r1, r2, "soup at λ = μ", [f"λ={lam}" for lam in at_mu[1:-1]],
              mode="markers", size=12, color=figures.color(0), symbol="circle-open")  # fmt: skip
figures.front(fig, [morl[mu] for mu in mus], r1, r2, "MORL run", [f"μ={mu}" for mu in mus], mode="markers",
              symbol="diamond", size=10, color=figures.color(1))  # fmt: skip
figures.front(fig, [sft_res], r1, r2, "SFT init", mode="markers", symbol="x", size=11, color="black")
fig.show()
chapter.table([{"front": name, "points": len(at_mu), "hypervolume": str(e), "95% interval": e.interval(),
                "reference point": f"({ref[0]:+.3f}, {ref[1]:+.3f})"} for name, e in hv.items()], index="front")  # fmt: skip

# %% [markdown]
# The verdict is judged on the paired difference, soup minus MORL. The paper finds the two fronts
# close, MORL at most slightly ahead; we read "slightly" as less than a tenth of MORL's hypervolume,
# so that a significant but small MORL advantage still agrees with the paper.

# %% tags=["hide-input"]
v_hv = verdict("soup-vs-morl", f"the rewarded soup at λ ∈ {at_mu} dominates more of the reward plane than MORL at "
               "the same preferences (hypervolume difference soup − MORL, the specialists in both fronts)", hv_diff,
               f"paired bootstrap over {hv_diff.n} prompts, one fixed reference point")  # fmt: skip
morl_lead = -hv_diff.value / hv["MORL"].value if hv["MORL"].value > 0 else float("nan")
chapter.markdown(f"{v_hv}\n\n" + chapter.compare_with_paper(
    v_hv, "that the soup's front approximates MORL's, MORL at most slightly ahead",
    ["not confirmed"] + (["opposite"] if morl_lead < 0.1 else []), {
        "holds": "the soup covers more of the plane than MORL, in the soup's favour beyond what the paper reports",
        "not confirmed": "the two hypervolumes are within two standard errors of each other",
        "opposite": f"MORL covers more of the plane, by {morl_lead:.0%} of its hypervolume",
    }))  # fmt: skip

# %% [markdown]
# ### Distance of the MORL policies to the soup front
#
# The hypervolume summarises a whole front in one number; the distance asks, policy by policy,
# whether MORL reaches trade-offs the soup cannot. The signed distance from a point to a front's
# curve (`pareto.distance_to_front`) is positive when the point lies beyond the curve and negative
# behind it (dominated by it). The curve is the polyline through the soup's **Pareto-optimal**
# points only (`pareto.front_polyline`: a dominated soup point is not part of the front), over every
# evaluated $\lambda$. Each MORL policy's distance, and their mean, are bootstrapped jointly with
# the soup front on the same prompts; the mean is recomputed per replicate because the distances
# share their prompts and are not independent:

# %%
chapter.show_source(stats.mean_distance_to_front)

# %%
soup_all = [points(soup[lam]) for lam in lambdas]
dist = {mu: stats.distance_to_front(points(morl[mu]), soup_all) for mu in mus}
mean_dist = stats.mean_distance_to_front([points(morl[mu]) for mu in mus], soup_all)

# %% tags=["hide-input"]
where = {"holds": "beyond it", "opposite": "behind it", "not confirmed": "on it (within 2 se)", "untested": "n/a"}
chapter.table([{"μ": mu, "distance to the soup front": str(dist[mu]), "95% interval": dist[mu].interval(),
                "position": where[outcome(dist[mu])]} for mu in mus], index="μ")  # fmt: skip

# %% [markdown]
# The paper predicts that MORL is at most slightly beyond the soup front. A distance is in reward
# units; as its scale we take the distance between the two specialists in the reward plane (the
# length of the trade-off the front spans), and read "slightly" as less than a tenth of it.

# %% tags=["hide-input"]
v_dist = verdict("morl-beyond-soup", "the MORL policies lie beyond the soup front (mean signed distance of the "
                 f"{len(mus)} MORL policies to the soup's Pareto polyline)", mean_dist,
                 f"joint bootstrap of the MORL points and the soup front over {mean_dist.n} prompts")  # fmt: skip
span = float(np.linalg.norm(np.diff(stats.positions([points(spec1), points(spec2)]), axis=0)))
share = abs(mean_dist.value) / span if span > 0 else float("nan")
chapter.markdown(f"{v_dist}\n\n" + chapter.compare_with_paper(
    v_dist, "that MORL's policies lie at most slightly beyond the soup front",
    ["not confirmed"] + (["holds"] if share < 0.1 else []), {
        "holds": f"they lie beyond it by {share:.0%} of the distance between the specialists ({span:.3f})",
        "not confirmed": "they lie on the soup front within two standard errors",
        "opposite": f"the soup front dominates them ({share:.0%} of the distance between the specialists behind it)",
    }))  # fmt: skip

# %% [markdown]
# ### Cost
#
# The soup's price is paid once, in the $N$ specialist trainings; every further preference is one
# evaluation. MORL pays one training per preference. The seconds below are those recorded when
# each run was trained (the cache keeps them), the soup's evaluations are timed in this build.

# %% tags=["hide-input"]
rs_cost, morl_cost = seconds[r1] + seconds[r2], sum(morl_seconds.values())
chapter.markdown(
    f"**Rewarded soup**: {len(reward_pair)} trainings, one per reward ({rs_cost:.0f} s as recorded, shared with "
    f"chapter 1), then {len(lambdas)} evaluations ({soup_seconds:.0f} s in this build, {soup_seconds / len(lambdas):.1f} s "
    f"per point). **MORL**: {len(mus)} trainings, one per preference ({morl_cost:.0f} s as recorded, "
    f"{morl_cost / len(mus):.0f} s per preference), for {len(mus)} points; a new preference costs a new training."
)  # fmt: skip

# %% [markdown]
# ## Three rewards: a simplex front
#
# With $N = 3$ specialists (the two above and `specificity`), $\lambda$ ranges over a grid of the
# simplex, $\lambda = (\lambda_1, \lambda_2, \lambda_3)$ with step `1/simplex_steps`. One live model,
# three task vectors in memory; each point is written in place by the same `Front.lerp`. Each
# panel below colours the simplex by one reward (the number beside a point is its held-out mean);
# a corner is the specialist of the reward it names, the centre the uniform soup, and a red ring
# marks the soups that are Pareto-optimal over the three rewards at once.

# %%
simplex = [(i / simplex_steps, j / simplex_steps, (simplex_steps - i - j) / simplex_steps)
           for i in range(simplex_steps + 1) for j in range(simplex_steps + 1 - i)]  # fmt: skip
front3 = Front.from_state_dicts(model, init, [specialists[r] for r in all_rewards])
soup3 = []
for w in simplex:
    front3.lerp(list(w))
    soup3.append(evaluate((model, tokenizer)))
front3.reset()

# %% tags=["hide-input"]
pareto3 = pareto.pareto_mask([[res.rewards[r]["mean"] for r in all_rewards] for res in soup3], (True, True, True))
figures.ternary("Simplex front, one panel per reward", simplex, soup3, all_rewards, ring=pareto3).show()
centre = min(range(len(simplex)), key=lambda i: sum((x - 1 / 3) ** 2 for x in simplex[i]))
corner = {r: simplex.index(tuple(float(i == j) for j in range(3))) for i, r in enumerate(all_rewards)}
gaps3 = {r: stats.paired_difference(soup3[centre].scores(r), soup3[corner[r]].scores(r)) for r in all_rewards}
relation = {"holds": "above", "opposite": "below", "not confirmed": "within 2 se of", "untested": "not comparable to"}
chapter.markdown(
    f"{sum(pareto3)} of the {len(simplex)} simplex soups {'is' if sum(pareto3) == 1 else 'are'} Pareto-optimal over "
    f"the three rewards. The most central soup, λ = ({', '.join(f'{x:.2f}' for x in simplex[centre])}), minus each "
    "reward's own specialist (paired over prompts): "
    + "; ".join(f"`{r}` {gaps3[r]} ({relation[outcome(gaps3[r])]} the specialist)" for r in all_rewards) + "."
)  # fmt: skip

# %% [markdown]
# ## Samples along the front
#
# The same held-out prompts and sampling seed at every $\lambda$: how the review changes as the soup
# moves from the first specialist ($\lambda = 0$) through the middle of the grid to the second
# ($\lambda = 1$). Because the sampling stream is the same, a change between two rows comes from the
# weights, not from a different draw (each token is drawn by inverting the next-token distribution
# with the same uniform number): where two rows agree token for token, the interpolation has not
# moved those distributions enough to change the draw.

# %% tags=["hide-input"]
shown = {f"λ = {lam}": soup[lam] for lam in (grid[0], grid[len(grid) // 2], grid[-1])}
for i in range(min(2, len(spec1.samples))):
    chapter.samples_table(shown, i)

# %% [markdown]
# ## LoRA: merging the weight deltas vs averaging A and B
#
# With LoRA each policy is the base plus $\Delta W_i = s\, B_i A_i$ on the adapted layers. The
# faithful soup interpolates the deltas,
#
# $$\Delta W(\lambda) = \sum_i \lambda_i\, s\, B_i A_i,$$
#
# which is linear in $\lambda$ and is exactly the soup equation applied to the merged weights:

# %%
chapter.show_source(merge.lora_deltas)

# %% [markdown]
# The official rewarded-soups code averaged A and B separately,
#
# $$\Delta W_{AB}(\lambda) = s\, \Big(\sum_i \lambda_i B_i\Big)\Big(\sum_i \lambda_i A_i\Big),$$
#
# which adds cross terms $\lambda_i \lambda_j B_i A_j$ and is quadratic in $\lambda$:

# %%
chapter.show_source(merge.lora_ab_lerp)

# %% [markdown]
# For two adapters the error of the shortcut has a closed form: expanding the product,
#
# $$\Delta W_{AB}(\lambda) - \Delta W(\lambda) = -\,s\,\lambda (1-\lambda)\,(B_1 - B_2)(A_1 - A_2).$$
#
# It vanishes at the endpoints, is largest at $\lambda = 1/2$, and is small when the two adapters'
# $A$ matrices stay close. Our LoRA runs share their seed, hence their initial $A$ (and $B = 0$), so
# the shortcut's error grows only as far as training moves the two $A$ matrices apart: how far
# that is at this scale is measured below rather than assumed.
#
# Both merges agree at the endpoints. We train a LoRA variant of the two specialists (same hyperparameters,
# `lora=True`) and compare the two merges on the same $\lambda$ grid, by the relative distance
# $\lVert \Delta W_{AB} - \Delta W \rVert / \lVert \Delta W \rVert$ between the merged deltas and by the
# difference of their fronts' hypervolumes (both fronts share their endpoints; one reference point,
# the same bootstrap as above). To keep the chapter within the CPU budget the LoRA pair trains for a
# share `lora_steps_fraction` of the steps (both members alike, so the comparison stays fair); when
# the book already runs with LoRA (the `gpu` profile) the specialists above are reused as they are.

# %%
lora_steps = P.steps if P.lora else max(1, round(P.steps * lora_steps_fraction))
lora_runs = {r: train(r, lora=True, steps=lora_steps)[0] for r in reward_pair}
(a1, config), (a2, _) = [load_adapter(lora_runs[r] / "adapter") for r in reward_pair]
alpha, rslora = config["lora_alpha"], bool(config.get("use_rslora", False))
base, base_tokenizer = load(P.policy)
base_params = parameters(base)
deltas = [merge.lora_deltas(a, alpha, rslora) for a in (a1, a2)]  # Delta W_i = s B_i A_i
ab_deltas = {lam: merge.lora_deltas(merge.lora_ab_lerp([a1, a2], [1 - lam, lam]), alpha, rslora) for lam in lora_lambdas}
delta_front = Front(base, deltas)
lora = {"ΔW merge": {}, "A/B average": {}}
for lam in lora_lambdas:
    delta_front.lerp([1 - lam, lam])  # base + sum_i lambda_i s B_i A_i, in place
    lora["ΔW merge"][lam] = evaluate((base, base_tokenizer))
    Front(base, [ab_deltas[lam]], init=base_params).liti(1.0)  # base + s (sum_i lambda_i B_i)(sum_i lambda_i A_i)
    lora["A/B average"][lam] = evaluate((base, base_tokenizer)) if 0 < lam < 1 else lora["ΔW merge"][lam]
delta_front.reset()
lora_fronts = {name: [points(res) for res in by_lam.values()] for name, by_lam in lora.items()}
lora_ref = chapter.hv_reference(list(lora_fronts.values()))
lora_hv = {name: stats.hypervolume(f, lora_ref) for name, f in lora_fronts.items()}
lora_diff = stats.hypervolume_difference(lora_fronts["ΔW merge"], lora_fronts["A/B average"], lora_ref)

# %% tags=["hide-input"]
fig = figures.new(f"LoRA soups ({lora_steps} step{'s' * (lora_steps != 1)}): ΔW merge vs A/B average", x=r1, y=r2)
for i, (name, by_lam) in enumerate(lora.items()):
    figures.front(fig, list(by_lam.values()), r1, r2, f"{name} (HV {lora_hv[name]})",
                  [f"λ={lam}" for lam in by_lam], color=figures.color(2 + i))  # fmt: skip
fig.show()
rel_diff = {lam: chapter.relative_difference(ab_deltas[lam], merge.lerp(deltas, [1 - lam, lam])) for lam in lora_lambdas}
chapter.table([{"λ": lam, "‖ΔW_AB − ΔW‖ / ‖ΔW‖": round(rel_diff[lam], 3)} for lam in lora_lambdas], index="λ")

# %% [markdown]
# The claim is phrased from the book's side: the exact delta merge should be at least as good as
# the A/B shortcut, since the shortcut is not the soup of the method's equation.

# %% tags=["hide-input"]
v_lora = verdict("lora-delta-vs-ab", "merging the LoRA deltas ΔW covers more of the reward plane than averaging A "
                 f"and B separately (hypervolume difference on λ ∈ {lora_lambdas})", lora_diff,
                 f"paired bootstrap over {lora_diff.n} prompts, one fixed reference point")  # fmt: skip
mid = min(lora_lambdas, key=lambda lam: abs(lam - 0.5))
chapter.markdown(
    f"{v_lora}\n\nAt λ = {mid}, averaging A and B moves the merged delta by {rel_diff[mid]:.0%} of its norm. "
    + chapter.compare_with_paper(v_lora, "no difference (its code averages A and B and treats the result as the "
                                 "rewarded soup)", ["not confirmed"])
)  # fmt: skip

# %% [markdown]
# ## What this chapter can and cannot show
#
# The paper fine-tunes LLaMA-7B with LoRA and PPO against learned reward models; this chapter
# fine-tunes the book's 5-million-parameter review model with RLOO against rule-based proxy
# rewards, for the profile's number of steps. The mechanism under test is the same (a shared
# initialisation, one run per reward, a straight line in weight space between them), and so are
# the comparisons, but three limits of the scale bear on how to read the verdicts.
#
# - **One training seed.** Every RL run of the book uses the profile's seed, so each specialist
#   and each MORL policy is a single draw of its training. The standard errors cover the
#   held-out prompts and the sampled completions, not the variation from one training run to
#   the next; a second seed could move an endpoint, and with it the line the LMC gap is measured
#   against. The locomotion chapter trains several seeds and shows how large that spread can be.
#   Even the order of floating-point sums is enough to draw the runs again: a rounding flip in one
#   sampled token sends a training run down another path. This chapter built with one torch thread
#   and with two (same data, same seed) did not agree on every verdict when it was written, and a
#   later change of the trainer that altered its sampling only at the level of float rounding (a
#   faster decoding step) turned both LMC verdicts from *not confirmed* into *holds*. Read every
#   outcome as evidence about this draw of the policies, not only the ones near two standard errors.
# - **One completion per prompt.** Each policy answers each held-out prompt once, with the same
#   random stream for every policy. Pairing removes what the prompts share; what is left is the
#   sampling noise of two different policies, which is why the paired and unpaired errors can
#   come out close (chapter 1 compares the two).
# - **Hypervolume depends on its reference point.** The point is fixed from all the evaluated
#   policies before any bootstrap, 10% of each reward's range below the worst of them, and the
#   same for both fronts; a different choice changes the hypervolumes but not which front covers
#   a region the other does not.
#
# - **Cost is measured, not modelled.** The training seconds under *Cost* are the ones each
#   run recorded when it was trained (a run found in the cache keeps its original time), and the
#   evaluation seconds are this build's. On a GPU with a larger model both grow, but their ratio,
#   one evaluation per soup point against one training per MORL point, is what the paper's
#   argument rests on.
#
# What the chapter can show at this scale is whether the straight line between two specialists
# keeps their rewards (LMC), whether training one policy per preference buys anything the
# interpolation does not reach (MORL), and what the cost of each is, with the uncertainty of each
# comparison stated next to it.

# %% [markdown]
# ## Verdicts
#
# Every claim this chapter judged, with the statistic behind it (each verdict line is printed once,
# in its section above). "Not confirmed" is not "false": it says that at this scale, with these
# prompts, the difference is within two standard errors. Each statistic pairs the policies on the
# same prompts: the LMC gaps are per-prompt differences, the front comparisons bootstraps that
# resample the same prompts for every point, so the uncertainty shown is that of the comparison
# itself, not of the two sides taken separately. It is the uncertainty over prompts only: the
# training noise of each run is not in it (*One training seed* above).

# %% tags=["hide-input"]
verdicts = lmc_verdicts + [v_hv, v_dist, v_lora]
chapter.markdown(verdict_table(verdicts))

# %% [markdown]
# ## What carries over
#
# The rewarded soup turns $N$ trainings into a whole front of policies, one evaluation per
# preference, if the specialists are linearly connected and the front is close to MORL's. Chapter 3
# (WARP) uses the same ingredients inside a single reward's training: several RL runs from a shared
# initialisation, merged by spherical interpolation (SLERP) instead of the straight line, and then
# interpolated back towards the initialisation (LITI). Its fronts are compared with the same
# statistics as here: paired over prompts, bootstrapped on the same prompts for every point.
