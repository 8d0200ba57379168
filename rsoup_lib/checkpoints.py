"""Reading and writing checkpoints: the one place that knows how weights lie on disk.

A checkpoint folder is one of

- a Hugging Face model folder: ``config.json`` and the weights as safetensors, either one
  ``model.safetensors`` or shards listed in ``model.safetensors.index.json`` (its
  ``weight_map``), beside the tokenizer files and ``generation_config.json``;
- a peft LoRA adapter folder: ``adapter_config.json`` and ``adapter_model.safetensors``
  (the A and B matrices of every target module; chapter 2, Rewarded soups, merges them).

``weight_files`` says which safetensors files hold a folder's weights; every reader below goes
through it. Two sides read and write them:

numpy side, for ``rsoup merge`` (``rsoup_lib.merge_files``): ``read_safetensors_header``,
``read_safetensors``, ``write_safetensors`` and the ``Checkpoint`` folder class
(kind, shard layout, tensor specs from the headers alone, ``load``, ``write_like``). The
safetensors format is an 8-byte header length, a JSON header and raw little-endian bytes, so
numpy reads it (memory-mapped) and writes it without torch. bfloat16, which numpy lacks, is
widened to float32 on reading and rounded to nearest even on writing, bit for bit as torch does
(``bf16_to_float32``, ``float32_to_bf16``). Why not torch: importing it takes seconds, a whole
numpy merge of a small model a fraction of one; this module imports neither torch nor
transformers at import time, and its numpy side never does.

torch side, for training code, WARP (chapter 3) and the chapters: ``load_state_dict`` (every
tensor of a folder, as torch tensors), ``load_adapter`` (an adapter's tensors and config),
``policy_state`` (a policy by name, tied tensors once, as safetensors stores them),
``parameters`` (a detached copy of a live model's ``named_parameters``) and ``save_merged``
(a state dict written as a model folder, config and tokenizer taken from a template policy).

Atomicity: every folder written here (``Checkpoint.write_like``, ``save_merged``) is built under
a temporary name and renamed into place by ``rsoup_lib.io.atomic_dir``, so a failure or a kill
leaves no half-written checkpoint, only at worst a ``.tmp-*`` entry that nothing reads.

Why the file-to-file merge (``merge_folders``) is not here: it is a merge (flags, methods, the
LoRA modes), not a way of reading or writing; it lives in ``rsoup_lib.merge_files`` and uses
this module for all of its input and output.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np

from rsoup_lib.errors import UserError
from rsoup_lib.io import atomic_dir
from rsoup_lib.merge import TensorSpec

INDEX_NAME = "model.safetensors.index.json"
MODEL_WEIGHTS = "model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Files of a reference folder that ``write_like`` does not copy: weights in any format.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")
ST_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}  # fmt: skip


def st_name(dtype: str) -> str:
    """The safetensors name of a dtype ("float32" -> "F32")."""
    return next(k for k, v in ST_DTYPES.items() if v == dtype)


def weight_files(folder: str | os.PathLike) -> list[Path]:
    """The safetensors files of a folder: ``adapter_model.safetensors`` in an adapter folder, the
    shards of ``model.safetensors.index.json`` in a sharded model folder, else
    ``model.safetensors``. They may not exist (the callers say what is missing)."""
    folder = Path(folder)
    if (folder / ADAPTER_CONFIG).is_file():
        return [folder / ADAPTER_WEIGHTS]
    if (folder / INDEX_NAME).is_file():
        weight_map = json.loads((folder / INDEX_NAME).read_text())["weight_map"]
        return [folder / f for f in sorted(set(weight_map.values()))]
    return [folder / MODEL_WEIGHTS]


# --------------------------------------------------------------------------------------------
# safetensors with numpy


def _read_header(f, path) -> dict:
    """The JSON header of an open safetensors file, checked against the file's size: a corrupt
    or truncated file is a ``UserError`` naming it, before any weight is read."""
    hint = "restore it, or write the checkpoint again"
    size = os.fstat(f.fileno()).st_size
    try:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8:
            raise ValueError(f"its header claims {n} bytes, the file has {size}")
        header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("its header is not a JSON object")
        header.pop("__metadata__", None)
        end = max((int(v["data_offsets"][1]) for v in header.values()), default=0)
    except (OSError, struct.error, ValueError, TypeError, KeyError, IndexError) as err:
        raise UserError(f"{path} is not a readable safetensors file ({err}): {hint}") from None
    if 8 + n + end > size:
        raise UserError(f"{path} is truncated ({size} bytes, its header needs {8 + n + end}): {hint}")
    return header


def read_safetensors_header(path) -> dict[str, TensorSpec]:
    """``{name: TensorSpec}`` from a safetensors file's JSON header, without reading weights."""
    with open(path, "rb") as f:
        header = _read_header(f, path)
    return {k: TensorSpec(tuple(v["shape"]), ST_DTYPES.get(v["dtype"], v["dtype"].lower())) for k, v in header.items()}


