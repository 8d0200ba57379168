"""WARP: Weight Averaged Rewarded Policies (Ramé et al., 2024): the procedure of the book's
chapter 3.

One reward r, a KL coefficient beta, and three merges in weight space per iteration. Starting
from theta^0 = theta_sft, for i = 1..I:

    stage 1, EMA anchor   theta_i,m = RL(init = theta^{i-1}, anchor = EMA(mu), seed = s_{i,m}),
                          m = 1..M, runs that differ only in their seed (sampling and prompt order)
    stage 2, SLERP        theta_slerp^i = slerp(theta^{i-1}; theta_i,1, ..., theta_i,M)
                          spherical interpolation of the task vectors delta_m = theta_i,m - theta^{i-1}
                          (per tensor by default; iterated with lam = 1/m for M > 2)
    stage 3, LITI         theta^i = (1 - eta) theta^{i-1} + eta theta_slerp^i

and theta^i is the init of the next iteration. The output is the front

    { (1 - eta') theta_sft + eta' theta_slerp^I,  eta' in [0, 1] }

evaluated on held-out prompts: reward against KL to the SFT policy.

Every RL run goes through the run cache (kind ``rl``), so a notebook that trained the same
EMA runs (WARP chapter, stage b) and ``rsoup warp`` share them; merged policies are cached too
(kind ``warp-merge``). Inits of later iterations are named ``cache:KEY/policy`` in the RL
config, so cache keys do not depend on where the cache lives.

Why our own code and not a library: no official WARP code exists, and the public
re-implementations take one SLERP angle for the whole model; here the granularity is a
parameter (tensor, layer, model) and every stage is a plain function of state dicts
(``rsoup_lib.merge``).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rsoup_lib import cache
from rsoup_lib.errors import UserError
from rsoup_lib.io import atomic_dir, atomic_write_json
from rsoup_lib.rl import RLConfig

DEFAULT_FRONT_ETAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class WarpConfig:
    """The whole WARP procedure. ``rl`` is the recipe of every RL run; its anchor is EMA."""

    rl: RLConfig = field(default_factory=lambda: RLConfig(anchor="ema", beta=0.1, ema_rate=0.01))
    m: int = 2  # policies merged per iteration
    iterations: int = 1  # I
    eta: float = 0.3  # LITI step towards the SLERP of each iteration
    granularity: str = "tensor"  # SLERP angle per "tensor", "layer" (block) or "model"
    front_etas: tuple[float, ...] = DEFAULT_FRONT_ETAS
    eval_prompts: int = 128  # held-out completions per front point
    eval_seed: int = 1
    eval_max_new_tokens: int = 32

    def validate(self) -> None:
        from rsoup_lib.merge import check_granularity
        from rsoup_lib.rl import check_field_types

        check_field_types(WarpConfig, asdict(self), "WARP config: ")
        if self.rl.anchor != "ema":
            raise UserError(f"WARP's runs use the EMA anchor; the rl section says anchor={self.rl.anchor!r}: "
                            "remove it or write anchor: ema")  # fmt: skip
        if self.m < 2:
            raise UserError(f"m={self.m}: SLERP merges at least 2 policies; set m: 2 or more")
        if self.iterations < 1:
            raise UserError(f"iterations={self.iterations}: at least 1")
        if not 0.0 <= self.eta <= 1.0 or not all(0.0 <= e <= 1.0 for e in self.front_etas):
            raise UserError(f"eta={self.eta} and every front eta {list(self.front_etas)} must lie in [0, 1]")
        for name in ("eval_prompts", "eval_max_new_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"WARP config: {name}={getattr(self, name)} must be >= 1")
        check_granularity(self.granularity)
        self.rl.validate()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "WarpConfig":
        from rsoup_lib.rl import check_field_types

        if not isinstance(raw, dict):
            raise UserError(f"WARP config: the file must be a mapping of keys (rl:, m:, ...), not a {type(raw).__name__}; "
                            "see configs/warp_tiny.yaml")  # fmt: skip
        raw = dict(raw)
        rl_raw = raw.pop("rl", None) or {}
        if not isinstance(rl_raw, dict):
            raise UserError(f"WARP config: the rl section must be a mapping of RL keys (policy:, steps:, ...), "
                            f"not {rl_raw!r}; see configs/warp_tiny.yaml")  # fmt: skip
        rl_raw = dict(rl_raw)
        rl_raw.setdefault("anchor", "ema")
        known_rl = {f.name for f in dataclasses.fields(RLConfig)}
        known = {f.name for f in dataclasses.fields(cls)} - {"rl"}
        for section, keys, valid in (("rl", rl_raw, known_rl), ("top level", raw, known)):
            unknown = sorted(set(keys) - valid)
            if unknown:
                raise UserError(
                    f"WARP config: unknown key(s) {unknown} in the {section}; valid keys: {sorted(valid)}"
                )
        check_field_types(RLConfig, rl_raw, "WARP config: rl.")
        check_field_types(cls, raw, "WARP config: ")
        if "front_etas" in raw:
            etas = raw["front_etas"]
            if not isinstance(etas, (list, tuple)) or not all(
                isinstance(e, (int, float)) and not isinstance(e, bool) for e in etas
            ):
                raise UserError(f"WARP config: front_etas={etas!r} must be a list of numbers in [0, 1]")
            raw["front_etas"] = tuple(float(e) for e in etas)
        config = cls(rl=RLConfig(**rl_raw), **raw)
        config.validate()
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> "WarpConfig":
        """A YAML (.yaml/.yml) or TOML (.toml) file with an ``rl`` section and WARP's keys."""
        from rsoup_lib.io import read_config_file

        raw = read_config_file(path, "WARP config", "configs/warp_tiny.yaml")
        return cls.from_dict(raw)


