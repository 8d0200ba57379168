"""Words and sentences: the one definition that every reward, detector, evaluation metric and
data figure counts with.

- A **word** is a run of ASCII letters, with at most one inner apostrophe followed by more
  letters, lower-cased: ``"Don't"`` -> ``don't``, ``"the film's score"`` -> ``the film's score``,
  ``"'Jaws' (1975)"`` -> ``jaws``. Digits, punctuation and quote marks are not words.
- A **sentence** is a stretch of text between runs of ``.``, ``!`` or ``?`` that holds at least
  one word (``"Great. Really!! ..."`` has two).

These are the definitions of the rewards documented in book chapter 1 ("RLHF per reward"):
``conciseness`` = 1 - min(words, 48) / 48, ``readability`` = Flesch reading ease / 100 (words per
sentence, syllables per word), ``specificity`` = distinct film terms / 4 capped at 1. The
reward-hacking detectors, the evaluator's diversity metrics (distinct-n, repetition, mean words)
and the data report count the same words. Two rules of the data pipeline keep their own split,
the one the committed data was built with: ``teacher.clean_review`` (whitespace tokens) and
``corpus.brown_vocabulary`` (the Brown word list).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SENTENCE_END = re.compile(r"[.!?]+")


def words(text: str) -> list[str]:
    """The words of ``text``, lower-cased, in order (see the module docstring)."""
    return [w.lower() for w in _WORD.findall(text)]


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (pieces between runs of . ! ? that hold a word), unstripped."""
    return [s for s in _SENTENCE_END.split(text) if _WORD.search(s)]
