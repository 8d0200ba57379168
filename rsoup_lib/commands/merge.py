"""``rsoup merge``: merge checkpoint folders in weight space (rsoup_lib.merge), file to file.

Inputs are Hugging Face model folders (config.json + safetensors, sharded or not) or peft LoRA
adapter folders (adapter_config.json + adapter_model.safetensors); all inputs of one merge are
of the same kind. The output folder is written atomically (rsoup_lib.io.atomic_dir) and only
after every check passed:

- models  -> a model folder with the reference's shard layout, dtypes, config and tokenizer
             (the reference is --init when given, else the first model); transformers loads it.
- adapters, --lora-mode delta (default) -> a full model folder: base (--init) + the merged
             weight delta, Delta W = merge of s_i B_i A_i. Why a full model rather than an
             adapter: it is exact for every method (SLERP and LITI included) without an SVD
             truncation or a rank that grows with the number of adapters, and the result loads
             like any other policy. Adapters are assumed trained from peft's default init
             (B = 0), so their task vectors are the Delta W_i themselves.
- adapters, --lora-mode ab (lerp only) -> a peft adapter folder whose A and B are the weighted
             averages of the inputs' A and B (the official rewarded-soups code; not linear in
             the weights, see rsoup_lib.merge.lora_ab_lerp); peft loads it on the base model.

``merge_folders`` is the same thing as a Python function. It runs the formulas of
rsoup_lib.merge on numpy arrays and reads and writes safetensors files itself (the format is
a JSON header and raw little-endian bytes; bfloat16, which numpy lacks, is widened to float32
on reading and rounded to nearest even on writing, bit for bit as torch does). Neither torch
nor transformers is imported, so a merge process starts in a fraction of a second instead of
the seconds torch's import takes, and the bytes it writes load in transformers and peft.
"""

from __future__ import annotations

HELP = "merge checkpoints in weight space: lerp (rewarded soups), slerp of task vectors, liti"
DESCRIPTION = """\
Merge Hugging Face model folders (safetensors) or peft LoRA adapter folders trained from the
same init, and write the result as a folder that transformers (or peft) loads directly.

methods:
  lerp   theta = sum_i w_i theta_i           --weights w_1 .. w_M on the simplex (default uniform)
  slerp  spherical interpolation of the task vectors theta_i - theta_init (WARP), angle taken
         per --granularity tensor (default) | layer (transformer block) | model; --lam in [0, 1]
         for two models (default 0.5); M > 2 models are merged by iterating with lam = 1/m
  liti   theta = (1 - eta) theta_init + eta theta_1   --eta in [0, 1] (default 0.3), one model

LoRA adapters: --lora-mode delta (default) merges the weight deltas s B A and writes a full model
(base from --init); --lora-mode ab averages A and B separately (lerp only) and writes an adapter.

Checkpoints with different tensor names or shapes are refused before anything is written.

examples:
  rsoup merge --method lerp --models runs/sentiment runs/concise --weights 0.3 0.7 --out runs/soup
  rsoup merge --method slerp --init runs/sft --models runs/a runs/b --lam 0.5 --out runs/slerp
  rsoup merge --method liti --init runs/sft --models runs/slerp --eta 0.3 --out runs/liti
  rsoup merge --method lerp --init base/ --models lora_a lora_b --weights 0.5 0.5 --out soup_model
  rsoup merge --method lerp --models lora_a lora_b --lora-mode ab --out soup_adapter
"""

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")
INDEX_NAME = "model.safetensors.index.json"
PROVENANCE = "rsoup_merge.json"
_ST_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}  # fmt: skip


def _st_name(dtype: str) -> str:
    return next(k for k, v in _ST_DTYPES.items() if v == dtype)