def bf16_to_float32(bits):
    """bfloat16 bit patterns (uint16) -> float32 values: bfloat16 is float32's upper half."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16(x):
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even as torch does."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    bits = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():  # keep NaNs NaN (quiet), whatever the rounding carried into
        bits[nan] = ((u[nan] >> 16) | np.uint32(0x40)).astype(np.uint16)
    return bits


def read_safetensors(path) -> tuple[dict, dict]:
    """(``{name: numpy array}``, ``{name: safetensors dtype}``); bfloat16 comes back as float32."""
    with open(path, "rb") as f:
        header = _read_header(f, path)
        start = f.tell()
    # Memory-mapped, read-only: pages come straight from the page cache, and a merge that
    # tried to write into an input would fail instead of corrupting it.
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=start) if os.path.getsize(path) > start else np.zeros(0, np.uint8)
    tensors, dtypes = {}, {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        raw, st = data[start:end], info["dtype"]
        if st == "BF16":
            tensors[name] = bf16_to_float32(raw.view("<u2")).reshape(info["shape"])
        elif st in ST_DTYPES and not st.startswith("F8"):
            tensors[name] = raw.view(np.dtype(ST_DTYPES[st]).newbyteorder("<")).reshape(info["shape"])
        else:
            raise UserError(f"{path}: tensor {name!r} has dtype {st}, which rsoup merge does not read")
        dtypes[name] = st
    return tensors, dtypes


def write_safetensors(path, tensors: dict, dtypes: dict, metadata: dict | None = None) -> int:
    """Write numpy arrays as a safetensors file, each in ``dtypes[name]`` (a safetensors dtype
    such as "F32" or "BF16"; the array's own dtype when absent). Returns the data bytes."""
    header, blobs, offset = {"__metadata__": metadata or {"format": "pt"}}, [], 0
    for name, arr in tensors.items():
        st = dtypes.get(name) or st_name(str(arr.dtype))
        if st == "BF16":
            raw = float32_to_bf16(arr)
        else:
            raw = np.ascontiguousarray(arr, dtype=np.dtype(ST_DTYPES[st]).newbyteorder("<"))
        header[name] = {"dtype": st, "shape": list(arr.shape), "data_offsets": [offset, offset + raw.nbytes]}
        offset += raw.nbytes
        blobs.append(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for raw in blobs:
            if raw.nbytes:  # memoryview cannot cast an empty (zero in the shape) array
                f.write(memoryview(raw).cast("B"))
    return offset


# --------------------------------------------------------------------------------------------
# Checkpoint folders (numpy)


class Checkpoint:
    """A model or adapter folder: its ``kind`` ("model" or "adapter"), ``config`` (an adapter's
    adapter_config.json), shard ``layout`` ({file: [names]}) and tensor ``specs``, read from
    the safetensors headers alone. Only plain LoRA adapters are accepted."""

    def __init__(self, path):
        from rsoup_lib.runs import policy_folder

        self.path = Path(policy_folder(str(path)))  # a run folder stands for its policy/
        if not self.path.exists():
            raise UserError(f"{path} does not exist: give Hugging Face model or peft adapter folders")
        if not self.path.is_dir():
            raise UserError(f"{path} is not a folder: give Hugging Face model or peft adapter folders")
        self.config = None
        if (self.path / ADAPTER_CONFIG).is_file():
            self.kind = "adapter"
            self.config = json.loads((self.path / ADAPTER_CONFIG).read_text())
            if self.config.get("peft_type", "LORA") != "LORA":
                raise UserError(f"{path} is a {self.config.get('peft_type')} adapter: only LoRA adapters can be merged")
            if self.config.get("use_dora") or self.config.get("alpha_pattern"):
                raise UserError(f"{path}: DoRA adapters and alpha_pattern are not supported; train plain LoRA")
        elif (self.path / "config.json").is_file():
            self.kind = "model"
        else:
            raise UserError(f"{path} holds neither config.json (a model) nor adapter_config.json (a peft adapter)")
        self.specs, self.layout = {}, {}
        for file in weight_files(self.path):
            if not file.is_file():
                raise UserError(
                    f"{file} is missing: rsoup merge reads safetensors only "
                    "(save with save_pretrained(..., safe_serialization=True))"
                )
            header = read_safetensors_header(file)
            self.layout[file.name] = list(header)
            self.specs.update(header)
        self.st_dtypes: dict[str, str] = {}

    def load(self) -> dict:
        """``{name: numpy array}`` (bfloat16 widened to float32; ``st_dtypes`` keeps the file's)."""
        tensors = {}
        for name in self.layout:
            t, d = read_safetensors(self.path / name)
            tensors.update(t)
            self.st_dtypes.update(d)
        return tensors

    def lora_alpha_and_rslora(self) -> tuple[float, bool]:
        return float(self.config.get("lora_alpha", self.config.get("r", 8))), bool(self.config.get("use_rslora", False))

    def write_like(self, out, tensors: dict, extra_files: dict[str, str] | None = None) -> int:
        """Write ``tensors`` (numpy) into the folder ``out`` atomically, as this checkpoint is:
        its shard layout (and index), its tensor names and safetensors dtypes, and a copy of its
        other files (config, tokenizer, adapter_config), plus ``extra_files`` ({name: text}).
        Returns the bytes of tensor data written."""
        extra_files = extra_files or {}
        total = 0
        with atomic_dir(out) as tmp:
            for f in sorted(self.path.iterdir()):
                if f.is_file() and not f.name.endswith(WEIGHT_SUFFIXES) and f.name not in (INDEX_NAME, *extra_files):
                    shutil.copy2(f, tmp / f.name)
            weight_map = {}
            for name, keys in self.layout.items():
                dtypes = {k: self.st_dtypes.get(k) or st_name(self.specs[k].dtype) for k in keys}
                total += write_safetensors(tmp / name, {k: tensors[k] for k in keys}, dtypes)
                weight_map.update({k: name for k in keys})
            if (self.path / INDEX_NAME).is_file():
                index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
                (tmp / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
            for name, text in extra_files.items():
                (tmp / name).write_text(text)
        return total


# --------------------------------------------------------------------------------------------
# torch side: WARP and the chapters


def load_state_dict(folder: str | os.PathLike) -> dict:
    """Every tensor of a model or adapter folder (all shards), as torch tensors."""
    from safetensors.torch import load_file

    files = [f for f in weight_files(folder) if f.is_file()]
    if not files:
        raise UserError(f"{folder} holds no .safetensors weights")
    state = {}
    for f in files:
        state.update(load_file(f))
    return state


def load_adapter(folder: str | os.PathLike) -> tuple[dict, dict[str, Any]]:
    """``(tensors, config)`` of a peft adapter folder: the A and B matrices as torch tensors (named
    as peft saves them) and adapter_config.json (``lora_alpha``, ``r``, ``use_rslora``, ...)."""
    config = Path(folder) / ADAPTER_CONFIG
    if not config.is_file():
        raise UserError(f"{folder} holds no {ADAPTER_CONFIG}: not a peft adapter folder")
    return load_state_dict(folder), json.loads(config.read_text())


def parameters(model) -> dict:
    """A detached copy of a live model's parameters, named as ``model.named_parameters()``
    (a tied output projection appears once, under the embedding's name)."""
    return {k: p.detach().clone() for k, p in model.named_parameters()}


def policy_state(name: str) -> dict:
    """The state dict of a policy by name (``tiny``, a folder, ``cache:KEY/policy``), with
    tied tensors (the output projection tied to the embeddings) once, as safetensors saves it."""
    from rsoup_lib.models import load_policy

    model, _ = load_policy(name)
    state, seen = {}, set()
    for k, v in model.state_dict().items():
        if v.data_ptr() in seen:
            continue
        seen.add(v.data_ptr())
        state[k] = v.detach().clone()
    return state


def save_merged(template: str, state: dict, out_dir: str | os.PathLike) -> None:
    """Write ``state`` as a model folder loadable by transformers, config and tokenizer taken
    from the policy ``template``; checked against the template first, then written atomically."""
    from rsoup_lib.models import load_policy

    model, tokenizer = load_policy(template)
    missing, unexpected = model.load_state_dict(state, strict=False)
    current = model.state_dict()
    kept = {current[k].data_ptr() for k in state if k in current}
    tied = {k for k, v in current.items() if k not in state and v.data_ptr() in kept}
    if unexpected or set(missing) - tied:
        raise UserError(f"merged weights do not fit {template}: missing {missing}, unexpected {unexpected}")
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
