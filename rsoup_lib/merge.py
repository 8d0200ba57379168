"""Weight-space merging: pure functions over state dicts (``{name: tensor}``).

Notation (the book's chapter 2, Rewarded soups, and chapter 3, WARP): theta_init the shared
initialisation, theta_1..theta_M fine-tuned from it, delta_i = theta_i - theta_init their task
vectors.

    lerp   theta = sum_i w_i theta_i,  w on the simplex (w_i >= 0, sum_i w_i = 1)
    slerp  spherical interpolation of the task vectors (WARP stage 2), per tensor, per
           transformer block or over the whole model; M > 2 by iteration
    liti   theta_eta = (1 - eta) theta_init + eta theta      (WARP stage 3)
    ema    theta_ema <- (1 - mu) theta_ema + mu theta        (WARP's EMA anchor)

plus the two ways of merging LoRA adapters that the Rewarded Soups book compares:
``lora_deltas`` (merge the weight deltas Delta W_i = s_i B_i A_i, linear in lambda) and
``lora_ab_lerp`` (average A and B separately, as the official rewarded-soups code did).

Numerics: every merge accumulates in float32 (float64 if an input is float64), whatever the
storage dtype, and casts the result back to the storage dtype of the reference checkpoint
(``init`` for slerp and liti, the first model for lerp). Non-floating tensors (integer buffers)
are copied from the reference unchanged.

Validation: ``check_compatible`` runs before any arithmetic. Checkpoints must have the same keys
and shapes, and floating tensors must be floating everywhere (any float dtype casts to any
other). A mismatch raises ``UserError`` naming the first differing tensor.

Arrays: a state dict holds torch tensors or numpy arrays (one kind per call). The formulas are
written once over a handful of array operations (``_scaled``, ``_axpy_``, ``_dot``, ...);
``rsoup merge`` runs them on numpy so that a file-to-file merge never pays torch's import time,
and training code runs them on torch tensors. Neither is imported with this module (both are
imported where an operation needs them), so ``rsoup --help`` can read the registry for free.

Registry: ``METHODS`` (mergekit-style) declares each method of ``rsoup merge`` once: its
function, whether it needs the init, how many models it takes, and its parameters as ``Param``
(name, default, check, help). ``merge(name, models, init, **params)`` refuses parameters the
method does not declare, fills the defaults and runs the checks; ``rsoup merge`` builds its flags
and validates them from the same declarations. Each rule is one function (``lerp_weights``,
``slerp_lam``, ``check_unit``, ``check_granularity``) that the public function (``lerp``,
``slerp``, ``liti``) and its ``Param`` both call. ``rsoup_lib.front`` evaluates whole fronts in
place, without re-merging from scratch for each point.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from rsoup_lib.errors import UserError

Array = Any  # a torch.Tensor or a numpy.ndarray
StateDict = Mapping[str, Array]

GRANULARITIES = ("tensor", "layer", "model")
# sin(Omega) below this: the two task vectors are (anti)parallel and the SLERP formula divides
# by ~0. Interpolate linearly instead (the limit of SLERP as Omega -> 0).
SLERP_EPS = 1e-6
# Weights that miss the simplex by less than this (rounding in 0.1 + 0.2 + ...) are accepted.
SIMPLEX_TOL = 1e-6


# --------------------------------------------------------------------------------------------
# Validation


@dataclass(frozen=True)
class TensorSpec:
    """What the compatibility check compares: a tensor's shape and dtype, without its data
    (so that ``rsoup merge`` can check safetensors headers before reading any weights)."""

    shape: tuple[int, ...]
    dtype: str  # "float32", "bfloat16", "int64", ...

    @property
    def floating(self) -> bool:
        return self.dtype.startswith(("float", "bfloat"))


def spec_of(t: Array | TensorSpec) -> TensorSpec:
    if isinstance(t, TensorSpec):
        return t
    return TensorSpec(tuple(t.shape), _dtype_name(t))


def check_compatible(checkpoints: Mapping[str, Mapping[str, Array | TensorSpec]]) -> None:
    """Raise ``UserError`` unless every checkpoint has the reference's keys and shapes.

    ``checkpoints`` maps a label (a folder name, "init", "model 2") to a state dict or to
    ``{name: TensorSpec}``; the first entry is the reference. The error names the first
    differing tensor in the reference's order (then any extra tensor of another checkpoint).
    """
    items = list(checkpoints.items())
    if not items:
        raise UserError("nothing to merge: no checkpoints given")
    ref_label, ref = items[0]
    for label, other in items[1:]:
        for key, t in ref.items():
            if key not in other:
                raise UserError(
                    f"incompatible checkpoints: tensor {key!r} is in {ref_label} but not in {label}. "
                    "Merge only checkpoints fine-tuned from the same init (same architecture)."
                )
            a, b = spec_of(t), spec_of(other[key])
            if a.shape != b.shape:
                raise UserError(
                    f"incompatible checkpoints: tensor {key!r} has shape {list(a.shape)} in "
                    f"{ref_label} but {list(b.shape)} in {label}. "
                    "Merge only checkpoints fine-tuned from the same init (same architecture)."
                )
            if a.floating != b.floating or (not a.floating and a.dtype != b.dtype):
                raise UserError(
                    f"incompatible checkpoints: tensor {key!r} is {a.dtype} in {ref_label} but "
                    f"{b.dtype} in {label}, and one cannot be cast to the other for merging."
                )
        extra = [k for k in other if k not in ref]
        if extra:
            raise UserError(
                f"incompatible checkpoints: tensor {extra[0]!r} is in {label} but not in {ref_label}. "
                "Merge only checkpoints fine-tuned from the same init (same architecture)."
            )


def check_simplex(weights: Sequence[float], n: int) -> list[float]:
    """The weights as floats, after checking they are n numbers >= 0 that sum to 1."""
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise UserError(f"got {len(weights)} weights for {n} models: give one weight per model")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise UserError(f"weights {weights} must all be >= 0 (a point of the simplex)")
    if abs(sum(weights) - 1.0) > SIMPLEX_TOL:
        raise UserError(f"weights {weights} sum to {sum(weights):g}, not 1: lerp takes simplex weights")
    return weights


def lerp_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """lerp's weights for ``n`` models: uniform 1/n when None, else checked on the simplex."""
    if n < 1:
        raise UserError("lerp needs at least one model")
    return check_simplex([1.0 / n] * n if weights is None else weights, n)


