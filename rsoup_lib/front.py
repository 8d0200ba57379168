"""Fast fronts: write theta(lambda) into a live model's parameters in place.

Evaluating a rewarded-soups front means evaluating theta(lambda) for 11 (or 66) values of
lambda. Re-merging checkpoints from disk per point would dominate the cost; instead ``Front``
keeps theta_init and the task vectors delta_i = theta_i - theta_init in memory (float32) and
every point is one pass of fused ``torch._foreach_*`` ops over the parameters:

    theta = theta_init + sum_i c_i delta_i

where the coefficients c say which merge it is (per tensor group for SLERP):

    lerp(w):     c_i = w_i                      (= sum_i w_i theta_i, since sum_i w_i = 1)
    slerp(lam):  c = rsoup_lib.merge.slerp_gram_coefficients(G_group, lam), G_ij = <delta_i, delta_j>
    liti(eta):   c = (eta, 0, ...)              (= (1 - eta) theta_init + eta theta_1)

The Gram matrices are computed once, so a SLERP point costs no more than a LERP point.

    front = Front.from_state_dicts(model, init_sd, [sd_1, sd_2])
    for lam in lambdas:
        front.lerp([1 - lam, lam])
        rewards.append(evaluate(model))
    front.reset()   # back to theta_init

For LoRA policies, ``Front.from_lora`` takes the base model and the adapters' deltas
Delta W_i = s B_i A_i (``rsoup_lib.merge.lora_deltas``), i.e. delta-mode merging.
"""

from __future__ import annotations

from typing import Sequence

import torch

from rsoup_lib.errors import UserError
from rsoup_lib.merge import (
    StateDict,
    check_compatible,
    check_simplex,
    lora_deltas,
    parameter_groups,
    check_unit,
    slerp_gram_coefficients,
    slerp_lam,
)