def add_arguments(p) -> None:
    p.add_argument("--method", required=True, choices=["lerp", "slerp", "liti"])
    p.add_argument("--init", default=None, metavar="DIR", help="theta_init (required by slerp, liti, and LoRA delta mode: the base model)")
    p.add_argument("--models", required=True, nargs="+", metavar="DIR", help="the fine-tuned model or adapter folders")
    p.add_argument("--weights", type=float, nargs="+", default=None, metavar="W", help="lerp: one simplex weight per model")
    p.add_argument("--lam", type=float, default=None, help="slerp of two models: position in [0, 1] (default 0.5)")
    p.add_argument("--eta", type=float, default=None, help="liti: weight of the model in [0, 1] (default 0.3)")
    p.add_argument("--granularity", choices=["tensor", "layer", "model"], default=None, help="slerp: where the angle is taken (default tensor)")
    p.add_argument("--lora-mode", choices=["delta", "ab"], default="delta", help="adapters: merge B A deltas (default) or average A, B")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args) -> int:
    import time

    t0 = time.perf_counter()
    summary = merge_folders(
        args.method,
        args.models,
        args.out,
        init=args.init,
        weights=args.weights,
        lam=args.lam,
        eta=args.eta,
        granularity=args.granularity,
        lora_mode=args.lora_mode,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {summary['out']} ({summary['kind']}, {summary['tensors']} tensors, "
        f"{summary['bytes'] / 1e6:.1f} MB) in {time.perf_counter() - t0:.2f} s"
    )
    return 0


# --------------------------------------------------------------------------------------------
# Reading folders


def _read_header(f, path) -> dict:
    import json
    import struct

    from rsoup_lib.errors import UserError

    try:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    except (OSError, struct.error, ValueError) as err:
        raise UserError(f"{path} is not a readable safetensors file ({err})") from err
    header.pop("__metadata__", None)
    return header


def read_safetensors_header(path) -> dict:
    """``{name: TensorSpec}`` from a safetensors file's JSON header, without reading weights."""
    from rsoup_lib.merge import TensorSpec

    with open(path, "rb") as f:
        header = _read_header(f, path)
    return {k: TensorSpec(tuple(v["shape"]), _ST_DTYPES.get(v["dtype"], v["dtype"].lower())) for k, v in header.items()}


def bf16_to_float32(bits):
    """bfloat16 bit patterns (uint16) -> float32 values: bfloat16 is float32's upper half."""
    import numpy as np

    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16(x):
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even as torch does."""
    import numpy as np

    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    bits = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():  # keep NaNs NaN (quiet), whatever the rounding carried into
        bits[nan] = ((u[nan] >> 16) | np.uint32(0x40)).astype(np.uint16)
    return bits


def read_safetensors(path) -> tuple[dict, dict]:
    """(``{name: numpy array}``, ``{name: safetensors dtype}``); bfloat16 comes back as float32."""
    import os

    import numpy as np

    from rsoup_lib.errors import UserError

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
        elif st in _ST_DTYPES and not st.startswith("F8"):
            tensors[name] = raw.view(np.dtype(_ST_DTYPES[st]).newbyteorder("<")).reshape(info["shape"])
        else:
            raise UserError(f"{path}: tensor {name!r} has dtype {st}, which rsoup merge does not read")
        dtypes[name] = st
    return tensors, dtypes


def write_safetensors(path, tensors: dict, dtypes: dict, metadata: dict | None = None) -> int:
    """Write numpy arrays as a safetensors file, each in ``dtypes[name]`` (a safetensors dtype
    such as "F32" or "BF16"; the array's own dtype when absent). Returns the data bytes."""
    import json
    import struct

    import numpy as np

    header, blobs, offset = {"__metadata__": metadata or {"format": "pt"}}, [], 0
    for name, arr in tensors.items():
        st = dtypes.get(name) or next(k for k, v in _ST_DTYPES.items() if v == str(arr.dtype))
        if st == "BF16":
            raw = float32_to_bf16(arr)
        else:
            raw = np.ascontiguousarray(arr, dtype=np.dtype(_ST_DTYPES[st]).newbyteorder("<"))
        header[name] = {"dtype": st, "shape": list(arr.shape), "data_offsets": [offset, offset + raw.nbytes]}
        offset += raw.nbytes
        blobs.append(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for raw in blobs:
            f.write(memoryview(raw).cast("B"))
    return offset


class Checkpoint:
    """A model or adapter folder: its kind, shard layout ({file: [names]}) and tensor specs."""

    def __init__(self, path):
        import json
        from pathlib import Path

        from rsoup_lib.errors import UserError

        self.path = Path(path)
        if not self.path.is_dir():
            raise UserError(f"{path} is not a folder: give Hugging Face model or peft adapter folders")
        self.config = None
        if (self.path / "adapter_config.json").is_file():
            self.kind = "adapter"
            self.config = json.loads((self.path / "adapter_config.json").read_text())
            if self.config.get("peft_type", "LORA") != "LORA":
                raise UserError(f"{path} is a {self.config.get('peft_type')} adapter: only LoRA adapters can be merged")
            if self.config.get("use_dora") or self.config.get("alpha_pattern"):
                raise UserError(f"{path}: DoRA adapters and alpha_pattern are not supported; train plain LoRA")
            shards = {"adapter_model.safetensors": None}
        elif (self.path / "config.json").is_file():
            self.kind = "model"
            if (self.path / INDEX_NAME).is_file():
                weight_map = json.loads((self.path / INDEX_NAME).read_text())["weight_map"]
                shards = {f: None for f in sorted(set(weight_map.values()))}
            else:
                shards = {"model.safetensors": None}
        else:
            raise UserError(f"{path} holds neither config.json (a model) nor adapter_config.json (a peft adapter)")
        self.specs, self.layout = {}, {}
        for name in shards:
            file = self.path / name
            if not file.is_file():
                raise UserError(
                    f"{file} is missing: rsoup merge reads safetensors only "
                    "(save with save_pretrained(..., safe_serialization=True))"
                )
            header = read_safetensors_header(file)
            self.layout[name] = list(header)
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


# --------------------------------------------------------------------------------------------
# Merging folders


def merge_folders(method, models, out, init=None, weights=None, lam=None, eta=None, granularity=None, lora_mode="delta", overwrite=False) -> dict:
    """Merge checkpoint folders into ``out``; returns a summary dict. See the module docstring."""
    from pathlib import Path

    from rsoup_lib.errors import UserError
    from rsoup_lib.merge import METHODS, check_compatible, check_simplex, check_unit

    # ---- flags
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    if not models:
        raise UserError("give at least one folder with --models")
    for flag, value, owner in [("--weights", weights, "lerp"), ("--lam", lam, "slerp"), ("--granularity", granularity, "slerp"), ("--eta", eta, "liti")]:
        if value is not None and method != owner:
            raise UserError(f"{flag} applies to --method {owner}, not {method}")
    if method == "lerp":
        weights = check_simplex(weights if weights is not None else [1.0 / len(models)] * len(models), len(models))
    if method == "slerp":
        granularity = granularity or "tensor"
        if len(models) < 2:
            raise UserError("slerp needs at least two --models")
        if lam is not None and len(models) > 2:
            raise UserError(f"--lam applies to two models; with {len(models)} models slerp iterates with lam = 1/m")
        if len(models) == 2:
            lam = check_unit("lam", 0.5 if lam is None else lam)
    if method == "liti":
        eta = check_unit("eta", 0.3 if eta is None else eta)
        if len(models) != 1:
            raise UserError(f"liti interpolates between --init and one model; got {len(models)} --models")
    if METHODS[method].needs_init and init is None:
        raise UserError(f"--method {method} needs --init (the checkpoint the task vectors start from)")
    if lora_mode not in ("delta", "ab"):
        raise UserError(f"unknown --lora-mode {lora_mode!r}: use delta or ab")

    # ---- folders and compatibility (headers only: nothing read, nothing written yet)
    out = Path(out)
    inputs = [Checkpoint(m) for m in models]
    init_ck = Checkpoint(init) if init is not None else None
    for ck in [*inputs, *([init_ck] if init_ck else [])]:
        if out.resolve() == ck.path.resolve():
            raise UserError(f"--out {out} is one of the inputs: write the merge to a new folder")
    if out.exists() and not overwrite:
        raise UserError(f"--out {out} exists: choose a new folder or pass --overwrite")
    kinds = {ck.kind for ck in inputs}
    if len(kinds) > 1:
        raise UserError("--models mixes model folders and adapter folders: merge one kind at a time")
    kind = kinds.pop()
    labels = {str(ck.path): ck.specs for ck in inputs}
    if kind == "model":
        if init_ck is not None:
            if init_ck.kind != "model":
                raise UserError(f"--init {init} is an adapter; with model folders --init must be a model folder")
            labels = {str(init_ck.path): init_ck.specs, **labels}
        if lora_mode != "delta":
            raise UserError("--lora-mode applies to adapter folders only")
        check_compatible(labels)
        return _merge_models(method, inputs, init_ck, out, weights, lam, eta, granularity)
    check_compatible(labels)  # adapters: same target modules, same ranks
    if lora_mode == "ab":
        if method != "lerp":
            raise UserError("--lora-mode ab (averaging A and B separately) is defined for --method lerp only")
        if init_ck is not None:
            import sys

            print("note: --init is not used by --lora-mode ab (A and B are averaged directly)", file=sys.stderr)
        alphas = {ck.lora_alpha_and_rslora() for ck in inputs}
        if len(alphas) > 1:
            raise UserError(f"--lora-mode ab needs adapters with the same lora_alpha and use_rslora, got {sorted(alphas)}")
        return _merge_adapters_ab(inputs, out, weights, init_ck)
    if init_ck is None or init_ck.kind != "model":
        raise UserError("merging LoRA adapters in delta mode needs --init: the base model folder the adapters were trained on")
    return _merge_adapters_delta(method, inputs, init_ck, out, weights, lam, eta, granularity)


def _merge_models(method, inputs, init_ck, out, weights, lam, eta, granularity) -> dict:
    from rsoup_lib.merge import merge

    ref = init_ck or inputs[0]
    init_sd = init_ck.load() if init_ck is not None else None
    models = [ck.load() for ck in inputs]
    merged = merge(method, models, init=init_sd, weights=weights, lam=lam, eta=eta, granularity=granularity or "tensor")
    params = {"weights": weights, "lam": lam, "eta": eta, "granularity": granularity}
    return _write(out, merged, ref, method, inputs, init_ck, params, "model")


def _merge_adapters_delta(method, inputs, init_ck, out, weights, lam, eta, granularity) -> dict:
    import numpy as np

    from rsoup_lib.errors import UserError
    from rsoup_lib.merge import lora_deltas, lora_modules, merge

    # Check every target module against the base before computing anything.
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
    base = init_ck.load()
    deltas = []
    for ck in inputs:
        alpha, rslora = ck.lora_alpha_and_rslora()
        deltas.append(lora_deltas(ck.load(), alpha, rslora, bool(ck.config.get("fan_in_fan_out", False))))
    # The adapters' task vectors are their deltas: merge them around a zero init, add the base.
    zeros = {k: np.zeros_like(t) for k, t in deltas[0].items()}
    merged_delta = merge(method, deltas, init=zeros, weights=weights, lam=lam, eta=eta, granularity=granularity or "tensor")
    merged = dict(base)
    for k, d in merged_delta.items():
        acc = np.float64 if base[k].dtype == np.float64 else np.float32
        merged[k] = np.add(base[k], d, dtype=acc).astype(base[k].dtype)
    params = {"weights": weights, "lam": lam, "eta": eta, "granularity": granularity, "lora_mode": "delta"}
    return _write(out, merged, init_ck, method, inputs, init_ck, params, "model")


def _merge_adapters_ab(inputs, out, weights, init_ck) -> dict:
    from rsoup_lib.merge import lora_ab_lerp

    adapters = [ck.load() for ck in inputs]
    merged = lora_ab_lerp(adapters, weights)
    params = {"weights": weights, "lora_mode": "ab"}
    return _write(out, merged, inputs[0], "lerp", inputs, init_ck, params, "adapter")


def _write(out, tensors, ref, method, inputs, init_ck, params, kind) -> dict:
    """Write ``tensors`` in ``ref``'s shard layout, with ``ref``'s other files (config,
    tokenizer, adapter_config), into ``out`` atomically."""
    import json
    import shutil

    from rsoup_lib import __version__
    from rsoup_lib.io import atomic_dir

    total = 0
    with atomic_dir(out) as tmp:
        for f in sorted(ref.path.iterdir()):
            if f.is_file() and not f.name.endswith(WEIGHT_SUFFIXES) and f.name not in (INDEX_NAME, PROVENANCE):
                shutil.copy2(f, tmp / f.name)
        weight_map = {}
        for name, keys in ref.layout.items():  # the reference's shards, names and dtypes
            dtypes = {k: ref.st_dtypes.get(k) or _st_name(ref.specs[k].dtype) for k in keys}
            total += write_safetensors(tmp / name, {k: tensors[k] for k in keys}, dtypes)
            weight_map.update({k: name for k in keys})
        if (ref.path / INDEX_NAME).is_file():
            index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
            (tmp / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        provenance = {
            "rsoup_version": __version__,
            "method": method,
            "init": str(init_ck.path) if init_ck is not None else None,
            "models": [str(ck.path) for ck in inputs],
            **{k: v for k, v in params.items() if v is not None},
        }
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
    return {"out": str(out), "kind": kind, "tensors": len(tensors), "bytes": total}