def check_unit(name: str, x: float) -> float:
    x = float(x)
    if not (0.0 <= x <= 1.0):
        raise UserError(f"{name}={x:g} is outside [0, 1]")
    return x


def slerp_lam(lam: float | None, n: int) -> float | None:
    """slerp's lam for ``n`` models: in [0, 1] (default 0.5) for two models, and None for more
    (slerp then iterates with lam = 1/m: a lam given with more than two models is refused)."""
    if n < 2:
        raise UserError(f"slerp needs at least two models, got {n}")
    if n == 2:
        return check_unit("lam", 0.5 if lam is None else lam)
    if lam is not None:
        raise UserError(f"lam applies to two models; with {n} models slerp iterates with lam = 1/m")
    return None


def check_granularity(granularity: str) -> str:
    if granularity not in GRANULARITIES:
        raise UserError(f"unknown granularity {granularity!r}: use one of {', '.join(GRANULARITIES)}")
    return granularity


# --------------------------------------------------------------------------------------------
# The few array operations the formulas use, for torch tensors and numpy arrays alike


def _is_torch(t: Array) -> bool:
    return type(t).__module__.startswith("torch")


def _dtype_name(t: Array) -> str:
    return str(t.dtype).removeprefix("torch.")


def _floating(t: Array) -> bool:
    return _dtype_name(t).startswith(("float", "bfloat"))


def _acc_dtype(*tensors: Array) -> str:
    """float32, or float64 when an input already is: never accumulate below float32."""
    return "float64" if any(_dtype_name(t) == "float64" for t in tensors) else "float32"


def _to(t: Array, dtype: str) -> Array:
    """``t`` in ``dtype`` (itself when it already is)."""
    if _is_torch(t):
        import torch

        return t.to(getattr(torch, dtype))
    return t.astype(dtype, copy=False)


def _clone(t: Array) -> Array:
    return t.clone() if _is_torch(t) else t.copy()


def _scaled(t: Array, w: float, dtype: str) -> Array:
    """A new ``dtype`` array w * t (computed in ``dtype``)."""
    if _is_torch(t):
        return t * w if _dtype_name(t) == dtype else _to(t, dtype).mul_(w)
    import numpy as np

    return np.multiply(t, w, dtype=dtype)


def _sub(a: Array, b: Array) -> Array:
    """A new array a - b, in b's (accumulation) dtype."""
    if _is_torch(a):
        return a - b
    import numpy as np

    return np.subtract(a, b, dtype=b.dtype)


