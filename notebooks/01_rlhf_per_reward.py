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
# reward actually teaches, including whether the policy learns to game it. It tests one claim per
# reward, the premise the next chapters build on: *training on a reward raises that reward on
# held-out prompts, compared with the SFT policy the run started from.*
#
# The parameters below are the profile (chapter 0 describes them) and the rewards this chapter
# trains on. Every RL run is sized from the profile alone, so chapters 2 and 3, built with the
# same profile, find these runs in the run cache instead of training them again.

# %% tags=["parameters"]
profile = "cpu"  # smoke | cpu | gpu: the run sizes of the whole book (`rsoup profiles`)
overrides = {}  # profile fields to change, e.g. {"steps": 500, "policy": "/path/to/any/hf-causal-lm"}
rewards = ["sentiment", "readability", "conciseness", "specificity"]  # one RL run per reward
n_show = 3  # held-out prompts whose completions are shown side by side

# %%
import pandas as pd

from rsoup_lib import chapter, figures, hacking, rl, stats
from rsoup_lib import rewards as reward_fns
from rsoup_lib.models import load_policy
from rsoup_lib.prompts import load_prompts
from rsoup_lib.verdicts import verdict

P = chapter.setup(profile, overrides)
chapter.show_parameters(P, rewards=rewards)

# %% [markdown]
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
# baseline (RLOO, {cite}`ahmadian2024back`): for $k$ completions of the same prompt,
#
# $$A_j = r_\beta(x, y_j) - \frac{1}{k-1}\sum_{i\neq j} r_\beta(x, y_i), \qquad
#   \mathcal{L}(\theta) = -\frac{1}{k}\sum_j A_j \log \pi_\theta(y_j \mid x).$$
#
# No critic, no clipping: the baseline alone reduces the variance. The advantage is one line
# of the library; a completion that scores better than its $k-1$ siblings is pushed up, one
# that scores worse is pushed down, and a prompt whose completions all score alike teaches
# nothing:

# %% tags=["hide-input"]
chapter.show_source(rl.rloo_advantages, "the leave-one-out advantage A_j")

# %% [markdown]
# The loss of one micro-batch puts the three equations together. The KL shaping is the line
# `shaped = scores - betas * kl_anchor`: `kl_anchor` is the sequence-level sum
# $\sum_t \log\pi_\theta - \log\pi_{\text{sft}}$ (detached, so it is part of the reward, not a
# path for the gradient), `betas` is $\beta$ for every completion (the group-robust chapter
# later makes it vary per completion), and the anchor is the frozen SFT policy here (WARP's EMA
# in chapter 3). The gradient flows only through `seq_logp`, the completion's log-probability.

# %% tags=["hide-input"]
chapter.show_source(rl.rloo_loss, "steps 3-5: KL shaping, RLOO advantages, REINFORCE loss")

# %% [markdown]
# ## The rewards
#
# | reward | range | what it scores |
# |---|---|---|
# | `sentiment` | [-1, 1] | VADER {cite}`hutto2014vader` compound score of the review |
# | `readability` | [0, 1] | Flesch reading ease / 100 (short words, short sentences) |
# | `conciseness` | [0, 1] | 1 - min(words, 48) / 48 |
# | `specificity` | [0, 1] | distinct film terms (plot, acting, director, score, ...) / 4, capped at 1 |
#
# All four are *proxies*: cheap rules that a policy can satisfy in ways a reader would not
# call a better review. Reading their code shows how. `sentiment` scores only the completion's
# words, not whether they answer the request (a prompt asking for a negative review gets the
# same score for a glowing one). `conciseness` is highest for an empty answer.
# `specificity` counts distinct film terms, whether or not they form a sentence. `readability`
# rewards short words in short sentences, with syllables counted by a vowel-group rule.

# %% tags=["hide-input"]
chapter.show_source(reward_fns._sentiment)
chapter.show_source(reward_fns.flesch_reading_ease)
chapter.show_source(reward_fns._readability)
chapter.show_source(reward_fns._conciseness)
chapter.show_source(reward_fns._specificity)
chapter.show_constant(reward_fns, "FILM_TERMS", "the words `specificity` counts")

