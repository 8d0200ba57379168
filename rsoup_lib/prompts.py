"""The prompt set: instructions asking for a movie review, with metadata.

Every prompt is built combinatorially from

- ``genre``: one of GENRES (horror, comedy, ...),
- ``tone``: the requested sentiment, one of TONES (``positive``, ``negative``, ``mixed``, or
  ``any`` when the instruction does not ask for one),
- ``length``: the requested length, one of LENGTHS (``short``, ``medium``, ``long``),
- a phrasing template (PHRASINGS),

e.g. ``"Write a short, negative review of a horror movie."``. Each record is a dict

    {"id": "train-0007", "prompt": "...", "genre": "horror", "tone": "negative",
     "length": "short", "phrasing": 0, "group": "negative"}

``group`` is the label the group-robust chapter hides from its learner and uses for evaluation:
the requested tone. Prompts that ask for a negative or mixed review pull against a positive-
sentiment reward, so they are the natural "hard" groups a shortcut-taking policy neglects.

The split is made by genre-tone-length cell: every cell's phrasings are shuffled with a fixed
seed and one phrasing per cell goes to ``test`` (192 prompts), the rest to ``train``
(576 prompts). So every combination of metadata appears in both splits, but no prompt text does.

The files live in ``data/prompts/{train,test}.jsonl``; ``build_prompt_set()`` regenerates them
exactly (``rsoup data build`` writes them, tests check that the committed files match).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from rsoup_lib.errors import UserError
from rsoup_lib.manifest import DATA_DIR

GENRES = [
    "horror", "comedy", "drama", "action", "science fiction", "romance", "thriller",
    "animated", "documentary", "western", "fantasy", "musical", "war", "mystery", "crime",
    "family",
]
TONES = ["positive", "negative", "mixed", "any"]
LENGTHS = ["short", "medium", "long"]

# How each length is asked for, as an adjective before "review" and as a trailing clause.
_LENGTH_ADJ = {"short": "short", "medium": "", "long": "detailed"}
_LENGTH_CLAUSE = {"short": " in one or two sentences", "medium": "", "long": " in a paragraph"}
_TONE_ADJ = {"positive": "positive", "negative": "negative", "mixed": "mixed", "any": ""}
_TONE_CLAUSE = {
    "positive": " Say what you liked about it.",
    "negative": " Say what you disliked about it.",
    "mixed": " Mention both its strengths and its weaknesses.",
    "any": "",
}

# Phrasing templates. {a} is "a"/"an" for the noun phrase that follows it.
PHRASINGS = [
    "Write a {adjs}review of {a_genre} movie.",
    "Write a {adjs}review of {a_genre} film{length_clause}.",
    "Review {a_genre} movie you have seen recently{length_clause}.{tone_clause}",
    "Give me a {adjs}movie review for {a_genre} film.",
]

SPLITS = ("train", "test")
SPLIT_SEED = 1234
PROMPTS_DIR = DATA_DIR / "prompts"


def render(genre: str, tone: str, length: str, phrasing: int) -> str:
    """The instruction text for one cell of the grid and one phrasing."""
    adj_words = [w for w in (_LENGTH_ADJ[length], _TONE_ADJ[tone]) if w]
    adjs = ", ".join(adj_words) + " " if adj_words else ""
    template = PHRASINGS[phrasing]
    # Templates with a clause say the length (and tone) in words instead of adjectives.
    if "{length_clause}" in template and "{tone_clause}" not in template:
        adjs = (_TONE_ADJ[tone] + " ") if _TONE_ADJ[tone] else ""
        length_clause, tone_clause = _LENGTH_CLAUSE[length], ""
    elif "{tone_clause}" in template:
        length_clause, tone_clause = _LENGTH_CLAUSE[length], _TONE_CLAUSE[tone]
    else:
        length_clause, tone_clause = "", ""
    text = template.format(adjs=adjs, a_genre=f"a {genre}", length_clause=length_clause, tone_clause=tone_clause)
    # Each article agrees with the word right after it ("an action movie", "a detailed review").
    return re.sub(r"\b([Aa])n? (\w)", lambda m: f"{m.group(1)}{'n' if m.group(2).lower() in 'aeiou' else ''} {m.group(2)}", text)


def build_prompt_set() -> dict[str, list[dict]]:
    """All prompts, split into train and test (deterministic)."""
    rng = random.Random(SPLIT_SEED)
    splits: dict[str, list[dict]] = {"train": [], "test": []}
    for genre in GENRES:
        for tone in TONES:
            for length in LENGTHS:
                order = list(range(len(PHRASINGS)))
                rng.shuffle(order)
                for rank, phrasing in enumerate(order):
                    split = "test" if rank == 0 else "train"
                    splits[split].append(
                        {
                            "prompt": render(genre, tone, length, phrasing),
                            "genre": genre,
                            "tone": tone,
                            "length": length,
                            "phrasing": phrasing,
                            "group": tone,
                        }
                    )
    for split, records in splits.items():
        rng.shuffle(records)
        for i, rec in enumerate(records):
            rec["id"] = f"{split}-{i:04d}"
    return splits


def write_prompt_set(out_dir: Path = PROMPTS_DIR) -> list[Path]:
    """Write ``train.jsonl`` and ``test.jsonl`` into ``out_dir``; returns their paths."""
    from rsoup_lib.io import atomic_write_text

    paths = []
    for split, records in build_prompt_set().items():
        path = Path(out_dir) / f"{split}.jsonl"
        atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        paths.append(path)
    return paths


def load_prompts(split: str = "train", data_dir: Path | None = None) -> list[dict]:
    """The prompts of one split (``train`` or ``test``), as dicts with ``prompt`` and metadata."""
    if split not in SPLITS:
        raise UserError(f"unknown prompt split {split!r}: use one of {', '.join(SPLITS)}")
    path = Path(data_dir or DATA_DIR) / "prompts" / f"{split}.jsonl"
    if not path.is_file():
        raise UserError(f"prompt file {path} is missing: regenerate it with `rsoup data build --only prompts`")
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise UserError(f"prompt file {path} is corrupt ({err}): regenerate it with `rsoup data build --only prompts`")


_TONE_CUES = (  # (tone, a phrase that asks for it), checked in order for texts outside the grid
    ("mixed", r"\bmixed\b|strengths and (its )?weaknesses"),
    ("negative", r"\bnegative\b|\bdisliked\b"),
    ("positive", r"\bpositive\b|\bliked\b"),
)
_TONE_OF_TEXT: dict[str, str] = {}


def requested_tone(prompt: str) -> str:
    """The tone an instruction asks for: ``positive``, ``negative``, ``mixed`` or ``any``.

    Instructions of the prompt grid are looked up exactly (every cell rendered once); any other
    text is read from its cue words ("negative", "disliked", "strengths and weaknesses", ...)."""
    if not _TONE_OF_TEXT:
        for genre in GENRES:
            for tone in TONES:
                for length in LENGTHS:
                    for phrasing in range(len(PHRASINGS)):
                        _TONE_OF_TEXT[render(genre, tone, length, phrasing)] = tone
    if prompt in _TONE_OF_TEXT:
        return _TONE_OF_TEXT[prompt]
    low = prompt.lower()
    for tone, cue in _TONE_CUES:
        if re.search(cue, low):
            return tone
    return "any"

