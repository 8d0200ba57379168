"""``rsoup data report``: the quality figures of the shipped data and models, measured.

Figures (all recomputed from the files in ``data/``, nothing typed in):

- teacher data: rows, reviews kept after cleaning, mean length, VADER sentiment spread;
- held-out perplexity of the teacher's held-out reviews (review + end-of-text tokens given the
  instruction, tiny tokenizer) under: the ``tiny`` policy (SFT), the pretrained-only model, and a
  unigram model of the train reviews' tokens (add-one smoothing). PPL = exp(NLL / tokens);
- 64 samples of ``tiny`` (temperature 1, 48 new tokens, the first 64 test prompts, seed 0):
  non-empty fraction, fraction of words found in the Brown vocabulary (``data/brown_vocab.txt``),
  distinct-word ratio, mean words, VADER compound mean and standard deviation, and the wall time
  to sample them with one torch thread and with torch's default (with the machine's load average);
- 20 sample reviews; SmolLM2's load time and three reviews through its chat template;
- with ``judge=True`` (``rsoup data report --judge``, about 90 s of CPU): the judge
  perplexity (``rsoup_lib.judge``: SmolLM2-135M-Instruct on the completion text alone) of
  ``tiny``'s samples, SmolLM2's own samples (both sampled as the chapters' evaluator samples,
  on the first 64 test prompts, seed 11, ``JUDGE_MAX_NEW_TOKENS`` tokens, at the chapters'
  temperature 1.0 and at 0.7 for comparison) and of 64 of the teacher's held-out reviews.

Words are those of ``rsoup_lib.text`` (the words the rewards count). ``report()`` returns a
dict; ``markdown(report)`` renders the block that ``--write-card`` puts between the
``<!-- report:begin -->`` / ``<!-- report:end -->`` markers of ``DATA_CARD.md``.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections import Counter
from pathlib import Path

import torch

from rsoup_lib.manifest import DATA_DIR
from rsoup_lib.text import words


def load_brown_vocabulary(data_dir: Path = DATA_DIR) -> set[str]:
    """The word list written by ``rsoup data build`` (``corpus.brown_vocabulary``)."""
    return set((Path(data_dir) / "brown_vocab.txt").read_text().split())


def word_fraction(texts: list[str], vocab: set[str]) -> float:
    """Fraction of the words of ``texts`` that are in ``vocab``, or whose part before an
    apostrophe is."""
    ws = [w for t in texts for w in words(t)]
    return sum(w in vocab or w.split("'")[0] in vocab for w in ws) / max(1, len(ws))


def vader_scores(texts: list[str]) -> list[float]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return [analyzer.polarity_scores(t)["compound"] for t in texts]


def unigram_perplexity(train_ids: list[list[int]], test_ids: list[list[int]], vocab_size: int) -> float:
    """Perplexity of a unigram model with add-one smoothing: p(v) = (c_v + 1) / (N + V)."""
    counts = Counter(i for seq in train_ids for i in seq)
    total = sum(counts.values())
    nll = -sum(math.log((counts[i] + 1) / (total + vocab_size)) for seq in test_ids for i in seq)
    return math.exp(nll / sum(len(s) for s in test_ids))


def sample_stats(texts: list[str], vocab: set[str]) -> dict:
    scores = vader_scores(texts)
    ws = [w for t in texts for w in words(t)]
    return {
        "n": len(texts),
        "non_empty": sum(bool(t.strip()) for t in texts) / len(texts),
        "brown_word_fraction": word_fraction(texts, vocab),
        "distinct_word_ratio": len(set(ws)) / max(1, len(ws)),
        "mean_words": statistics.mean(len(words(t)) for t in texts),
        "vader_mean": statistics.mean(scores),
        "vader_std": statistics.pstdev(scores),
    }


JUDGE_SEED = 11
JUDGE_TEMPERATURES = (1.0, 0.7)  # the chapters sample at 1.0; 0.7 for comparison
JUDGE_MAX_NEW_TOKENS = 32  # the chapters' evaluation length (profiles: eval_max_new_tokens)


def judge_figures(tiny, smol, prompts: list[str], teacher_reviews: list[str]) -> dict:
    """Judge perplexities (``rsoup_lib.judge``) of tiny's samples, SmolLM2's samples and the
    teacher's reviews; ``tiny`` and ``smol`` are (model, tokenizer) pairs, SmolLM2 the judge."""
    from rsoup_lib.judge import judge_perplexity, sample_texts

    t0 = time.perf_counter()
    judge, judge_tok = smol
    out: dict = {"n_prompts": len(prompts), "seed": JUDGE_SEED, "max_new_tokens": JUDGE_MAX_NEW_TOKENS,
                 "teacher_heldout": judge_perplexity(judge, judge_tok, teacher_reviews),
                 "n_teacher_reviews": len(teacher_reviews), "by_temperature": {}}
    for temperature in JUDGE_TEMPERATURES:
        row = {}
        for name, (model, tok) in (("tiny", tiny), ("smollm2", smol)):
            texts = sample_texts(model, tok, prompts, temperature, JUDGE_SEED, JUDGE_MAX_NEW_TOKENS)
            row[name] = judge_perplexity(judge, judge_tok, texts)
            row[f"{name}_example"] = texts[0]
        out["by_temperature"][str(temperature)] = row
    out["seconds"] = time.perf_counter() - t0
    return out


