"""File-to-file merging: ``merge_folders``, what ``rsoup merge`` runs.

Inputs are Hugging Face model folders (config.json + safetensors, sharded or not) or peft LoRA
adapter folders (adapter_config.json + adapter_model.safetensors); all inputs of one merge are
of the same kind. The output folder is written atomically and only after every check passed
(flags through the registry ``rsoup_lib.merge.METHODS``, then compatibility from the safetensors
headers alone):

- models  -> a model folder with the reference's shard layout, dtypes, config and tokenizer
             (the reference is ``init`` when given, else the first model); transformers loads it.
- adapters, lora_mode "delta" (default) -> a full model folder: base (``init``) + the merged
             weight delta, Delta W = merge of s_i B_i A_i. Why a full model rather than an
             adapter: it is exact for every method (SLERP and LITI included) without an SVD
             truncation or a rank that grows with the number of adapters, and the result loads
             like any other policy. Adapters are assumed trained from peft's default init
             (B = 0), so their task vectors are the Delta W_i themselves.
- adapters, lora_mode "ab" (lerp only) -> a peft adapter folder whose A and B are the weighted
             averages of the inputs' A and B (the official rewarded-soups code; not linear in
             the weights, see ``rsoup_lib.merge.lora_ab_lerp``); peft loads it on the base model.

The formulas are those of ``rsoup_lib.merge`` run on numpy arrays; every file is read and
written by ``rsoup_lib.checkpoints`` (numpy safetensors, no torch: see there why). Beside the
weights, the output holds ``rsoup_merge.json``: method, inputs and the parameters it ran with.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from rsoup_lib.checkpoints import Checkpoint
from rsoup_lib.errors import UserError
from rsoup_lib.merge import LORA_MODES, check_compatible, lora_ab_lerp, lora_deltas, lora_modules, merge, method_named

PROVENANCE = "rsoup_merge.json"


def merge_folders(method, models, out, init=None, *, lora_mode="delta", overwrite=False, **params) -> dict:
    """Merge checkpoint folders into ``out`` with ``method`` and its parameters (``weights``
    for lerp, ``lam`` and ``granularity`` for slerp, ``eta`` for liti; None: the default);
    returns ``{"out", "kind", "tensors", "bytes"}``. See the module docstring."""
    if not models:
        raise UserError("give at least one folder with --models")
    params = method_named(method).resolve(len(models), init is not None, params)
    if lora_mode not in LORA_MODES:
        raise UserError(f"unknown --lora-mode {lora_mode!r}: use one of {', '.join(LORA_MODES)}")
    run = {"method": method, **params, "lora_mode": lora_mode}
    inputs, init_ck, kind = _open_inputs(models, init, Path(out), overwrite, run)
    labels = {str(ck.path): ck.specs for ck in inputs}
    if kind == "model":
        if init_ck is not None:
            if init_ck.kind != "model":
                raise UserError(f"--init {init} is an adapter; with model folders --init must be a model folder")
            labels = {str(init_ck.path): init_ck.specs, **labels}
        if lora_mode != "delta":
            raise UserError("--lora-mode applies to adapter folders only")
        check_compatible(labels)
        _check_same_tokenizer([*([init_ck] if init_ck is not None else []), *inputs])
        return _merge_models(method, inputs, init_ck, out, params)
    check_compatible(labels)  # adapters: same target modules, same ranks
    if lora_mode == "ab":
        if method != "lerp":
            raise UserError("--lora-mode ab (averaging A and B separately) is defined for --method lerp only")
        if init_ck is not None:
            print("note: --init is not used by --lora-mode ab (A and B are averaged directly)", file=sys.stderr)
        alphas = {ck.lora_alpha_and_rslora() for ck in inputs}
        if len(alphas) > 1:
            raise UserError(f"--lora-mode ab needs adapters with the same lora_alpha and use_rslora, got {sorted(alphas)}")
        return _merge_adapters_ab(inputs, out, params, init_ck)
    if init_ck is None or init_ck.kind != "model":
        raise UserError("merging LoRA adapters in delta mode needs --init: the base model folder the adapters were trained on")
    return _merge_adapters_delta(method, inputs, init_ck, out, params)


def _open_inputs(models, init, out: Path, overwrite: bool, run: dict) -> tuple[list[Checkpoint], Checkpoint | None, str]:
    """(the models' checkpoints, the init's or None, their one kind), from the headers alone,
    after checking that ``out`` is a new folder (or ``overwrite``, or the output of this same
    merge: a rerun, e.g. after a kill) and none of the inputs."""
    inputs = [Checkpoint(m) for m in models]
    init_ck = Checkpoint(init) if init is not None else None
    for ck in [*inputs, *([init_ck] if init_ck else [])]:
        if out.resolve() == ck.path.resolve():
            raise UserError(f"--out {out} is one of the inputs: write the merge to a new folder")
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if (out.exists() and not out.is_dir()) or (parent is not None and not parent.is_dir()):
        raise UserError(f"--out {out} is not a folder (or lies under a file): choose a new folder")
    kinds = {ck.kind for ck in inputs}
    if len(kinds) > 1:
        raise UserError("--models mixes model folders and adapter folders: merge one kind at a time")
    kind = kinds.pop()
    if kind == "adapter":  # what _merge_adapters_* record
        run = {**run, "method": "lerp" if run["lora_mode"] == "ab" else run["method"]}
    else:
        run = {k: v for k, v in run.items() if k != "lora_mode"}
    if out.exists() and not overwrite and _provenance_of(out) != _provenance(run, inputs, init_ck):
        raise UserError(f"--out {out} exists: choose a new folder or pass --overwrite")
    return inputs, init_ck, kind


TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer.model", "vocab.txt")


def _tokenizer_fingerprint(folder: Path):
    """What makes two tokenizers the same (vocabulary, merges, added tokens), read from the
    tokenizer files of a model folder; None when it has none."""
    found = {}
    for name in TOKENIZER_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if name == "tokenizer.json":
            try:
                tok = json.loads(path.read_text())
                model = tok.get("model") or {}
                merges = [" ".join(m) if isinstance(m, list) else m for m in model.get("merges") or []]
                added = sorted((t.get("id"), t.get("content")) for t in tok.get("added_tokens") or [])
                found[name] = (model.get("type"), json.dumps(model.get("vocab"), sort_keys=True), merges, added)
            except (OSError, ValueError, AttributeError) as err:
                raise UserError(f"{path} is not a readable tokenizer ({err}): restore the folder") from None
        else:
            found[name] = path.read_bytes()
    return found or None


def _check_same_tokenizer(checkpoints: list[Checkpoint]) -> None:
    """Models merged in weight space must share their tokenizer: the same token id has to mean
    the same token in every one of them (same shapes are not enough)."""
    prints = [(ck.path, _tokenizer_fingerprint(ck.path)) for ck in checkpoints]
    prints = [(p, f) for p, f in prints if f is not None]
    for path, fp in prints[1:]:
        common = set(fp) & set(prints[0][1])  # compare the files both have (a tokenizer saved two ways)
        if any(fp[name] != prints[0][1][name] for name in common):
            raise UserError(
                f"{prints[0][0]} and {path} have different tokenizers: merge only checkpoints fine-tuned "
                "from the same init (the same token ids mean the same tokens)"
            )


def _merge_models(method, inputs, init_ck, out, params) -> dict:
    ref = init_ck or inputs[0]
    init_sd = init_ck.load() if init_ck is not None else None
    models = [ck.load() for ck in inputs]
    merged = merge(method, models, init=init_sd, **params)
    return _write(out, merged, ref, method, inputs, init_ck, params, "model")


def _check_adapters_fit(inputs, init_ck) -> None:
    """Every target module of every adapter exists in the base with the delta's shape."""
    for ck in inputs:
        specs = ck.specs
        fan_in_fan_out = bool(ck.config.get("fan_in_fan_out", False))
        for name, (a_key, b_key, transposed) in lora_modules(specs).items():
            shape = (specs[b_key].shape[0], specs[a_key].shape[1])
            if transposed or fan_in_fan_out:
                shape = shape[::-1]
            base = init_ck.specs.get(name)
            if base is None:
                raise UserError(f"adapter {ck.path} targets {name!r}, which the base model {init_ck.path} does not have")
            if tuple(base.shape) != tuple(shape):
                raise UserError(
                    f"adapter {ck.path} gives {name!r} a delta of shape {list(shape)}, but the base model "
                    f"{init_ck.path} has {list(base.shape)}: was it trained on another base?"
                )