# %% [markdown]
# ## Training one policy per reward
#
# Same init, same hyperparameters, same seed (so the same prompt order and the same sampling
# stream at step 0); only `reward` changes. `RLConfig.from_profile` copies the profile's RL
# fields, and `cached_train` returns the run folder, training only when no run with exactly
# this configuration is in the cache.

# %%
configs = {r: rl.RLConfig.from_profile(P, reward=r) for r in rewards}
trained = {r: chapter.timed(rl.cached_train, cfg, progress=False) for r, cfg in configs.items()}
runs = {r: run for r, (run, _) in trained.items()}
metrics = {r: pd.DataFrame(rl.read_metrics(run)) for r, run in runs.items()}

# %% [markdown]
# The cost of each run: its steps, the time per step when it was trained, and how long this
# build took to obtain it (a run found in the cache takes well under its training time).

# %% tags=["hide-input"]
cached = {r: trained[r][1] < 0.5 * m["seconds"].sum() for r, m in metrics.items()}
chapter.table([
    {"reward": r, "steps": len(m), "seconds per step (training)": f"{m['seconds'].mean():.2f}",
     "obtained in (s, this build)": f"{trained[r][1]:.1f}" + (" (cached)" if cached[r] else "")}
    for r, m in metrics.items()
], index="reward")  # fmt: skip

# %% [markdown]
# ## Learning curves
#
# The training reward (on the completions sampled at each step, a moving average over 10 steps,
# `verdicts.smooth`) and the KL to the SFT policy, estimated on the same completions as
# $\sum_t \log\pi_\theta(y_t\mid\cdot) - \log\pi_{\text{sft}}(y_t\mid\cdot)$. These are
# training-batch estimates: noisy, and measured on the prompts the policy is trained on. The
# held-out evaluation below is what the verdicts use.

# %% tags=["hide-input"]
figures.learning_curves(metrics).show()

# %% [markdown]
# ## KL-reward trajectories
#
# Each run traced in the plane that matters for alignment: how much reward it bought for how far
# it moved from the SFT policy. The KL to SFT is the x-axis of every KL-reward figure of the
# book (the objective above: a reward is only worth what it cost in KL). Rewards are
# rescaled to [0, 1] by their documented range so that the four runs share one axis; the step
# shows on hover.

# %% tags=["hide-input"]
figures.kl_reward_trajectories(metrics).show()

# %% [markdown]
# ## Held-out evaluation
#
# Every policy (and the SFT init) is evaluated on the same held-out prompts with the same
# sampling seed (one completion per prompt), on **all four** rewards, with the KL to SFT
# estimated by Monte Carlo on those completions. `chapter.evaluator` fixes these conventions
# (the profile's prompts and length, the seed `P.seed + 1` for every policy), and every
# completion is kept for the reward-hacking detectors at the end.

# %%
sft = load_policy(P.policy, device=P.device, dtype=P.dtype)
evaluate = chapter.evaluator(P, rewards, sft=sft, n_samples=P.eval_prompts)
policies = {"sft": sft, **{r: str(rl.policy_dir(run)) for r, run in runs.items()}}
results = {name: evaluate(p) for name, p in policies.items()}

# %% [markdown]
# Each policy's mean reward on every reward (± one standard error over prompts), its KL to SFT,
# the diversity of its completions (distinct-2: unique word bigrams over all bigrams) and their
# mean length in words. The diagonal (policy `r`, column `r`) is what the run optimised; the
# off-diagonal entries show what optimising one reward does to the others.

# %% tags=["hide-input"]
chapter.results_table(results, rewards)