def report(data_dir: Path = DATA_DIR, n_samples: int = 64, max_new_tokens: int = 48, seed: int = 0,
           smollm2: bool = True, judge: bool = False) -> dict:
    from transformers import AutoModelForCausalLM

    from rsoup_lib.databuild import teacher_pairs
    from rsoup_lib.sampling import sample
    from rsoup_lib.lm_training import completion_nll, sft_example
    from rsoup_lib.manifest import read_manifest, verified_dir
    from rsoup_lib.models import count_parameters, load_policy
    from rsoup_lib.profiles import using_threads
    from rsoup_lib.prompts import load_prompts
    from rsoup_lib.teacher import read_rows

    data_dir = Path(data_dir)
    vocab = load_brown_vocabulary(data_dir)
    out: dict = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}}

    # Teacher data.
    train_pairs = teacher_pairs(data_dir / "teacher" / "train.jsonl")
    held_pairs = teacher_pairs(data_dir / "teacher" / "heldout.jsonl")
    out["teacher"] = {
        "train_rows": len(read_rows(data_dir / "teacher" / "train.jsonl")),
        "train_reviews": len(train_pairs),
        "heldout_rows": len(read_rows(data_dir / "teacher" / "heldout.jsonl")),
        "heldout_reviews": len(held_pairs),
        **{f"train_{k}": v for k, v in sample_stats([y for _, y in train_pairs], vocab).items()
           if k in ("mean_words", "brown_word_fraction", "vader_mean", "vader_std")},
    }

    # Perplexities on the held-out reviews.
    model, tokenizer = load_policy(str(verified_dir("tiny", data_dir)))
    pre = AutoModelForCausalLM.from_pretrained(verified_dir("tiny-pretrained", data_dir), dtype=torch.float32)
    ppl = {}
    for name, m in (("tiny (SFT)", model), ("pretrained only", pre)):
        nll, n = completion_nll(m, tokenizer, held_pairs)
        ppl[name] = math.exp(nll / n)
    answer = lambda pairs: [[i for i, l in zip(*sft_example(tokenizer, x, y)) if l != -100] for x, y in pairs]  # noqa: E731
    ppl["unigram (train reviews)"] = unigram_perplexity(answer(train_pairs), answer(held_pairs), len(tokenizer))
    out["heldout_perplexity"] = ppl
    out["heldout_tokens"] = n
    out["tiny_parameters"] = count_parameters(model)

    # Samples.
    prompts = [p["prompt"] for p in load_prompts("test", data_dir)[:n_samples]]
    load_before = os.getloadavg()[0]
    seconds = {}  # timed with one torch thread and with torch's default
    for threads in sorted({1, torch.get_num_threads()}):
        with using_threads(threads):
            t0 = time.perf_counter()
            texts = sample(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=1.0, seed=seed,
                           batch_size=n_samples)
            seconds[threads] = time.perf_counter() - t0
    out["tiny_samples"] = {
        **sample_stats(texts, vocab),
        "max_new_tokens": max_new_tokens,
        "seconds_by_threads": seconds,
        "load_average_1min": load_before,
    }
    out["pretrained_samples"] = sample_stats(
        sample(pre, tokenizer, prompts, max_new_tokens=max_new_tokens, seed=seed, batch_size=n_samples), vocab)
    out["examples"] = [{"prompt": p, "completion": c} for p, c in list(zip(prompts, texts))[:20]]

    if smollm2:
        t0 = time.perf_counter()
        smol, smol_tok = load_policy("smollm2-135m-instruct")
        load_s = time.perf_counter() - t0
        smol_prompts = prompts[:3]
        smol_texts = sample(smol, smol_tok, smol_prompts, max_new_tokens=80, temperature=0.8, top_k=50, seed=seed)
        out["smollm2"] = {
            "parameters": count_parameters(smol),
            "load_seconds": load_s,
            "examples": [{"prompt": p, "completion": c} for p, c in zip(smol_prompts, smol_texts)],
        }
        if judge:
            reviews = [y for _, y in held_pairs[:n_samples]]
            out["judge"] = judge_figures((model, tokenizer), (smol, smol_tok), prompts, reviews)
    manifest = read_manifest(data_dir)
    out["artifacts"] = {
        name: {"seconds": a.get("seconds"), "bytes": sum(manifest["files"][f]["bytes"] for f in a["files"])}
        for name, a in manifest["artifacts"].items()
    }
    return out