def _merge_adapters_delta(method, inputs, init_ck, out, params) -> dict:
    _check_adapters_fit(inputs, init_ck)  # before computing anything
    base = init_ck.load()
    deltas = []
    for ck in inputs:
        alpha, rslora = ck.lora_alpha_and_rslora()
        deltas.append(lora_deltas(ck.load(), alpha, rslora, bool(ck.config.get("fan_in_fan_out", False))))
    # The adapters' task vectors are their deltas: merge them around a zero init, add the base.
    zeros = {k: np.zeros_like(t) for k, t in deltas[0].items()}
    merged_delta = merge(method, deltas, init=zeros, **params)
    merged = dict(base)
    for k, d in merged_delta.items():
        acc = np.float64 if base[k].dtype == np.float64 else np.float32
        merged[k] = np.add(base[k], d, dtype=acc).astype(base[k].dtype)
    return _write(out, merged, init_ck, method, inputs, init_ck, {**params, "lora_mode": "delta"}, "model")


def _merge_adapters_ab(inputs, out, params, init_ck) -> dict:
    merged = lora_ab_lerp([ck.load() for ck in inputs], params["weights"])
    return _write(out, merged, inputs[0], "lerp", inputs, init_ck, {**params, "lora_mode": "ab"}, "adapter")


def _provenance(params: dict, inputs, init_ck) -> dict:
    """What ``rsoup_merge.json`` records: method, inputs and the parameters it ran with."""
    from rsoup_lib import __version__

    return {
        "rsoup_version": __version__,
        "method": params["method"],
        "init": str(init_ck.path) if init_ck is not None else None,
        "models": [str(ck.path) for ck in inputs],
        **{k: v for k, v in params.items() if v is not None and k != "method"},
    }


def _provenance_of(out: Path) -> dict | None:
    """The provenance of an earlier merge in ``out``, or None."""
    try:
        return json.loads((Path(out) / PROVENANCE).read_text())
    except (OSError, ValueError):
        return None


def _write(out, tensors, ref, method, inputs, init_ck, params, kind) -> dict:
    """``tensors`` written as ``ref`` is (``Checkpoint.write_like``), with the provenance file."""
    provenance = _provenance({"method": method, **params}, inputs, init_ck)
    total = ref.write_like(out, tensors, {PROVENANCE: json.dumps(provenance, indent=2) + "\n"})
    return {"out": str(out), "kind": kind, "tensors": len(tensors), "bytes": total}