class Front:
    """theta_init and task vectors of a live ``model``; ``lerp``/``slerp``/``liti`` write a
    merge into the model's parameters in place, ``reset`` writes theta_init back.

    ``deltas`` is one ``{parameter name: tensor}`` per fine-tuned model, all with the same keys
    (a subset of ``model.named_parameters()``; parameters not named are left alone).
    ``init`` defaults to the model's current values of those parameters.
    """

    def __init__(self, model: torch.nn.Module, deltas: Sequence[StateDict], init: StateDict | None = None, granularity: str = "tensor"):
        if not deltas:
            raise UserError("a front needs at least one task vector")
        params = dict(model.named_parameters())
        check_compatible({"model 1": deltas[0], **{f"model {i + 1}": d for i, d in enumerate(deltas[1:], 1)}})
        unknown = [k for k in deltas[0] if k not in params]
        if unknown:
            raise UserError(f"task vector tensor {unknown[0]!r} is not a parameter of the live model")
        self.keys = [k for k in params if k in deltas[0]]  # the model's parameter order
        for k in self.keys:
            if tuple(params[k].shape) != tuple(deltas[0][k].shape):
                raise UserError(f"task vector {k!r} has shape {list(deltas[0][k].shape)}, the model's parameter {list(params[k].shape)}")
        self.params = [params[k] for k in self.keys]
        with torch.no_grad():
            source = params if init is None else init
            # on the live model's device: task vectors read from files are CPU tensors, the model may be on a GPU
            self.init = [source[k].detach().to(params[k].device, torch.float32, copy=True) for k in self.keys]
            self.deltas = [[d[k].detach().to(params[k].device, torch.float32, copy=True) for k in self.keys] for d in deltas]
        # Parameters not in float32 (a bfloat16 model) are written from a float32 scratch copy.
        self._direct = all(p.dtype == torch.float32 for p in self.params)
        self._scratch = None if self._direct else [t.clone() for t in self.init]
        self.groups = parameter_groups(self.keys, granularity)
        self._index = {k: i for i, k in enumerate(self.keys)}
        self._grams: list[list[list[float]]] | None = None

    # ---- constructors

    @classmethod
    def from_state_dicts(cls, model: torch.nn.Module, init: StateDict, models: Sequence[StateDict], granularity: str = "tensor") -> "Front":
        """Task vectors theta_i - theta_init over the model's parameters (full fine-tuning)."""
        check_compatible({"init": init, **{f"model {i + 1}": m for i, m in enumerate(models)}})
        names = [k for k, _ in model.named_parameters() if k in init]
        with torch.no_grad():
            deltas = [{k: m[k].float() - init[k].float() for k in names} for m in models]
        return cls(model, deltas, init={k: init[k] for k in names}, granularity=granularity)

    @classmethod
    def from_lora(cls, model: torch.nn.Module, adapters: Sequence[StateDict], lora_alphas: Sequence[float], use_rslora: bool = False, granularity: str = "tensor") -> "Front":
        """Delta-mode LoRA front on the (unwrapped) base ``model``: delta_i = s B_i A_i."""
        deltas = [lora_deltas(a, alpha, use_rslora) for a, alpha in zip(adapters, lora_alphas)]
        return cls(model, deltas, granularity=granularity)

    # ---- points of the front

    @property
    def n_models(self) -> int:
        return len(self.deltas)

    def lerp(self, weights: Sequence[float]) -> None:
        """theta = sum_i w_i theta_i, w on the simplex."""
        weights = check_simplex(weights, self.n_models)
        self.apply([[w] * len(self.keys) for w in weights])

    def liti(self, eta: float, index: int = 0) -> None:
        """theta = (1 - eta) theta_init + eta theta_index."""
        eta = check_unit("eta", eta)
        self.apply([[eta if i == index else 0.0] * len(self.keys) for i in range(self.n_models)])

    def slerp(self, lam: float | None = None) -> None:
        """``rsoup_lib.merge.slerp`` of the models (lam for two; iterated for more)."""
        lam = slerp_lam(lam, self.n_models)
        coeffs = [[0.0] * len(self.keys) for _ in range(self.n_models)]
        for group, gram in zip(self.groups, self.grams()):
            c = slerp_gram_coefficients(gram, lam)
            for k in group:
                for i in range(self.n_models):
                    coeffs[i][self._index[k]] = c[i]
        self.apply(coeffs)

    def reset(self) -> None:
        """theta = theta_init."""
        self.apply([[0.0] * len(self.keys) for _ in range(self.n_models)])

    def grams(self) -> list[list[list[float]]]:
        """Per group, G_ij = <delta_i, delta_j> (float64 sums of float32 dots; computed once)."""
        if self._grams is None:
            n = self.n_models
            per_tensor = []
            for t in range(len(self.keys)):
                flat = [d[t].reshape(-1) for d in self.deltas]
                g = [[0.0] * n for _ in range(n)]
                for i in range(n):
                    for j in range(i, n):
                        g[i][j] = g[j][i] = float(torch.dot(flat[i], flat[j]))
                per_tensor.append(g)
            self._grams = []
            for group in self.groups:
                idx = [self._index[k] for k in group]
                self._grams.append([[sum(per_tensor[t][i][j] for t in idx) for j in range(n)] for i in range(n)])
        return self._grams

    @torch.no_grad()
    def apply(self, coeffs: Sequence[Sequence[float]]) -> None:
        """theta[t] = theta_init[t] + sum_i coeffs[i][t] delta_i[t], in place, for every tensor t."""
        target = self.params if self._direct else self._scratch
        torch._foreach_copy_(target, self.init)
        for delta, c in zip(self.deltas, coeffs):
            if all(x == c[0] for x in c):
                if c[0] != 0.0:
                    torch._foreach_add_(target, delta, alpha=c[0])
            else:
                torch._foreach_add_(target, torch._foreach_mul(delta, list(c)))
        if not self._direct:
            torch._foreach_copy_(self.params, self._scratch)  # cast to the storage dtype

    def memory_bytes(self) -> int:
        """Bytes held by the front (theta_init, task vectors, scratch)."""
        lists = [self.init, *self.deltas] + ([self._scratch] if self._scratch else [])
        return sum(t.numel() * t.element_size() for ts in lists for t in ts)


__all__ = ["Front"]
