"""Bad input never breaks a user's work (issue #15, part 1).

Every row of ``CASES`` is one malformed ``rsoup`` invocation: a missing or unreadable path, a
folder that is not a model, a corrupt or truncated safetensors file, checkpoints that do not fit
together, an unknown name, a malformed weights string, a number out of range, a broken config
file, an ``--out`` that holds someone else's work. Each must

- exit with status 2,
- print exactly one line on stderr, ``rsoup COMMAND: error: ...``, that contains the row's
  expected text (what was wrong; the message also says what to do), and no traceback,
- leave nothing behind: the listings (name, size, mtime) of the working folder, the run cache
  (its ``.locks/`` aside) and the shared assets are the same before and after.

The rows run in-process through ``rsoup_lib.cli.main`` (what the ``rsoup`` script calls), with
the file descriptors captured, so the table costs seconds rather than one interpreter start per
row; ``test_one_line_from_a_real_process`` runs a few of them as real processes.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from rsoup_lib.cli import main
from rsoup_lib.errors import UserError

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- shared assets
@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Model folders (good, other seed, other shape, other tokenizer, truncated, garbage, bad
    config), a LoRA adapter and a finished ``rsoup train`` run, built once for the module."""
    import numpy as np

    from rsoup_lib.checkpoints import write_safetensors
    from rsoup_lib.models import tiny_random
    from rsoup_lib.rl import RLConfig, train

    root = tmp_path_factory.mktemp("assets")

    def save(name, **kw):
        model, tok = tiny_random(**kw)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        return root / name

    save("model", seed=0)
    save("model2", seed=1)
    save("wide", seed=0, hidden_size=32)
    shutil.copytree(root / "model2", root / "othertok")
    tok = json.loads((root / "othertok" / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, b = sorted(vocab)[10], sorted(vocab)[20]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # same sizes, a different tokenizer
    (root / "othertok" / "tokenizer.json").write_text(json.dumps(tok))
    shutil.copytree(root / "model", root / "trunc")
    weights = root / "trunc" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    shutil.copytree(root / "model", root / "garbage")
    (root / "garbage" / "model.safetensors").write_bytes(b"this is not a safetensors file")
    shutil.copytree(root / "model", root / "badcfg")
    (root / "badcfg" / "config.json").write_bytes(b"\xff\xfe{ not json")
    (root / "adapter").mkdir()
    (root / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    write_safetensors(root / "adapter" / "adapter_model.safetensors",
                      {f"{prefix}.lora_A.weight": np.zeros((2, 64), np.float32),
                       f"{prefix}.lora_B.weight": np.zeros((64, 2), np.float32)}, {})  # fmt: skip
    cfg = RLConfig(policy="tiny-random", steps=1, batch_prompts=2, k=2, max_new_tokens=4, checkpoint_every=0)
    train(cfg, root / "run", progress=False)
    return root


# ----------------------------------------------------------------------------- set-ups
def _file(rel: str, text: str | bytes = "x\n"):
    """A set-up that writes ``text`` to ``tmp/rel``."""

    def setup(tmp: Path, env) -> None:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    return setup


def _dir(rel: str):
    def setup(tmp: Path, env) -> None:
        (tmp / rel).mkdir(parents=True)

    return setup


def _both(*setups):
    def setup(tmp: Path, env) -> None:
        for s in setups:
            s(tmp, env)

    return setup


def _cache_is_a_file(tmp: Path, env) -> None:
    (tmp / "cachefile").write_text("not a folder\n")
    env.setenv("RSOUP_CACHE_DIR", str(tmp / "cachefile"))


def _corrupt_cache_entry(tmp: Path, env) -> None:
    from rsoup_lib import cache

    entry = cache.cached_run("rl", {"seed": 0}, lambda d: (d / "w.txt").write_text("w"))
    (entry / cache.ENTRY_FILE).write_text("{ torn")


def _manifest(tmp: Path, env) -> None:
    """A data folder whose manifest lists a file that has changed since."""
    from rsoup_lib.manifest import record_artifact

    (tmp / "d" / "thing").mkdir(parents=True)
    (tmp / "d" / "thing" / "a.bin").write_bytes(b"abc")
    record_artifact(tmp / "d", "thing", [tmp / "d" / "thing" / "a.bin"], {}, 1.0)
    (tmp / "d" / "thing" / "a.bin").write_bytes(b"abd")


def _warp_out_of_another_config(tmp: Path, env) -> None:
    (tmp / "w").mkdir()
    (tmp / "w" / "warp.json").write_text(json.dumps({"config": {"m": 3}, "iterations": [], "front": []}))


# A valid WARP config on tiny-random (nothing runs: every row using it fails before training).
WARP_OK = "m: 2\nrl:\n  policy: tiny-random\n  steps: 1\n  batch_prompts: 2\n  k: 2\n  max_new_tokens: 4\n"


# A valid AIHF config on tiny-random (nothing runs: every row using it fails before training).
AIHF_OK = "methods: [dpo]\npolicy: tiny-random\nn_demos: 2\nn_pairs: 2\nsteps: 1\nmax_new_tokens: 4\n"
A = "aihf --config {tmp}/a.yaml --out {tmp}/ao"


def _warp(text: str, name: str = "w.yaml"):
    return _file(name, text)


# ----------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Case:
    id: str
    argv: str  # formatted with {tmp} and the assets ({model}, {run}, ...), then shlex-split
    expect: str  # text the one error line must contain
    setup: Callable | None = None


T = "train --policy tiny-random --steps 1 --batch-prompts 2 --k 2 --max-new-tokens 4 --no-progress --out {tmp}/run"
E = "eval --policy tiny-random --n 2 --max-new-tokens 4"
G = "generate --policy tiny-random --n 1 --max-new-tokens 4"
MERGE = "merge --method lerp --models {model} {model2} --out {tmp}/m"

CASES = [
    # --- book
    Case("book-unknown-profile", "book --profile nope", "invalid choice: 'nope'"),
    Case("book-unknown-notebook", "book --only 99_nothing --no-html --build-dir {tmp}/b", "no notebook '99_nothing'"),
    Case("book-override-without-equals", "book -p steps --no-html --build-dir {tmp}/b", "not of the form name=value"),
    Case("book-unknown-parameter", "book --only 00_setup -p nosuch=1 --no-html --build-dir {tmp}/b",
         "no parameter 'nosuch'"),
    Case("book-override-wrong-type", "book --only 00_setup -p steps=abc --no-html --build-dir {tmp}/b",
         "steps='abc': expected a int"),
    Case("book-build-dir-is-a-file", "book --only 00_setup --no-html --build-dir {tmp}/f", "is not a folder",
         _file("f")),
    # --- cache
    Case("cache-no-action", "cache", "required: ACTION"),
    Case("cache-unknown-action", "cache nope", "invalid choice: 'nope'"),
    Case("cache-clear-unknown-kind", "cache clear --kind nope", "unknown kind 'nope'"),
    Case("cache-dir-is-a-file", "cache ls", "is not a folder", _cache_is_a_file),
    Case("cache-corrupt-entry", "cache ls", "is corrupt", _corrupt_cache_entry),
    # --- data
    Case("data-no-action", "data", "required: ACTION"),
    Case("data-unknown-stage", "data build --small --only nope --out {tmp}/d", "unknown stage(s) ['nope']"),
    Case("data-verify-missing-folder", "data verify --data {tmp}/missing", "MANIFEST.json is missing"),
    Case("data-verify-corrupt-manifest", "data verify --data {tmp}/d", "MANIFEST.json is corrupt",
         _file("d/MANIFEST.json", "{ torn")),
    Case("data-verify-changed-file", "data verify --data {tmp}/d", "a.bin is corrupt", _manifest),
    Case("data-report-missing-folder", "data report --no-smollm2 --data {tmp}/missing", "is missing"),
    Case("data-report-judge-without-smollm2", "data report --judge --no-smollm2", "--judge needs SmolLM2"),
    Case("data-build-out-is-a-file", "data build --small --only prompts --out {tmp}/f", "is not a folder",
         _file("f")),
    Case("data-build-teacher-without-prompts", "data build --small --only teacher --out {tmp}/d",
         "prompt file"),
    Case("data-build-negative-threads", "data build --small --only prompts --threads -1 --out {tmp}/d",
         "threads=-1"),
    # --- merge
    Case("merge-unknown-method", "merge --method nope --models {model} --out {tmp}/m", "invalid choice: 'nope'"),
    Case("merge-missing-folder", "merge --method lerp --models {model} {tmp}/missing --out {tmp}/m",
         "does not exist"),
    Case("merge-file-not-folder", "merge --method lerp --models {model} {tmp}/f --out {tmp}/m", "is not a folder",
         _file("f")),
    Case("merge-folder-not-a-model", "merge --method lerp --models {model} {tmp}/e --out {tmp}/m",
         "holds neither config.json", _dir("e")),
    Case("merge-garbage-safetensors", "merge --method lerp --models {model} {garbage} --out {tmp}/m",
         "not a readable safetensors file"),
    Case("merge-truncated-safetensors", "merge --method lerp --models {model} {trunc} --out {tmp}/m",
         "is truncated"),
    Case("merge-mismatched-shapes", "merge --method lerp --models {model} {wide} --out {tmp}/m",
         "incompatible checkpoints"),
    Case("merge-mismatched-tokenizers", "merge --method lerp --models {model} {othertok} --out {tmp}/m",
         "different tokenizers"),
    Case("merge-adapter-with-model", "merge --method lerp --models {model} {adapter} --out {tmp}/m",
         "mixes model folders and adapter folders"),
    Case("merge-weights-off-simplex", MERGE + " --weights 0.5 0.6", "sum to 1.1, not 1"),
    Case("merge-negative-weight", MERGE + " --weights -1 2", "must all be >= 0"),
    Case("merge-too-few-weights", MERGE + " --weights 1", "got 1 weights for 2 models"),
    Case("merge-weight-not-a-number", MERGE + " --weights abc 1", "invalid float value: 'abc'"),
    Case("merge-lam-out-of-range", "merge --method slerp --init {model} --models {model2} {model} --lam 1.5 --out {tmp}/m",
         "lam=1.5 is outside [0, 1]"),
    Case("merge-eta-negative", "merge --method liti --init {model} --models {model2} --eta -0.1 --out {tmp}/m",
         "eta=-0.1 is outside [0, 1]"),
    Case("merge-slerp-without-init", "merge --method slerp --models {model} {model2} --out {tmp}/m",
         "needs the init"),
    Case("merge-liti-two-models", "merge --method liti --init {model} --models {model} {model2} --out {tmp}/m",
         "takes exactly 1 model"),
    Case("merge-out-exists", MERGE, "exists: choose a new folder or pass --overwrite", _dir("m")),
    Case("merge-out-is-an-input", "merge --method lerp --models {model} {model2} --out {model2}",
         "is one of the inputs"),
    Case("merge-out-under-a-file", "merge --method lerp --models {model} {model2} --out {tmp}/f/m",
         "is not a folder", _file("f")),
    Case("merge-unknown-granularity", "merge --method slerp --init {model} --models {model} {model2} --granularity x --out {tmp}/m",
         "invalid choice: 'x'"),
    Case("merge-parameter-of-another-method", MERGE + " --eta 0.5", "lerp has no parameter 'eta'"),
    Case("merge-lora-mode-with-models", MERGE + " --lora-mode ab", "--lora-mode applies to adapter folders only"),
    Case("merge-missing-init", "merge --method liti --init {tmp}/missing --models {model} --out {tmp}/m",
         "does not exist"),
    Case("merge-weights-file-missing", "merge --method lerp --models {model} {tmp}/c --out {tmp}/m",
         "model.safetensors is missing", _file("c/config.json", "{}")),
    # --- profiles
    Case("profiles-unknown-flag", "profiles --nope", "unrecognized arguments: --nope"),
    Case("profiles-extra-argument", "profiles cpu", "unrecognized arguments: cpu"),
    # --- train
    Case("train-unknown-reward", T + " --reward nope", "unknown reward 'nope'"),
    Case("train-weight-with-equals", T + " --reward sentiment=abc", "write a weight as name:weight"),
    Case("train-weight-not-a-number", T + " --reward sentiment:abc", "weight 'abc' of 'sentiment' is not a number"),
    Case("train-all-zero-weights", T + " --reward sentiment:0,conciseness:0", "every weight is 0"),
    Case("train-negative-weight", T + " --reward sentiment:-1", "weight -1 of 'sentiment' is negative"),
    Case("train-empty-reward-term", T + " --reward sentiment,,conciseness", "empty term"),
    Case("train-reward-twice", T + " --reward sentiment:0.5,sentiment:0.5", "'sentiment' appears twice"),
    Case("train-infinite-weight", T + " --reward sentiment:inf", "must be finite"),
    Case("train-negative-steps", T + " --steps -1", "steps=-1"),
    Case("train-steps-not-a-number", T + " --steps ten", "invalid int value: 'ten'"),
    Case("train-k-1", T + " --k 1", "k=1: RLOO needs at least 2"),
    Case("train-negative-beta", T + " --beta -1", "beta=-1.0 must be >= 0"),
    Case("train-nan-beta", T + " --beta nan", "beta=nan must be >= 0"),
    Case("train-negative-lr", T + " --lr -0.1", "lr=-0.1 must be >= 0"),
    Case("train-dtype-float8", T + " --dtype float8", "dtype 'float8' is not one of"),
    Case("train-device-tpu", T + " --device tpu", "device 'tpu' is not one of"),
    Case("train-cuda-without-gpu", T + " --device cuda", "torch sees no GPU"),
    Case("train-ema-rate-2", T + " --ema-rate 2", "ema_rate 2.0 must lie in [0, 1]"),
    Case("train-unknown-anchor", T + " --anchor nope", "anchor 'nope' is not one of"),
    Case("train-zero-temperature", T + " --temperature 0", "temperature=0.0 must be > 0"),
    Case("train-batch-not-multiple-of-accum", T.replace("--batch-prompts 2", "--batch-prompts 3") + " --grad-accum 2",
         "must be a multiple of grad_accum=2"),
    Case("train-zero-new-tokens", T + " --max-new-tokens 0", "max_new_tokens=0 must be >= 1"),
    Case("train-negative-checkpoint-every", T + " --checkpoint-every -1", "checkpoint_every=-1 must be >= 0"),
    Case("train-negative-snapshot-every", T + " --snapshot-every -1", "snapshot_every=-1 must be >= 0"),
    Case("train-negative-grad-norm", T + " --max-grad-norm -1", "max_grad_norm=-1.0 must be >= 0"),
    Case("train-negative-weight-decay", T + " --weight-decay -1", "weight_decay=-1.0 must be >= 0"),
    Case("train-lora-rank-0", T + " --lora --lora-rank 0", "lora_rank=0 must be >= 1"),
    Case("train-logprob-chunk-0", T + " --logprob-chunk 0", "logprob_chunk=0 must be >= 1"),
    Case("train-negative-threads", T + " --threads -1", "threads=-1"),
    Case("train-unknown-split", T + " --prompt-split nope", "unknown prompt split 'nope'"),
    Case("train-missing-policy-folder", T.replace("tiny-random", "{tmp}/missing"), "does not exist"),
    Case("train-policy-not-a-model", T.replace("tiny-random", "{tmp}/e"), "holds no config.json", _dir("e")),
    Case("train-policy-is-an-adapter", T.replace("tiny-random", "{adapter}"), "is a LoRA adapter"),
    Case("train-policy-truncated", T.replace("tiny-random", "{trunc}"), "is truncated"),
    Case("train-policy-garbage", T.replace("tiny-random", "{garbage}"), "not a readable safetensors file"),
    Case("train-policy-bad-config", T.replace("tiny-random", "{badcfg}"), "config.json"),
    Case("train-policy-not-in-cache", T.replace("tiny-random", "cache:nokey/policy"), "is not in the cache"),
    Case("train-missing-reference", T + " --reference {tmp}/missing", "does not exist"),
    Case("train-out-holds-another-config", T.replace("{tmp}/run", "{run}") + " --steps 2",
         "holds a run of another config"),
    Case("train-out-is-a-file", T.replace("{tmp}/run", "{tmp}/f"), "is not a folder", _file("f")),
    Case("train-out-holds-other-files", T.replace("{tmp}/run", "{tmp}/o"), "is not a run folder",
         _file("o/notes.txt")),
    # --- train, group-invariant RLOO (book chapter 5)
    Case("train-group-unknown-method", T + " --group-method nope", "method 'nope' is not one of"),
    Case("train-group-negative-alpha", T + " --group-method group --group-alpha -1", "alpha=-1.0 must be >= 0"),
    Case("train-group-flag-without-method", T + " --group-alpha 2", "--group-alpha needs --group-method"),
    Case("train-group-unknown-holdout", T + " --group-method group --group-holdout nope", "holdout 'nope' is not a value"),
    Case("train-group-unknown-field", T + " --group-method group --group-group-field nope", "have no field 'nope'"),
    Case("train-group-zero-kl", T + " --group-method group --group-c0 0 --group-c1 0", "c0 + c1 = 0.0 must be > 0"),
    Case("train-group-zero-classifier-steps", T + " --group-method group --group-classifier-steps 0",
         "classifier_steps=0 must be >= 1"),
    # --- eval
    Case("eval-missing-policy", E.replace("tiny-random", "{tmp}/missing"), "does not exist"),
    Case("eval-unknown-reward", E + " --rewards nope", "unknown reward 'nope'"),
    Case("eval-no-reward", E + " --rewards ,", "no reward"),
    Case("eval-all-zero-weights", E + " --rewards sentiment:0,conciseness:0", "every weight is 0"),
    Case("eval-n-0", E + " --n 0", "--n must be at least 1"),
    Case("eval-dtype-float8", E + " --dtype float8", "dtype 'float8' is not one of"),
    Case("eval-device-tpu", E + " --device tpu", "device 'tpu' is not one of"),
    Case("eval-unknown-split", E + " --split nope", "unknown prompt split 'nope'"),
    Case("eval-missing-sft", E + " --sft {tmp}/missing", "does not exist"),
    Case("eval-zero-new-tokens", E + " --max-new-tokens 0", "--max-new-tokens must be at least 1"),
    Case("eval-by-unknown-field", E + " --by nope", "the prompts have no field 'nope'"),
    Case("eval-negative-samples", E + " --samples -1", "--samples must be at least 0"),
    Case("eval-truncated-policy", E.replace("tiny-random", "{trunc}"), "is truncated"),
    Case("eval-unfinished-run", E.replace("tiny-random", "{tmp}/r"), "unfinished rsoup train run",
         _file("r/config.json", json.dumps({"policy": "tiny-random", "reward": "sentiment"}))),
    # --- generate
    Case("generate-missing-policy", G.replace("tiny-random", "{tmp}/missing"), "does not exist"),
    Case("generate-garbage-policy", G.replace("tiny-random", "{garbage}"), "not a readable safetensors file"),
    Case("generate-n-0", G + " --n 0", "--n must be at least 1"),
    Case("generate-negative-temperature", G + " --temperature -1", "--temperature must be at least 0"),
    Case("generate-unknown-split", G + " --split nope", "unknown prompt split 'nope'"),
    Case("generate-zero-new-tokens", G + " --max-new-tokens 0", "--max-new-tokens must be at least 1"),
    Case("generate-negative-top-k", G + " --top-k -1", "--top-k must be at least 0"),
    Case("generate-unknown-flag", G + " --dtype float8", "unrecognized arguments: --dtype float8"),
    # --- warp
    Case("warp-missing-config", "warp --config {tmp}/missing.yaml --out {tmp}/w", "does not exist"),
    Case("warp-config-is-a-folder", "warp --config {tmp}/c.yaml --out {tmp}/w", "is a folder", _dir("c.yaml")),
    Case("warp-config-not-utf8", "warp --config {tmp}/w.yaml --out {tmp}/w", "is not UTF-8 text",
         _warp(b"\xff\xfe rl: {}")),  # fmt: skip
    Case("warp-broken-yaml", "warp --config {tmp}/w.yaml --out {tmp}/w", "is not valid YAML",
         _warp("rl:\n  policy: [tiny\nm: 2\n")),
    Case("warp-broken-toml", "warp --config {tmp}/w.toml --out {tmp}/w", "is not valid TOML",
         _warp("[rl\npolicy = 'tiny'\n", "w.toml")),
    Case("warp-json-config", "warp --config {tmp}/w.json --out {tmp}/w", "use a .yaml, .yml or .toml file",
         _warp("{}", "w.json")),
    Case("warp-top-level-list", "warp --config {tmp}/w.yaml --out {tmp}/w", "must be a mapping",
         _warp("- 1\n- 2\n")),
    Case("warp-rl-not-a-mapping", "warp --config {tmp}/w.yaml --out {tmp}/w", "the rl section must be a mapping",
         _warp("rl: 3\n")),
    Case("warp-unknown-top-key", "warp --config {tmp}/w.yaml --out {tmp}/w", "unknown key(s) ['mm'] in the top level",
         _warp(WARP_OK + "mm: 2\n")),
    Case("warp-unknown-rl-key", "warp --config {tmp}/w.yaml --out {tmp}/w", "unknown key(s) ['stepz'] in the rl",
         _warp(WARP_OK.replace("steps", "stepz"))),
    Case("warp-m-wrong-type", "warp --config {tmp}/w.yaml --out {tmp}/w", "m='two' must be an int",
         _warp(WARP_OK.replace("m: 2", "m: two"))),
    Case("warp-m-bool", "warp --config {tmp}/w.yaml --out {tmp}/w", "m=True must be an int",
         _warp(WARP_OK.replace("m: 2", "m: true"))),
    Case("locomotion-missing-config", "locomotion --config {tmp}/missing.yaml --out {tmp}/lo", "does not exist"),
    Case("locomotion-broken-yaml", "locomotion --config {tmp}/l.yaml --out {tmp}/lo", "is not valid YAML", _file("l.yaml", "seeds: [0, 1\n")),
    Case("locomotion-unknown-key", "locomotion --config {tmp}/l.yaml --out {tmp}/lo", "unknown key(s) ['stepz'] in the top level", _file("l.yaml", "stepz: 3\n")),
    Case("locomotion-unknown-ppo-key", "locomotion --config {tmp}/l.yaml --out {tmp}/lo", "unknown key(s) ['lrr'] in the ppo section",
         _file("l.yaml", "ppo:\n  lrr: 0.1\n")),
    Case("locomotion-wrong-type", "locomotion --config {tmp}/l.yaml --out {tmp}/lo", "finetune_steps='many' must be an int", _file("l.yaml", "finetune_steps: many\n")),
    Case("locomotion-seeds-not-a-list", "locomotion --config {tmp}/l.yaml --out {tmp}/lo", "seeds must be a list", _file("l.yaml", "seeds: 3\n")),
    # --- aihf
    Case("aihf-missing-config", "aihf --config {tmp}/missing.yaml --out {tmp}/ao", "does not exist"),
    Case("aihf-broken-yaml", A, "is not valid YAML", _file("a.yaml", "methods: [dpo\n")),
    Case("aihf-top-level-list", A, "must be a mapping", _file("a.yaml", "- 1\n- 2\n")),
    Case("aihf-unknown-key", A, "unknown key(s) ['stepz']", _file("a.yaml", AIHF_OK.replace("steps", "stepz"))),
    Case("aihf-unknown-method", A, "methods=['dpo', 'ppo'] must be a list of",
         _file("a.yaml", AIHF_OK.replace("[dpo]", "[dpo, ppo]"))),
    Case("aihf-steps-wrong-type", A, "steps='many' must be an int", _file("a.yaml", AIHF_OK.replace("steps: 1", "steps: many"))),
    Case("aihf-both-lambdas-zero", A, "lam_d and lam_p are both 0", _file("a.yaml", AIHF_OK + "lam_d: 0\nlam_p: 0\n")),
    Case("aihf-negative-temperature", A, "label_temperature=-1 must be a number >= 0",
         _file("a.yaml", AIHF_OK + "label_temperature: -1\n")),
    Case("aihf-too-many-pairs", A, "must not exceed", _file("a.yaml", AIHF_OK.replace("n_pairs: 2", "n_pairs: 9999"))),
    Case("aihf-explicit-steps-not-multiple", A, "must be a multiple of iterations",
         _file("a.yaml", AIHF_OK.replace("[dpo]", "[aihf-explicit]") + "iterations: 3\n")),
    Case("aihf-eval-prompts-0", A + " --eval-prompts 0", "--eval-prompts must be at least 1", _file("a.yaml", AIHF_OK)),
    Case("aihf-out-is-a-file", "aihf --config {tmp}/a.yaml --out {tmp}/f", "is not a folder",
         _both(_file("a.yaml", AIHF_OK), _file("f"))),
    Case("aihf-out-holds-other-files", A, "holds other files", _both(_file("a.yaml", AIHF_OK), _file("ao/notes.txt"))),
    Case("warp-rl-steps-wrong-type", "warp --config {tmp}/w.yaml --out {tmp}/w", "rl.steps='ten' must be an int",
         _warp(WARP_OK.replace("steps: 1", "steps: ten"))),
    Case("warp-front-etas-wrong-type", "warp --config {tmp}/w.yaml --out {tmp}/w",
         "front_etas='abc' must be a list of numbers", _warp(WARP_OK + "front_etas: abc\n")),
    Case("warp-eta-out-of-range", "warp --config {tmp}/w.yaml --out {tmp}/w", "must lie in [0, 1]",
         _warp(WARP_OK + "eta: 1.5\n")),
    Case("warp-front-eta-out-of-range", "warp --config {tmp}/w.yaml --out {tmp}/w", "must lie in [0, 1]",
         _warp(WARP_OK + "front_etas: [0, 2]\n")),
    Case("warp-m-1", "warp --config {tmp}/w.yaml --out {tmp}/w", "m=1: SLERP merges at least 2",
         _warp(WARP_OK.replace("m: 2", "m: 1"))),
    Case("warp-zero-iterations", "warp --config {tmp}/w.yaml --out {tmp}/w", "iterations=0",
         _warp(WARP_OK + "iterations: 0\n")),
    Case("warp-unknown-granularity", "warp --config {tmp}/w.yaml --out {tmp}/w", "unknown granularity 'nope'",
         _warp(WARP_OK + "granularity: nope\n")),
    Case("warp-zero-eval-prompts", "warp --config {tmp}/w.yaml --out {tmp}/w", "eval_prompts=0 must be >= 1",
         _warp(WARP_OK + "eval_prompts: 0\n")),
    Case("warp-sft-anchor", "warp --config {tmp}/w.yaml --out {tmp}/w", "use the EMA anchor",
         _warp(WARP_OK + "  anchor: sft\n")),
    Case("warp-negative-beta", "warp --config {tmp}/w.yaml --out {tmp}/w", "beta=-1 must be >= 0",
         _warp(WARP_OK + "  beta: -1\n")),
    Case("warp-dtype-float8", "warp --config {tmp}/w.yaml --out {tmp}/w", "dtype 'float8' is not one of",
         _warp(WARP_OK + "  dtype: float8\n")),
    Case("warp-unknown-reward", "warp --config {tmp}/w.yaml --out {tmp}/w", "unknown reward 'nope'",
         _warp(WARP_OK + "  reward: nope\n")),
    Case("warp-out-is-a-train-run", "warp --config {tmp}/w.yaml --out {run}", "is not a WARP output folder",
         _warp(WARP_OK)),
    Case("warp-out-holds-another-config", "warp --config {tmp}/w.yaml --out {tmp}/w",
         "holds the output of another WARP config", _both(_warp(WARP_OK, "w.yaml"), _warp_out_of_another_config)),
    Case("warp-out-is-a-file", "warp --config {tmp}/w.yaml --out {tmp}/f", "is not a folder",
         _both(_warp(WARP_OK), _file("f"))),
]


def _listing(root: Path) -> dict[str, tuple]:
    """(size, mtime) of every file and folder under ``root``, the cache's lock files aside."""
    from rsoup_lib.cache import LOCKS

    if not root.exists():
        return {}
    if root.is_file():
        return {".": (root.stat().st_size, root.stat().st_mtime_ns)}
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != LOCKS]
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return out


def _argv(case: Case, tmp: Path, assets: Path) -> list[str]:
    names = {p.name: str(p) for p in assets.iterdir()}
    return shlex.split(case.argv.format(tmp=tmp, **names))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, assets, monkeypatch, capfd):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    if case.setup:
        case.setup(work, monkeypatch)
    argv = _argv(case, work, assets)
    watched = [work, Path(os.environ["RSOUP_CACHE_DIR"]), assets]
    before = [_listing(p) for p in watched]
    capfd.readouterr()
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse
        status = exit_.code
    out, err = capfd.readouterr()
    lines = [l for l in err.splitlines() if l.strip()]
    where = f"rsoup {' '.join(argv)}\nstderr:\n{err}"
    assert status == 2, f"exit status {status}, not 2: {where}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr, not 1: {where}"
    assert "Traceback" not in err, where
    assert lines[0].startswith(("rsoup: error: ", f"rsoup {argv[0]}")), where
    assert case.expect in lines[0], f"expected {case.expect!r} in the message: {where}"
    after = [_listing(p) for p in watched]
    for path, b, a in zip(watched, before, after):
        assert a == b, f"{path} changed: added {sorted(set(a) - set(b))}, removed {sorted(set(b) - set(a))}, " \
                       f"modified {sorted(k for k in set(a) & set(b) if a[k] != b[k])}: {where}"


def test_the_table_covers_every_command_with_enough_cases():
    from rsoup_lib.cli import COMMANDS

    commands = {shlex.split(c.argv)[0] for c in CASES}
    assert commands == {name for name, _ in COMMANDS}
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id", ["train-dtype-float8", "merge-truncated-safetensors", "warp-broken-yaml"])
def test_one_line_from_a_real_process(case_id, tmp_path, assets):
    """The same promise from the ``rsoup`` entry point in a fresh interpreter."""
    case = next(c for c in CASES if c.id == case_id)
    if case.setup:
        case.setup(tmp_path, None)
    proc = subprocess.run([sys.executable, "-m", "rsoup_lib.cli", *_argv(case, tmp_path, assets)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)  # fmt: skip
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and case.expect in lines[0], proc.stderr


# ----------------------------------------------------------------------------- library level
def test_a_nan_reward_stops_training_before_any_checkpoint(tmp_path):
    from rsoup_lib.rl import RLConfig, train

    cfg = RLConfig(policy="tiny-random", steps=3, batch_prompts=2, k=2, max_new_tokens=4, checkpoint_every=1)

    def broken_reward(prompts, completions):
        return [float("nan")] * len(completions)

    with pytest.raises(UserError, match="reward 'broken_reward' returned nan"):
        train(cfg, tmp_path / "run", reward_fn=broken_reward, progress=False)
    assert not (tmp_path / "run").exists()  # nothing half-made is left behind
    with pytest.raises(UserError, match="returned nan"):
        train(cfg, tmp_path / "run", reward_fn=lambda p, c: [math.nan] * len(c), progress=False)
    assert not (tmp_path / "run").exists()


def test_a_nan_reward_after_a_checkpoint_keeps_the_checkpoint(tmp_path):
    """A reward that breaks at step 2: the step-1 checkpoint stays, intact, to resume from."""
    from rsoup_lib.rl import RLConfig, train
    from rsoup_lib.runs import latest_checkpoint

    cfg = RLConfig(policy="tiny-random", steps=3, batch_prompts=2, k=2, max_new_tokens=4, checkpoint_every=1)
    calls = []

    def breaks_later(prompts, completions):
        calls.append(1)
        return [0.5 if len(calls) < 2 else math.inf] * len(completions)

    with pytest.raises(UserError, match="reward 'breaks_later' returned inf"):
        train(cfg, tmp_path / "run", reward_fn=breaks_later, progress=False)
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt is not None and ckpt.name == "step-000001"
    train(cfg, tmp_path / "run", reward_fn=lambda p, c: [0.5] * len(c), progress=False)
    assert (tmp_path / "run" / "summary.json").is_file()


def test_eval_takes_the_folder_rsoup_train_wrote(assets, capfd):
    """``rsoup eval --policy RUN_DIR`` evaluates RUN_DIR/policy, with the KL to its recorded init."""
    assert main(["eval", "--policy", str(assets / "run"), "--n", "2", "--max-new-tokens", "4", "--json"]) == 0
    result = json.loads(capfd.readouterr().out)
    assert result["n"] == 2 and result["kl_to_sft"] is not None
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "run folder" in " ".join(capfd.readouterr().out.split())