def run_seed(base: int, iteration: int, member: int) -> int:
    """The seed of run ``member`` (0-based) of ``iteration`` (1-based): all distinct."""
    return base + 1000 * (iteration - 1) + member


@dataclass
class Iteration:
    index: int
    init: str  # policy name of theta^{i-1}
    runs: list[str]  # run folders (cache) of the M EMA-anchored runs
    slerp: str  # policy name of theta_slerp^i
    liti: str  # policy name of theta^i


def warp_iteration(config: WarpConfig, index: int, init: str, progress: bool = True) -> Iteration:
    """Stages 1-3 of one iteration from the policy ``init``."""
    from rsoup_lib.checkpoints import load_state_dict, policy_state, save_merged
    from rsoup_lib.merge import liti, slerp
    from rsoup_lib.rl import cached_train

    # From iteration 2 on the init is theta^{i-1}, but KL is still measured against the SFT policy.
    reference = config.rl.policy if init != config.rl.policy else ""
    runs = [
        cached_train(
            dataclasses.replace(config.rl, policy=init, reference=reference, seed=run_seed(config.rl.seed, index, m)),
            progress,
        )
        for m in range(config.m)
    ]
    run_keys = [r.name for r in runs]
    merge_config = {"init": init, "runs": run_keys, "granularity": config.granularity, "eta": config.eta}

    def merge(d: Path) -> None:
        init_state = policy_state(init)
        states = [load_state_dict(r / "policy") for r in runs]
        theta_slerp = slerp(init_state, states, lam=0.5 if config.m == 2 else None, granularity=config.granularity)
        save_merged(init, theta_slerp, d / "slerp")
        save_merged(init, liti(init_state, theta_slerp, config.eta), d / "liti")
        atomic_write_json(d / "merge.json", merge_config)

    merged = cache.cached_run("warp-merge", merge_config, merge)
    ref = cache.ref(merged)
    return Iteration(index, init, [str(r) for r in runs], f"{ref}/slerp", f"{ref}/liti")