def _axpy_(y: Array, x: Array, alpha: float) -> None:
    """y <- y + alpha x in place, computed in y's dtype."""
    if _is_torch(y):
        y.add_(x, alpha=alpha)  # mixed-dtype add_ computes in y's float32
    else:
        import numpy as np

        y += np.multiply(x, alpha, dtype=y.dtype)


def _dot(a: Array, b: Array) -> float:
    if _is_torch(a):
        import torch

        return float(torch.dot(a.reshape(-1), b.reshape(-1)))
    import numpy as np

    return float(np.dot(a.reshape(-1), b.reshape(-1)))


def _contiguous(t: Array) -> Array:
    if _is_torch(t):
        return t.contiguous()
    import numpy as np

    return np.ascontiguousarray(t)


# --------------------------------------------------------------------------------------------
# lerp


def lerp(models: Sequence[StateDict], weights: Sequence[float] | None = None) -> dict[str, Array]:
    """Weighted average (the rewarded soup):  theta = sum_i w_i theta_i.

    ``weights`` lie on the simplex (w_i >= 0, sum w_i = 1); None means uniform 1/M. The result
    has the storage dtypes of ``models[0]``.
    """
    weights = lerp_weights(weights, len(models))
    check_compatible({f"model {i + 1}": m for i, m in enumerate(models)})
    out = {}
    for key, ref in models[0].items():
        if not _floating(ref):
            out[key] = _clone(ref)
            continue
        tensors = [m[key] for m in models]
        acc = _scaled(ref, weights[0], _acc_dtype(*tensors))
        for w, t in zip(weights[1:], tensors[1:]):
            _axpy_(acc, t, w)
        out[key] = _to(acc, _dtype_name(ref))
    return out


# --------------------------------------------------------------------------------------------
# slerp

_BLOCK = re.compile(r"^(.*?\b(?:layers|h|blocks)\.\d+)\.")


def parameter_groups(keys: Sequence[str], granularity: str = "tensor") -> list[list[str]]:
    """The groups of tensors that share one SLERP angle.

    - ``tensor``: every tensor is its own group (the default, as in WARP).
    - ``layer``: one group per transformer block, i.e. all tensors whose name starts with the
      same ``...layers.<i>.`` prefix (``h.<i>.`` and ``blocks.<i>.`` too). Tensors outside
      the blocks (embeddings, final norm, lm_head) are each their own group: lumping them into
      one "rest" group would let the large embedding matrix set the angle of the small final
      norm, which is not a "layer" in any sense.
    - ``model``: one group holding every tensor.
    """
    if check_granularity(granularity) == "tensor":
        return [[k] for k in keys]
    if granularity == "model":
        return [list(keys)] if keys else []
    groups: dict[str, list[str]] = {}
    for k in keys:
        m = _BLOCK.match(k)
        groups.setdefault(m.group(1) if m else k, []).append(k)
    return list(groups.values())


def slerp_coefficients(dot: float, norm1: float, norm2: float, lam: float, eps: float = SLERP_EPS) -> tuple[float, float]:
    """(a, b) such that slerp = theta_init + a delta_1 + b delta_2:

        cos Omega = <delta_1, delta_2> / (|delta_1| |delta_2|)
        a = sin((1 - lam) Omega) / sin Omega,   b = sin(lam Omega) / sin Omega

    Linear (a, b) = (1 - lam, lam) when a delta has zero norm (no angle exists) or when
    sin Omega < eps (parallel or antiparallel deltas; for parallel ones this is SLERP's limit).
    """
    if norm1 == 0.0 or norm2 == 0.0 or not math.isfinite(norm1 * norm2):
        return 1.0 - lam, lam
    cos = max(-1.0, min(1.0, dot / (norm1 * norm2)))
    omega = math.acos(cos)
    s = math.sin(omega)
    if s < eps:
        return 1.0 - lam, lam
    return math.sin((1.0 - lam) * omega) / s, math.sin(lam * omega) / s


