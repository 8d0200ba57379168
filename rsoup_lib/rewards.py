"""Rewards: named, batched functions of (prompt, completion) -> float.

The registry (``REWARDS``) holds the proxy rewards the book trains on. Each one is cheap, runs on
CPU, needs no download, and has a documented range:

=============  ==========  ==================================================================
name           range       what it scores
=============  ==========  ==================================================================
sentiment      [-1, 1]     VADER compound score of the completion (the ``vaderSentiment``
                           package ships its lexicon)
readability    [0, 1]      Flesch reading ease / 100, clipped to [0, 100] first. Syllables
                           are counted with a vowel-group heuristic (runs of a, e, i, o, u, y;
                           a final silent consonant-"e" dropped; at least one per word), so no
                           dictionary is needed: textstat >= 0.7.10 downloads cmudict at run
                           time and fails offline. An empty completion scores 0.
conciseness    [0, 1]      1 - min(words, 48) / 48: shorter is better, empty scores 1
specificity    [0, 1]      coverage of film vocabulary: distinct film terms (plot, acting,
                           director, score, cinematography, ...) in the completion / 4,
                           capped at 1
tone_fidelity  [-1, 1]     does the review's sentiment s (VADER compound) follow the tone
                           the instruction asks for (``prompts.requested_tone``)? positive:
                           s; negative: -s; mixed: 1 - 2|s| (a balanced review); any: |s|
                           (a review that takes a side)
=============  ==========  ==================================================================

Words and sentences are those of ``rsoup_lib.text`` (letter runs with at most one inner
apostrophe; sentences between runs of . ! ?), the same words the detectors and the evaluator count.
The table is the one of book chapter 1 ("RLHF per reward").

A weighted sum for MORL is written ``"sentiment:0.5,conciseness:0.5"`` (``get_reward``).
Every call goes through ``Reward.__call__``, which rejects NaN and infinity with an error naming
the reward and the offending input: a broken reward never becomes a silent number in training.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from rsoup_lib.errors import UserError
from rsoup_lib.text import sentences, words

RewardFn = Callable[[Sequence[str], Sequence[str]], list[float]]


class NonFiniteRewardError(UserError):
    """A reward returned NaN or infinity."""


@dataclass(frozen=True)
class Reward:
    name: str
    fn: RewardFn  # (prompts, completions) -> scores, one per pair
    low: float  # documented range
    high: float
    description: str = ""

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"reward {self.name}: {len(prompts)} prompts but {len(completions)} completions")
        scores = [float(s) for s in self.fn(prompts, completions)]
        if len(scores) != len(completions):
            raise ValueError(f"reward {self.name} returned {len(scores)} scores for {len(completions)} inputs")
        for prompt, completion, score in zip(prompts, completions, scores):
            if not math.isfinite(score):
                raise NonFiniteRewardError(
                    f"reward {self.name!r} returned {score} for prompt {prompt!r}, completion {completion!r}"
                )
        return scores


# ---------------------------------------------------------------------------- sentiment
_vader = None


def _sentiment(prompts, completions):
    global _vader
    if _vader is None:  # the analyser loads its lexicon once
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _vader = SentimentIntensityAnalyzer()
    return [_vader.polarity_scores(c)["compound"] for c in completions]


def _tone_fidelity(prompts, completions):
    from rsoup_lib.prompts import requested_tone

    scores = _sentiment(prompts, completions)
    out = []
    for prompt, s in zip(prompts, scores):
        tone = requested_tone(prompt)
        out.append({"positive": s, "negative": -s, "mixed": 1.0 - 2.0 * abs(s)}.get(tone, abs(s)))
    return out


# ---------------------------------------------------------------------------- readability
_VOWEL_GROUP = re.compile(r"[aeiouy]+")


def count_syllables(word: str) -> int:
    """Vowel-group heuristic: runs of vowels, minus a silent final 'e', at least one."""
    w = word.lower()
    n = len(_VOWEL_GROUP.findall(w))
    if n > 1 and len(w) > 2 and w.endswith("e") and w[-2] not in "aeiouyl":
        n -= 1
    return max(n, 1)


def flesch_reading_ease(text: str) -> float:
    """206.835 - 1.015 words/sentence - 84.6 syllables/word (sentences >= 1); nan if no words.
    Words and sentences as ``rsoup_lib.text`` defines them."""
    ws = words(text)
    if not ws:
        return float("nan")
    n_sentences = max(len(sentences(text)), 1)
    syllables = sum(count_syllables(w) for w in ws)
    return 206.835 - 1.015 * len(ws) / n_sentences - 84.6 * syllables / len(ws)


def _readability(prompts, completions):
    out = []
    for c in completions:
        fre = flesch_reading_ease(c)
        out.append(0.0 if math.isnan(fre) else min(max(fre, 0.0), 100.0) / 100.0)
    return out


# ---------------------------------------------------------------------------- conciseness
CONCISE_WORDS = 48


def _conciseness(prompts, completions):
    return [1.0 - min(len(words(c)), CONCISE_WORDS) / CONCISE_WORDS for c in completions]


# ---------------------------------------------------------------------------- specificity
FILM_TERMS = frozenset(
    """plot acting actor actors actress cast director directing direction script screenplay
    dialogue score soundtrack music cinematography camera shot shots editing pacing scene scenes
    character characters performance performances story storyline ending sequel visuals effects
    lighting costume costumes set production writing writer composer narrative genre""".split()
)
SPECIFIC_TERMS = 4


def _specificity(prompts, completions):
    out = []
    for c in completions:
        terms = set(words(c)) & FILM_TERMS
        out.append(min(len(terms), SPECIFIC_TERMS) / SPECIFIC_TERMS)
    return out


REWARDS: dict[str, Reward] = {
    r.name: r
    for r in [
        Reward("sentiment", _sentiment, -1.0, 1.0, "VADER compound score"),
        Reward("readability", _readability, 0.0, 1.0, "Flesch reading ease / 100 (vowel-group syllables)"),
        Reward("conciseness", _conciseness, 0.0, 1.0, f"1 - min(words, {CONCISE_WORDS}) / {CONCISE_WORDS}"),
        Reward("specificity", _specificity, 0.0, 1.0, f"distinct film terms / {SPECIFIC_TERMS}, capped at 1"),
        Reward("tone_fidelity", _tone_fidelity, -1.0, 1.0, "sentiment in the requested tone's direction"),
    ]
}


def parse_weights(spec: str) -> dict[str, float]:
    """``"sentiment:0.5,conciseness:0.5"`` -> {"sentiment": 0.5, "conciseness": 0.5};
    a bare name has weight 1. Weights are finite and >= 0, and not all 0; anything else (an
    unknown name, ``name=w``, a weight that is not a number) is a ``UserError``."""
    example = "write e.g. 'sentiment' or 'sentiment:0.5,conciseness:0.5'"
    weights: dict[str, float] = {}
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            raise UserError(f"reward {spec!r}: empty term; {example}")
        name, _, w = part.partition(":")
        name = name.strip()
        if name not in REWARDS:
            if "=" in name and name.partition("=")[0].strip() in REWARDS:
                raise UserError(f"reward {spec!r}: write a weight as name:weight, not name=weight; {example}")
            raise UserError(f"unknown reward {name!r}; the rewards are: {', '.join(REWARDS)}")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise UserError(f"reward {spec!r}: weight {w!r} of {name!r} is not a number; {example}") from None
        if not math.isfinite(weight):
            raise UserError(f"reward {spec!r}: weight of {name!r} must be finite; {example}")
        if weight < 0:
            raise UserError(f"reward {spec!r}: weight {w} of {name!r} is negative; weights are >= 0 ({example})")
        if name in weights:
            raise UserError(f"reward {spec!r}: {name!r} appears twice; give each reward once")
        weights[name] = weight
    if not any(weights.values()):
        raise UserError(f"reward {spec!r}: every weight is 0, so there is nothing to maximise; {example}")
    return weights


def get_reward(spec: str) -> Reward:
    """A registered reward by name, or a weighted sum ``"a:w1,b:w2"`` (range: the weighted ranges)."""
    weights = parse_weights(spec)
    if len(weights) == 1 and next(iter(weights.values())) == 1.0:
        return REWARDS[next(iter(weights))]
    parts = [(REWARDS[n], w) for n, w in weights.items()]

    def weighted(prompts, completions):
        total = [0.0] * len(completions)
        for reward, w in parts:
            for i, s in enumerate(reward(prompts, completions)):
                total[i] += w * s
        return total

    low = sum(w * (r.low if w >= 0 else r.high) for r, w in parts)
    high = sum(w * (r.high if w >= 0 else r.low) for r, w in parts)
    return Reward(spec, weighted, low, high, "weighted sum: " + spec)