def warp(config: WarpConfig, progress: bool = True) -> list[Iteration]:
    """Run the I iterations (reusing cached runs and merges); returns them in order."""
    config.validate()
    init = config.rl.policy
    iterations = []
    for i in range(1, config.iterations + 1):
        it = warp_iteration(config, i, init, progress)
        iterations.append(it)
        init = it.liti
    return iterations


def evaluate_front(
    config: WarpConfig,
    slerp_policy: str,
    etas: tuple[float, ...] | None = None,
    rewards: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Reward and KL to the SFT policy of (1 - eta) theta_sft + eta theta_slerp for each eta,
    written in place into one live model (``rsoup_lib.front.Front``), no reloading per point."""
    from rsoup_lib.checkpoints import parameters
    from rsoup_lib.evaluate import evaluate
    from rsoup_lib.front import Front
    from rsoup_lib.models import load_policy

    sft = load_policy(config.rl.policy, device=config.rl.device, dtype=config.rl.dtype)
    model, tokenizer = load_policy(config.rl.policy, device=config.rl.device, dtype=config.rl.dtype)
    target = load_policy(slerp_policy, device=config.rl.device, dtype=config.rl.dtype)[0]
    init = parameters(model)
    delta = {k: p.detach() - init[k] for k, p in target.named_parameters()}
    del target
    front = Front(model, [delta], init=init)
    rewards = rewards or [config.rl.reward]
    points = []
    for eta in etas if etas is not None else config.front_etas:
        front.liti(eta)
        result = evaluate(
            (model, tokenizer),
            rewards,
            n=config.eval_prompts,
            seed=config.eval_seed,
            sft=sft,
            max_new_tokens=config.eval_max_new_tokens,
        )
        points.append({"eta": eta, **result.to_dict()})
    return points


def check_output(config: WarpConfig, out: Path) -> None:
    """``UserError`` unless ``out`` can take this config's outputs: it does not exist, is an
    empty folder, or holds the output of this same config (a rerun replaces it). Checked before
    anything is trained, so a wrong --out costs nothing and overwrites nothing."""
    import json

    out = Path(out)
    if not out.exists():
        parent = next((p for p in out.absolute().parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise UserError(f"--out {out} lies under a file, which is not a folder: choose another --out")
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is not a folder: choose another --out")
    if not any(out.iterdir()):
        return
    if not (out / "warp.json").is_file():
        raise UserError(f"--out {out} is not a WARP output folder (it has no warp.json) and is not empty: "
                        "choose another --out")  # fmt: skip
    try:
        stored = json.loads((out / "warp.json").read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{out / 'warp.json'} is not readable ({err}): move {out} away or choose another --out") from None
    if stored != json.loads(json.dumps(asdict(config))):
        raise UserError(f"--out {out} holds the output of another WARP config: choose another --out, "
                        "or delete it to replace it")  # fmt: skip


def write_outputs(config: WarpConfig, iterations: list[Iteration], front: list[dict], out: Path) -> None:
    """``out/warp.json`` (config, every intermediate policy, the front) and a copy of every
    intermediate policy under ``out/iteration-i/``; written atomically as one folder."""
    from rsoup_lib.cache import resolve

    with atomic_dir(out) as tmp:
        listing = []
        for it in iterations:
            base = tmp / f"iteration-{it.index}"
            for m, run in enumerate(it.runs, 1):
                shutil.copytree(Path(run) / "policy", base / f"run-{m}")
                shutil.copy2(Path(run) / "metrics.jsonl", base / f"run-{m}" / "metrics.jsonl")
            shutil.copytree(resolve(it.slerp), base / "slerp")
            shutil.copytree(resolve(it.liti), base / "liti")
            listing.append({**asdict(it), "folder": f"iteration-{it.index}"})
        config_dict = asdict(config)
        atomic_write_json(tmp / "warp.json", {"config": config_dict, "iterations": listing, "front": front})