def slerp(
    init: StateDict,
    models: Sequence[StateDict],
    lam: float | None = None,
    granularity: str = "tensor",
    eps: float = SLERP_EPS,
) -> dict[str, Array]:
    """Spherical interpolation of task vectors delta_i = theta_i - theta_init (WARP stage 2):

        slerp(theta_init, theta_1, theta_2, lam) = theta_init + sin((1-lam) Omega)/sin Omega * delta_1
                                                             + sin(lam Omega)/sin Omega * delta_2
        cos Omega = <delta_1, delta_2> / (|delta_1| |delta_2|)

    with Omega computed per group of tensors (``parameter_groups``: per tensor by default), and
    ``slerp_coefficients``' linear fallback for parallel or zero-norm deltas. For M = 2 models,
    ``lam`` (default 0.5) is the position between theta_1 (lam=0) and theta_2 (lam=1). For
    M > 2 it iterates, which weights every model equally:

        slerp_M = slerp(theta_init, slerp_{M-1}(theta_1..theta_{M-1}), theta_M, lam = 1/M)

    (the intermediate slerp_{M-1} stays in float32). The result has ``init``'s storage dtypes.
    """
    lam = slerp_lam(lam, len(models))
    check_compatible({"init": init, **{f"model {i + 1}": m for i, m in enumerate(models)}})
    floating = [k for k, t in init.items() if _floating(t)]
    out = {k: _clone(t) for k, t in init.items() if not _floating(t)}
    for group in parameter_groups(floating, granularity):
        base = {k: _to(init[k], _acc_dtype(init[k], *(m[k] for m in models))) for k in group}
        merged = {k: _sub(models[0][k], base[k]) for k in group}  # slerp_1 - theta_init = delta_1
        for m in range(1, len(models)):
            lam_m = lam if len(models) == 2 else 1.0 / (m + 1)
            delta = {k: _sub(models[m][k], base[k]) for k in group}
            dot = sum(_dot(merged[k], delta[k]) for k in group)
            n1 = math.sqrt(sum(_dot(merged[k], merged[k]) for k in group))
            n2 = math.sqrt(sum(_dot(delta[k], delta[k]) for k in group))
            a, b = slerp_coefficients(dot, n1, n2, lam_m, eps)
            for k in group:  # merged <- a merged + b delta, in place
                merged[k] *= a
                _axpy_(merged[k], delta[k], b)
        for k in group:
            merged[k] += base[k]
            out[k] = _to(merged[k], _dtype_name(init[k]))
    return {k: out[k] for k in init}  # init's key order


def slerp_gram_coefficients(gram: Sequence[Sequence[float]], lam: float | None = None, eps: float = SLERP_EPS) -> list[float]:
    """``slerp``'s result for one group as theta_init + sum_i c_i delta_i, from the Gram matrix
    G_ij = <delta_i, delta_j> alone: every intermediate slerp_m is a combination c of the deltas,
    so |slerp_m - theta_init|^2 = c^T G c and <slerp_m - theta_init, delta_j> = (G c)_j. This is
    what lets ``rsoup_lib.front`` evaluate a SLERP front without touching the weights per point.
    """
    n = len(gram)
    c = [1.0] + [0.0] * (n - 1)
    for m in range(1, n):
        lam_m = (0.5 if lam is None else lam) if n == 2 else 1.0 / (m + 1)
        gc = [sum(gram[i][j] * c[j] for j in range(n)) for i in range(n)]
        n1 = math.sqrt(max(0.0, sum(c[i] * gc[i] for i in range(n))))
        n2 = math.sqrt(max(0.0, gram[m][m]))
        a, b = slerp_coefficients(gc[m], n1, n2, lam_m, eps)
        c = [a * x for x in c]
        c[m] += b
    return c


# --------------------------------------------------------------------------------------------
# liti and ema


def liti(init: StateDict, model: StateDict, eta: float = 0.3) -> dict[str, Array]:
    """Linear interpolation towards the init (WARP stage 3):

        theta_eta = (1 - eta) theta_init + eta theta,   eta in [0, 1]

    The result has ``init``'s storage dtypes.
    """
    eta = check_unit("eta", eta)
    check_compatible({"init": init, "model": model})
    out = {}
    for key, t0 in init.items():
        if not _floating(t0):
            out[key] = _clone(t0)
            continue
        acc = _scaled(t0, 1.0 - eta, _acc_dtype(t0, model[key]))
        _axpy_(acc, model[key], eta)
        out[key] = _to(acc, _dtype_name(t0))
    return out