# %% [markdown]
# ### Paired differences
#
# The claim compares two policies on the same prompts. Because every policy answered the same
# $n$ prompts with the same random stream (common random numbers), the right statistic is the
# mean of the per-prompt differences: for policy $\pi_r$ trained on reward $r$,
#
# $$d_i = r\big(x_i, y_i^{(r)}\big) - r\big(x_i, y_i^{(\text{sft})}\big), \qquad
#   \hat\Delta_r = \frac{1}{n}\sum_i d_i, \qquad
#   \mathrm{se}(\hat\Delta_r) = \frac{\mathrm{sd}(d)}{\sqrt n}.$$
#
# Whatever makes one prompt easy for a reward (a request for a short review, for a positive one,
# for a detailed one) and helps both policies alike cancels in $d_i$. Treating the two means as
# independent, $\mathrm{se} = \sqrt{\mathrm{se}_r^2 + \mathrm{se}_{\text{sft}}^2}$, keeps that
# shared variation in the error and overstates it when the two policies' per-prompt scores are
# positively correlated (and understates it when they are negatively correlated); the ratio of
# the two in the table below shows which it is here. The two statistics, as the library
# computes them:

# %% tags=["hide-input"]
chapter.show_source(stats.paired_difference)
chapter.show_source(stats.unpaired_difference)

# %%
sft_scores = {r: results["sft"].scores(r) for r in rewards}
paired = {r: stats.paired_difference(results[r].scores(r), sft_scores[r]) for r in rewards}
unpaired = {r: stats.unpaired_difference(results[r].scores(r), sft_scores[r]) for r in rewards}
kl = {name: stats.mean(res.kls()) for name, res in results.items()}

# %% [markdown]
# For each reward: the SFT policy's mean, the trained policy's, the paired difference with its
# standard error, the unpaired standard error of the same difference, their ratio, and the
# trained policy's KL to SFT (± its standard error over prompts): what the gain cost.

# %% tags=["hide-input"]
ratio = {r: unpaired[r].se / paired[r].se if paired[r].se > 0 else float("nan") for r in rewards}
chapter.table([
    {"reward": r, "SFT": f"{sft_scores[r].mean():+.3f}", "trained policy": f"{results[r].scores(r).mean():+.3f}",
     "paired difference ± se": str(paired[r]), "unpaired se": f"{unpaired[r].se:.{paired[r].decimals()}f}",
     "unpaired / paired se": f"{ratio[r]:.1f}" if ratio[r] == ratio[r] else "—", "KL to SFT (nats)": str(kl[r])}
    for r in rewards
], index="reward")  # fmt: skip

# %% tags=["hide-input"]
chapter.markdown(chapter.pairing_sentence(paired, unpaired, noun="rewards"))

# %% [markdown]
# ## Samples before and after
#
# The same held-out prompts and sampling seed for every policy, so each table compares the
# SFT policy's review with what each fine-tuned policy writes in its place.

# %% tags=["hide-input"]
for i in range(min(n_show, P.eval_prompts)):
    chapter.samples_table(results, i)

# %% [markdown]
# ## Reward hacking
#
# A proxy reward is *hacked* when the policy raises it in a way that does not make a better
# review. We do not decide this by reading: simple detectors are computed on the held-out
# completions of each policy and compared with the SFT policy's:
#
# - **repetition**: share of the words of a completion that repeat an earlier word of it
#   (e.g. "great great great", one way to game sentiment);
# - **collapse**: distinct-2 (unique bigrams / all bigrams over all completions) falling well
#   below SFT's: the policy writes the same thing for every prompt;
# - **empty or truncated answers**: completions with no words, or far shorter than SFT's;
# - **keyword stuffing**: share of words that are film terms (what `specificity` counts);
# - **ignored instructions**: the prompt asks for a *negative* review and the completion is
#   clearly positive (VADER compound > 0.5), which a sentiment reward pays for;
# - **stock opening**: the share of completions that start with the policy's most common first
#   two words (one template for every prompt).
#
# A detector fires when its statistic moves past a fixed threshold against the SFT policy's;
# the worst offending sample is shown as evidence. The thresholds are fixed in advance, not
# tuned on these results; here they are, as the library defines them:

# %% tags=["hide-input"]
chapter.show_constant(hacking, "RULES", "each rule: label, when it fires (policy stats d, SFT stats b), why, "
                      "and how bad a sample is")  # fmt: skip
chapter.show_source(hacking.detect)

# %%
tone_of = {p["prompt"]: p["tone"] for p in load_prompts("test")}
detector_stats, found = hacking.detect(results, tone_of, base="sft")

# %% [markdown]
# The detectors' statistics for every policy (the SFT row is the baseline each rule compares
# with), then what fired:

# %% tags=["hide-input"]
pd.DataFrame(detector_stats).T

# %% tags=["hide-input"]
if found:
    fired = sorted({f.policy for f in found}, key=list(results).index)
    chapter.markdown(f"Detected reward hacking in {chapter.count_phrase(len(fired), len(rewards), 'policies')} "
                     f"({', '.join(f'`{p}`' for p in fired)}):\n\n" + chapter.findings_markdown(found))  # fmt: skip
else:
    chapter.markdown(f"No detector fired: at this KL budget (beta = {P.beta}, {P.steps} steps) none of the policies "
                     "moved far enough from SFT to game its reward in a way these detectors see.")  # fmt: skip

# %% [markdown]
# ## Verdicts
#
# Rewarded soups {cite}`rame2023rewarded` takes as given that RL on each proxy reward improves
# that reward: each expert policy is the end of the front that the soups interpolate, and the
# paper's experts all gain on their own reward. One claim per reward tests that premise here,
# judged by the book's rule on the paired difference above: it *holds* when the gain exceeds
# two paired standard errors, is the *opposite* when the policy lost more than two, and is *not
# confirmed* in between. The sentences under the table say, from these numbers, whether this
# build agrees with the paper.

# %%
verdicts = [
    verdict(f"raises-{r}", f"training on `{r}` raises the held-out `{r}` reward over the SFT policy", paired[r],
            f"paired difference over {paired[r].n} held-out prompts (same prompts, same seed)")
    for r in rewards
]  # fmt: skip
chapter.show_verdicts(verdicts)

# %% tags=["hide-input"]
moves = {"holds": "rose by more than two paired standard errors",
         "opposite": "fell by more than two paired standard errors",
         "not confirmed": "moved by less than two paired standard errors", "untested": "could not be compared"}
lines = [f"- `{r}`: {sft_scores[r].mean():+.3f} → {results[r].scores(r).mean():+.3f}, "
         f"{moves[v.outcome]} ({paired[r]}), at a KL to SFT of {kl[r]} nats."
         for r, v in zip(rewards, verdicts)]  # fmt: skip
held = [r for r, v in zip(rewards, verdicts) if v.outcome == "holds"]
summary = f"This build agrees with that premise for {chapter.count_phrase(len(held), len(rewards), 'rewards')}"
if len(held) < len(rewards):
    missing = [r for r in rewards if r not in held]
    summary += (f"; for {', '.join(f'`{r}`' for r in missing)} the run did not clearly beat SFT at this budget "
                f"({P.steps} steps, beta = {P.beta}), so the fronts of the next chapters have no clearly specialised "
                f"endpoint on {'that axis' if len(missing) == 1 else 'those axes'}.")
else:
    summary += ": every endpoint of the next chapters' fronts is a policy that clearly moved towards its reward."
if found:
    summary += (" A raised proxy is not a better review, though: the detectors above fired for "
                + ", ".join(sorted({f"`{f.policy}`" for f in found})) + ".")
chapter.markdown("\n".join(lines) + "\n\n" + summary)

# %% [markdown]
# ## What carries over
#
# These policies are the endpoints of every front in the next chapters: the rewarded soup
# interpolates their weights (chapter 2), and WARP's first stage is the same trainer with an
# EMA anchor (chapter 3). Because each run is stored in the run cache under its full
# configuration, those chapters load these policies rather than training them again, and
# because every evaluation uses the same prompts and seed, their fronts can be compared with
# these policies prompt by prompt.