def markdown(r: dict) -> str:
    """The report as the Markdown block of the data card."""
    t, s = r["teacher"], r["tiny_samples"]
    lines = [
        "### Measured figures (written by `rsoup data report --write-card`)",
        "",
        f"- Teacher: {t['train_reviews']} train reviews kept of {t['train_rows']} generated, "
        f"{t['heldout_reviews']} held-out reviews of {t['heldout_rows']}; mean {t['train_mean_words']:.1f} words; "
        f"{t['train_brown_word_fraction']:.1%} of words in the Brown vocabulary; "
        f"VADER compound mean {t['train_vader_mean']:.2f}, std {t['train_vader_std']:.2f}.",
        f"- `tiny`: {r['tiny_parameters']:,} parameters.",
        "",
        f"Held-out perplexity ({r['heldout_tokens']} review tokens of the teacher's held-out set, tiny tokenizer):",
        "",
        "| model | perplexity |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in r["heldout_perplexity"].items()],
        "",
        f"{s['n']} samples of `tiny` ({s['max_new_tokens']} new tokens, temperature 1, first {s['n']} test prompts, seed 0), "
        "next to the same from the pretrained-only model:",
        "",
        "| figure | tiny (SFT) | pretrained only |",
        "|---|---|---|",
    ]
    p = r["pretrained_samples"]
    for key, fmt in (("non_empty", "{:.1%}"), ("brown_word_fraction", "{:.1%}"), ("distinct_word_ratio", "{:.2f}"),
                     ("mean_words", "{:.1f}"), ("vader_mean", "{:.2f}"), ("vader_std", "{:.2f}")):
        lines.append(f"| {key} | {fmt.format(s[key])} | {fmt.format(p[key])} |")
    lines += [
        "",
        f"Sampling the {s['n']} reviews of {s['max_new_tokens']} new tokens (`rsoup_lib.sampling.sample`, "
        "one batch) took "
        + ", ".join(f"{sec:.2f} s with {th} torch thread{'s' if int(th) > 1 else ''}"
                    for th, sec in s["seconds_by_threads"].items())
        + f" (1-minute load average {s['load_average_1min']:.1f} on {r['machine']['cpus']} cores when it started).",
        "",
        "Wall time and size of each artifact:",
        "",
        "| artifact | seconds | MB |",
        "|---|---|---|",
        *[f"| {k} | {v['seconds'] if v['seconds'] is None else round(v['seconds'])} | {v['bytes'] / 1e6:.2f} |"
          for k, v in r["artifacts"].items()],
        "",
        "20 sample reviews of `tiny`:",
        "",
    ]
    for ex in r["examples"]:
        lines.append(f"- *{ex['prompt']}* {ex['completion']!s}".replace("\n", " "))
    if "smollm2" in r:
        sm = r["smollm2"]
        lines += ["", f"SmolLM2-135M-Instruct ({sm['parameters']:,} parameters) loaded offline in "
                  f"{sm['load_seconds']:.1f} s (safetensors cache); through its chat template:", ""]
        for ex in sm["examples"]:
            lines.append(f"- *{ex['prompt']}* {ex['completion']}".replace("\n", " "))
    if "judge" in r:
        lines += ["", *judge_markdown(r["judge"])]
    return "\n".join(lines) + "\n"


def judge_markdown(j: dict) -> list[str]:
    """The judge-perplexity table of the data card."""
    temps = list(j["by_temperature"])
    lines = [
        f"Judge perplexity (SmolLM2-135M-Instruct as a language model on the completion text alone, "
        f"`rsoup_lib.judge`; lower reads more fluently): samples on the first {j['n_prompts']} test prompts, "
        f"seed {j['seed']}, at most {j['max_new_tokens']} new tokens, drawn as the chapters' evaluator draws "
        f"them (whole vocabulary; the chapters sample at temperature 1.0), and {j['n_teacher_reviews']} of the "
        "teacher's held-out reviews:",
        "",
        "| texts | " + " | ".join(f"temperature {t}" for t in temps) + " |",
        "|---|" + "---|" * len(temps),
        "| `tiny`'s samples | " + " | ".join(f"{j['by_temperature'][t]['tiny']:.1f}" for t in temps) + " |",
        "| SmolLM2's own samples | " + " | ".join(f"{j['by_temperature'][t]['smollm2']:.1f}" for t in temps) + " |",
        "| the teacher's held-out reviews (not sampled: one value) | "
        + " | ".join(f"{j['teacher_heldout']:.1f}" for _ in temps) + " |",
        "",
        "`tiny` / SmolLM2: " + ", ".join(
            f"{j['by_temperature'][t]['tiny'] / j['by_temperature'][t]['smollm2']:.1f}x at temperature {t}" for t in temps)
        + f" (measured in {j['seconds']:.0f} s).",
    ]
    return lines


def write_card(r: dict, card: Path = DATA_DIR / "DATA_CARD.md") -> None:
    from rsoup_lib.io import atomic_write_text

    text = card.read_text()
    begin, end = "<!-- report:begin -->", "<!-- report:end -->"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    atomic_write_text(card, head + begin + "\n" + markdown(r) + end + tail)