def ema_update(ema: StateDict, model: StateDict, mu: float) -> dict[str, Array]:
    """One EMA step, as a new state dict:  theta_ema <- (1 - mu) theta_ema + mu theta.

    See ``ema_update_`` for the in-place version a training loop uses.
    """
    mu = check_unit("mu", mu)
    check_compatible({"ema": ema, "model": model})
    out = {}
    for key, e in ema.items():
        if not _floating(e):
            out[key] = _clone(model[key])
            continue
        acc = _scaled(e, 1.0 - mu, _acc_dtype(e, model[key]))
        _axpy_(acc, model[key], mu)
        out[key] = _to(acc, _dtype_name(e))
    return out


def ema_update_(ema: Sequence[Array], params: Sequence[Array], mu: float) -> None:
    """In place: theta_ema <- (1 - mu) theta_ema + mu theta, for lists of tensors (one fused
    ``torch._foreach_lerp_``). The EMA tensors must be float32 or float64: with mu = 0.01 a
    bfloat16 EMA would round most updates away."""
    import torch

    mu = check_unit("mu", mu)
    ema = list(ema)
    if any(e.dtype not in (torch.float32, torch.float64) for e in ema):
        raise ValueError("keep EMA tensors in float32: small-mu updates vanish in lower precision")
    with torch.no_grad():
        torch._foreach_lerp_(ema, [p.detach().to(e.dtype) for e, p in zip(ema, params)], mu)


# --------------------------------------------------------------------------------------------
# LoRA

LORA_PREFIX = "base_model.model."
# How ``rsoup merge`` merges adapters: "delta" merges the weight deltas (``lora_deltas``),
# "ab" averages A and B (``lora_ab_lerp``).
LORA_MODES = ("delta", "ab")


