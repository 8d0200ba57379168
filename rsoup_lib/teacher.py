"""Teacher demonstrations: movie reviews written by SmolLM2-135M-Instruct for the prompt set.

For every prompt we sample ``samples_per_prompt`` reviews through the teacher's chat template
(system message "You are a film critic.", shorter than SmolLM2's default one: on CPU prompt
tokens cost about as much as generated ones) with ``rsoup_lib.sampling`` (temperature, top-k), in
batches, appending each batch to a JSONL file as soon as it is done. The work list is a fixed
order of (prompt, sample index) pairs, so a killed run resumes where it stopped: the rows in the
file are skipped (a line torn by the kill is dropped and regenerated). Sampling is seeded per
batch (seed, batch index), so on the same machine a resumed run writes what an uninterrupted
one would have.

Each row is ``{"prompt_id", "prompt", "sample", "raw", "review"}``: ``raw`` is the decoded
completion, ``review`` its cleaned form (``clean_review``) or ``null`` when it was dropped
(empty, a refusal, meta talk, or degenerate repetition). Consumers re-clean ``raw``
(``databuild.teacher_pairs``), so the rules can change without regenerating.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

SYSTEM_PROMPT = "You are a film critic."


@dataclass
class TeacherConfig:
    policy: str = "smollm2-135m-instruct"
    split: str = "train"
    samples_per_prompt: int = 9
    max_new_tokens: int = 48
    temperature: float = 0.8
    top_k: int = 50
    batch_size: int = 128
    seed: int = 0
    dtype: str = "float32"
    max_prompts: int | None = None  # only the first N prompts (for --small)
    clean: bool = True  # False keeps every non-empty completion (--small's random teacher)
    int8: bool = False  # dynamic int8 quantisation of the Linear layers (off: DATA_CARD.md has why)


_REFUSAL = re.compile(
    r"\b(I'm sorry|I am sorry|I apologi[sz]e|as an AI|I cannot|I can't|I'm not able|I am not able|"
    r"I'm unable|language model|I don't have personal|I do not have personal|assistant)\b",
    re.IGNORECASE,
)
_META_LEAD = re.compile(
    r"^(sure|certainly|of course|here is|here's|here are|title:|review:|\*\*)[^\n]*\n+", re.IGNORECASE
)
_SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s|$)")


def clean_review(raw: str, min_words: int = 6) -> str | None:
    """The review inside a raw completion, or None if it is not a usable review.

    Strips a leading "Here's a review..." line, markdown emphasis and surrounding quotes, joins
    lines, cuts an unfinished last sentence (completions stop at ``max_new_tokens``), and drops
    refusals, texts shorter than ``min_words`` and degenerate ones (a sentence repeated, or
    fewer than 40 % distinct words).

    These rules count whitespace-separated tokens and split sentences after . ! ? followed by
    a space, not the words and sentences of ``rsoup_lib.text``: the committed teacher data
    (``data/teacher``, and so the ``tiny`` policy trained on it) was cleaned with them, and
    ``text.words`` would keep or drop 11 of its 5,952 rows differently (reviews with
    initialisms such as "A.C.P.S.")."""
    text = raw.strip()
    for _ in range(2):
        text = _META_LEAD.sub("", text).strip()
    text = text.replace("*", "").replace("#", "")
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    if text[:1] == '"' and text[-1:] == '"' and text.count('"') == 2:
        text = text[1:-1].strip()
    if _REFUSAL.search(text):
        return None
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if not ends:
        return None
    text = text[: ends[-1]].strip()
    if text.count('"') % 2 == 1:  # an unbalanced quote left by the cut or by the teacher
        text = text.strip('"').strip() if text[:1] == '"' or text[-1:] == '"' else text
    words = text.split()
    if len(words) < min_words:
        return None
    if len({w.lower().strip(".,!?;:\"'") for w in words}) < 0.4 * len(words):
        return None
    sentences = [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    if len(sentences) != len(set(sentences)):
        return None
    return text


def read_rows(path: Path) -> list[dict]:
    """Rows of a (possibly partly written) teacher JSONL; a torn last line is ignored."""
    rows = []
    if not Path(path).is_file():
        return rows
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a kill: everything after it is regenerated
    return rows


def generate_reviews(config: TeacherConfig, prompts: list[dict], out_path: Path, model=None, tokenizer=None) -> Path:
    """Append the missing teacher reviews for ``prompts`` to ``out_path`` (resumable)."""
    import torch
    from tqdm import tqdm

    from rsoup_lib.sampling import sample_ids
    from rsoup_lib.models import load_policy

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if config.max_prompts is not None:
        prompts = prompts[: config.max_prompts]
    # Work list: (prompt, sample index) pairs, in a fixed order; rows done so far are skipped.
    todo = [(p, j) for j in range(config.samples_per_prompt) for p in prompts]
    rows = read_rows(out_path)
    # Rewrite the file without a torn tail, so appends start on a clean line.
    if out_path.is_file() and len(rows) != len(out_path.read_text().splitlines()):
        from rsoup_lib.io import atomic_write_text

        atomic_write_text(out_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    done = len(rows)
    if done >= len(todo):
        return out_path
    if model is None:
        model, tokenizer = load_policy(config.policy, dtype=config.dtype)
        if config.int8:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    model.eval()
    system = [{"role": "system", "content": SYSTEM_PROMPT}] if getattr(tokenizer, "chat_template", None) else []

    def render(instruction: str) -> str:
        if not system:
            return instruction + "\n"
        return tokenizer.apply_chat_template(
            system + [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
        )

    bs = config.batch_size
    tokenizer.padding_side = "left"
    with open(out_path, "a") as f, tqdm(total=len(todo), initial=done, desc="teacher reviews", unit="review") as bar:
        for b in range(done // bs, (len(todo) + bs - 1) // bs):
            batch = todo[b * bs : (b + 1) * bs]
            skip = max(0, done - b * bs)  # rows of this batch already in the file (after a torn write)
            enc = tokenizer([render(p["prompt"]) for p, _ in batch], return_tensors="pt", padding=True,
                            add_special_tokens=False)
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + b)
            ids = sample_ids(model, enc["input_ids"], enc["attention_mask"], config.max_new_tokens,
                             tokenizer.eos_token_id, tokenizer.pad_token_id, config.temperature, config.top_k,
                             generator)
            completions = tokenizer.batch_decode(ids, skip_special_tokens=True)
            lines = []
            for (p, j), raw in list(zip(batch, completions))[skip:]:
                row = {
                    "prompt_id": p["id"],
                    "prompt": p["prompt"],
                    "sample": j,
                    "raw": raw,
                    "review": clean_review(raw) if config.clean else (raw.strip() or None),
                }
                lines.append(json.dumps(row, sort_keys=True) + "\n")
            f.write("".join(lines))
            f.flush()
            done += len(lines)
            bar.update(len(lines))
    return out_path
