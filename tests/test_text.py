"""rsoup_lib.text: the one word and sentence split, and the rewards, detectors and evaluator on it."""

import pytest

from rsoup_lib.evaluate import distinct_n, repetition_rate
from rsoup_lib.rewards import REWARDS, flesch_reading_ease
from rsoup_lib.text import sentences, words


def test_words_are_letter_runs_with_one_inner_apostrophe_lowercased():
    assert words("Don't miss 'Jaws' (1975): the film's SCORE!") == ["don't", "miss", "jaws", "the", "film's", "score"]
    assert words("rock'n'roll O'Brien dogs' -- 42") == ["rock'n", "roll", "o'brien", "dogs"]
    assert words("") == [] and words("... 12 !?") == []


def test_sentences_are_pieces_between_end_marks_that_hold_a_word():
    assert [s.strip() for s in sentences("Great. Really!! ... Yes? 3.")] == ["Great", "Really", "Yes"]
    assert sentences("no end mark") == ["no end mark"] and sentences("?!") == []


def test_rewards_count_these_words():
    text = "Don't watch it. The acting, the plot and the score were awful!"
    assert REWARDS["conciseness"]([""], [text]) == [1.0 - len(words(text)) / 48]
    assert REWARDS["specificity"]([""], [text]) == [3 / 4]  # acting, plot, score
    n_words, n_sentences = len(words(text)), len(sentences(text))
    assert (n_words, n_sentences) == (12, 2)
    assert flesch_reading_ease(text) == pytest.approx(206.835 - 1.015 * 12 / 2 - 84.6 * 14 / 12)


def test_evaluator_counts_the_same_words():
    assert distinct_n(["'Great' great"], 1) == 0.5  # quotes do not make a second word
    assert repetition_rate("Great, GREAT film") == pytest.approx(1 / 3)