def lora_scaling(lora_alpha: float, r: int, use_rslora: bool = False) -> float:
    """peft's scale s of Delta W = s B A: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    return lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r


def lora_modules(adapter: Mapping[str, Array | TensorSpec]) -> dict[str, tuple[str, str, bool]]:
    """``{base weight name: (A key, B key, transposed)}`` for a peft LoRA state dict.

    peft saves ``base_model.model.<module>.lora_A.weight`` / ``lora_B.weight`` for Linear
    layers (A: r x in, B: out x r) and ``<module>.lora_embedding_A`` / ``_B`` for embeddings
    (A: r x vocab, B: dim x r, Delta W = (B A)^T). Any other tensor (DoRA magnitudes,
    ``modules_to_save`` copies, LoRA biases) is refused: its merge is not a B A product.
    """
    modules: dict[str, tuple[str, str, bool]] = {}
    for key in adapter:
        if key.endswith(".lora_A.weight"):
            module, b_key, transposed = key[: -len(".lora_A.weight")], key.replace(".lora_A.", ".lora_B."), False
        elif key.endswith(".lora_embedding_A"):
            module, b_key, transposed = key[: -len(".lora_embedding_A")], key[:-1] + "B", True
        elif key.endswith((".lora_B.weight", ".lora_embedding_B")):
            continue
        else:
            raise UserError(
                f"adapter tensor {key!r} is not a LoRA A/B matrix (DoRA, modules_to_save or LoRA "
                "biases are not supported): train plain LoRA adapters to merge them"
            )
        if b_key not in adapter:
            raise UserError(f"adapter has {key!r} but no matching {b_key!r}: the adapter file is incomplete")
        if len(spec_of(adapter[key]).shape) != 2:
            raise UserError(f"adapter tensor {key!r} is not 2-D: only Linear and Embedding LoRA are supported")
        modules[module.removeprefix(LORA_PREFIX) + ".weight"] = (key, b_key, transposed)
    return modules


def lora_deltas(adapter: StateDict, lora_alpha: float, use_rslora: bool = False, fan_in_fan_out: bool = False) -> dict[str, Array]:
    """The weight deltas of a LoRA adapter, in float32, keyed by the base model's weight names:

        Delta W = s B A,   s = lora_alpha / r   (lora_alpha / sqrt(r) with rsLoRA)

    transposed for embeddings and for ``fan_in_fan_out`` layers (GPT-2's Conv1D). The rank r
    is read from each A, so per-module ranks need no config. Merging adapters "in delta mode"
    is any merge of these deltas; it is linear in the weights, unlike ``lora_ab_lerp``.
    """
    out = {}
    for name, (a_key, b_key, transposed) in lora_modules(adapter).items():
        a, b = _to(adapter[a_key], "float32"), _to(adapter[b_key], "float32")
        delta = lora_scaling(lora_alpha, a.shape[0], use_rslora) * (b @ a)
        out[name] = _contiguous(delta.T) if transposed or fan_in_fan_out else delta
    return out


def lora_ab_lerp(adapters: Sequence[StateDict], weights: Sequence[float] | None = None) -> dict[str, Array]:
    """The official rewarded-soups LoRA merge: average A and B separately,

        A = sum_i w_i A_i,   B = sum_i w_i B_i,   so  Delta W = s (sum_i w_i B_i)(sum_i w_i A_i),

    which is NOT sum_i w_i s B_i A_i: it adds cross terms w_i w_j B_i A_j and is quadratic in
    the weights. Kept (``--lora-mode ab``) so the book can compare it with delta merging. The
    adapters must share r and alpha (the caller checks their configs)."""
    return lerp(adapters, weights)


# --------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class Param:
    """One parameter of a merge method, declared once: ``merge`` fills ``default`` when the
    parameter is absent (or None) and runs ``check``; ``rsoup merge`` makes it a flag
    ``--name`` (``type``, ``nargs``, ``choices``, ``help``).

    ``check(value, n_models)`` returns the value the method runs with (a default that depends on
    the number of models is resolved there) or raises ``UserError``.
    """

    name: str
    default: Any
    check: Callable[[Any, int], Any]
    help: str
    type: Callable[[str], Any] = float
    nargs: str | None = None
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class MergeMethod:
    """A merge method: ``fn(init, models, **params)`` with the declared ``params`` only."""

    name: str
    fn: Callable[..., dict[str, Array]]
    needs_init: bool
    summary: str
    params: tuple[Param, ...] = ()
    n_models: int | None = None  # exactly this many models (None: the checks decide)

    def resolve(self, n_models: int, has_init: bool, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters ``fn`` runs with, after every declared check; ``UserError`` for an
        unknown parameter name, a wrong number of models, a missing init or a bad value."""
        names = [p.name for p in self.params]
        unknown = [k for k in params if k not in names]
        if unknown:
            valid = ", ".join(names) or "none"
            raise UserError(f"{self.name} has no parameter {unknown[0]!r}: its parameters are {valid}")
        if self.n_models is not None and n_models != self.n_models:
            raise UserError(f"{self.name} takes exactly {self.n_models} model(s), got {n_models}: {self.summary}")
        if self.needs_init and not has_init:
            raise UserError(f"{self.name} needs the init checkpoint (task vectors are theta_i - theta_init)")
        given = {k: v for k, v in params.items() if v is not None}
        return {p.name: p.check(given.get(p.name, p.default), n_models) for p in self.params}


def _lerp(init, models, weights):
    return lerp(models, weights)


def _slerp(init, models, lam, granularity):
    return slerp(init, models, lam=lam, granularity=granularity)


def _liti(init, models, eta):
    return liti(init, models[0], eta)


METHODS: dict[str, MergeMethod] = {
    m.name: m
    for m in [
        MergeMethod(
            "lerp", _lerp, False, "theta = sum_i w_i theta_i (the rewarded soup)",
            (Param("weights", None, lerp_weights, "one weight per model, on the simplex (default uniform)", nargs="+"),),
        ),
        MergeMethod(
            "slerp", _slerp, True, "spherical interpolation of task vectors theta_i - theta_init (WARP)",
            (
                Param("lam", None, slerp_lam, "position in [0, 1] between two models (default 0.5); M > 2 models iterate with lam = 1/m"),
                Param("granularity", "tensor", lambda g, n: check_granularity(g), "where the angle is taken: tensor (default), layer (transformer block) or model", type=str, choices=GRANULARITIES),
            ),
        ),
        MergeMethod(
            "liti", _liti, True, "theta = (1 - eta) theta_init + eta theta_1 (WARP's LITI)",
            (Param("eta", 0.3, lambda eta, n: check_unit("eta", eta), "weight of the model in [0, 1] (default 0.3)"),),
            n_models=1,
        ),
    ]
}  # fmt: skip


def method_named(name: str) -> MergeMethod:
    if name not in METHODS:
        raise UserError(f"unknown merge method {name!r}: use one of {', '.join(METHODS)}")
    return METHODS[name]


def merge(method: str, models: Sequence[StateDict], init: StateDict | None = None, **params) -> dict[str, Array]:
    """Run the registered method ``method`` with its declared parameters (``weights`` for lerp,
    ``lam`` and ``granularity`` for slerp, ``eta`` for liti; None or absent: the default)."""
    m = method_named(method)
    return m.fn(init, models, **m.resolve(len(models), init is not None, params))
