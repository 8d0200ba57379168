"""The run folder an RL run writes, and everything that reads it back.

``rsoup_lib.rl.train(config, out_dir)`` writes::

    config.json         the RLConfig
    metrics.jsonl       one JSON line per step (rewards, KLs, entropy, grad norm, seconds)
    checkpoints/step-N/ the latest checkpoint: trainable weights, optimiser, EMA anchor (float32),
                        the RNG state of every process; removed once the run completes
    snapshots/step-N/   the policy after N steps, every ``snapshot_every`` steps (kept; a model
                        folder like policy/), to evaluate a run's trajectory on held-out prompts
    policy/             the trained policy, a Hugging Face model folder (LoRA merged in), with
                        ``rsoup_policy.json``: its init and its reference policy (the one "KL to
                        SFT" is measured against)
    adapter/            the LoRA adapter (LoRA runs only)
    summary.json        written last: the run is complete

Every folder and file is written atomically (``rsoup_lib.io``): a killed run leaves either the
previous checkpoint or the new one, never half of one, and ``train`` resumes from it (a metrics
line torn by the kill is dropped with the steps after the checkpoint). ``check_run_folder``
refuses an output folder that holds the run of another config; ``policy_folder`` lets a run
folder stand for its ``policy/`` wherever a policy is named (``rsoup eval --policy RUN``).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

from rsoup_lib.errors import UserError
from rsoup_lib.io import atomic_dir, atomic_write_json, atomic_write_text

CKPT_PREFIX = "step-"
POLICY_META = "rsoup_policy.json"


# ----------------------------------------------------------------------------- reading a run
def policy_dir(run_dir: str | Path) -> Path:
    """The trained policy's model folder inside a run folder."""
    return Path(run_dir) / "policy"


def policy_folder(name: str) -> str:
    """``name`` itself, except for a run folder written by ``rsoup train`` (``config.json`` of the
    run, ``policy/`` inside), which stands for its trained policy ``RUN/policy``; a path that
    does not exist, or a run that has not finished, is a ``UserError`` saying so."""
    path = Path(name)
    if not path.exists():
        if any(sep in name for sep in ("/", "\\")) or name.startswith("."):
            raise UserError(f"policy folder {name} does not exist: give the path of an existing model folder "
                            "(or a policy name: tiny, smollm2-135m-instruct, tiny-random)")  # fmt: skip
        return name
    if path.is_dir() and (path / "policy" / "config.json").is_file():
        return str(path / "policy")
    if path.is_dir() and _is_run_config(path / "config.json"):
        raise UserError(f"{name} is an unfinished rsoup train run (no policy/ yet): finish it by re-running "
                        f"`rsoup train` with the same flags and --out {name}")  # fmt: skip
    return name


def _is_run_config(path: Path) -> bool:
    """True for the ``config.json`` of an rsoup run folder (an RLConfig), not a model's."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "reward" in config and "policy" in config and "model_type" not in config


def check_run_folder(out_dir: Path, config: dict) -> None:
    """``UserError`` unless ``out_dir`` can hold the run of ``config``: it does not exist yet, or
    it is a folder that holds nothing yet, or the run of this same config (to resume or reuse).
    Fields added to the config after a run was written count with their defaults."""
    from dataclasses import fields

    from rsoup_lib.rl import RLConfig

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is not a folder: give a new folder for the run")
    path = out_dir / "config.json"
    if not path.is_file():
        return
    try:
        stored = json.loads(path.read_text())
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is not readable ({err}): move {out_dir} away or train into a new --out") from None
    stored = {**{f.name: f.default for f in fields(RLConfig)}, **stored}
    differs = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
    if differs:
        k = differs[0]
        raise UserError(
            f"--out {out_dir} holds a run of another config ({k}={stored.get(k)!r} there, {config.get(k)!r} now): "
            "train into a new --out, or delete that folder to start over"
        )


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of ``metrics.jsonl``, one per optimiser step."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines() if l]


def trajectory(run_dir: str | Path) -> list[tuple[int, str]]:
    """The policies along a run as (step, policy name): the init at step 0, every snapshot, and
    the final policy. Evaluate them to get the run's trajectory on held-out prompts (rather than
    the training-batch estimates in metrics.jsonl)."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    points = [(0, config["policy"])]
    snaps = run_dir / "snapshots"
    if snaps.is_dir():
        found = [(int(d.name.split("-")[1]), str(d)) for d in snaps.iterdir() if d.name.startswith("step-")]
        points += sorted(found)
    points.append((config["steps"], str(policy_dir(run_dir))))
    return points


def reference_of(policy) -> str | None:
    """The reference policy a trained policy folder records (``rsoup_policy.json``): the policy
    its KL is measured against (for WARP's later iterations the original SFT policy, not the
    iteration's init). None for anything that is not such a folder."""
    meta = Path(str(policy)) / POLICY_META if isinstance(policy, (str, Path)) else None
    if meta is None or not meta.is_file():
        return None
    info = json.loads(meta.read_text())
    return info.get("reference") or info["init"]


# ----------------------------------------------------------------------------- metrics
def start_metrics(out_dir: Path, start_step: int) -> Path:
    """``metrics.jsonl`` for a run starting at ``start_step``: the lines before it are kept (a
    resumed run drops the lines a killed run wrote past its checkpoint)."""
    path = Path(out_dir) / "metrics.jsonl"
    kept = []
    if start_step and path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line torn by a kill: it and what follows are redone
                break
            if row["step"] < start_step:
                kept.append(line)
    atomic_write_text(path, "".join(l + "\n" for l in kept))
    return path


def append_metrics(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def summary(metrics_path: Path) -> dict:
    """Steps, seconds, and the mean reward and KL of the last 10 steps."""
    rows = [json.loads(l) for l in Path(metrics_path).read_text().splitlines() if l]
    if not rows:
        return {"steps": 0}
    last = rows[-10:]
    return {
        "steps": len(rows),
        "seconds": sum(r["seconds"] for r in rows),
        "final_reward": sum(r["reward"] for r in last) / len(last),
        "final_kl_sft": sum(r["kl_sft"] for r in last) / len(last),
    }


# ----------------------------------------------------------------------------- checkpoints
def latest_checkpoint(out_dir: Path) -> Path | None:
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return None
    ckpts = sorted(
        (p for p in root.iterdir() if p.name.startswith(CKPT_PREFIX) and (p / "state.json").is_file()),
        key=lambda p: int(p.name[len(CKPT_PREFIX) :]),
    )
    return ckpts[-1] if ckpts else None


def rng_state() -> dict[str, Any]:
    import torch

    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out_dir: Path, step: int, trainable, optimizer, ema, rng_states, config: dict) -> None:
    """The state to resume from after ``step`` steps (only the newest checkpoint is kept)."""
    import torch
    from safetensors.torch import save_file

    root = Path(out_dir) / "checkpoints"
    with atomic_dir(root / f"{CKPT_PREFIX}{step:06d}") as tmp:
        save_file({n: p.detach().contiguous().cpu() for n, p in trainable.items()}, tmp / "trainable.safetensors")
        if ema is not None:
            save_file({n: t.contiguous().cpu() for n, t in ema.items()}, tmp / "ema.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(rng_states, tmp / "rng.pt")
        atomic_write_json(tmp / "state.json", {"step": step, "world_size": len(rng_states), "config": config})
    for old in root.iterdir():  # keep only the newest
        if old.name.startswith(CKPT_PREFIX) and old.name != f"{CKPT_PREFIX}{step:06d}":
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(ckpt: Path, trainable, optimizer, ema, rank: int, world: int) -> int:
    """Restore weights, optimiser, EMA and this process's RNG; returns the step to resume at."""
    import torch
    from safetensors.torch import load_file

    state = json.loads((ckpt / "state.json").read_text())
    if state["world_size"] != world:
        raise UserError(
            f"checkpoint {ckpt} was written by {state['world_size']} processes, this run has {world}; "
            "resume with the same number of processes or start a new output folder"
        )
    weights = load_file(ckpt / "trainable.safetensors")
    with torch.no_grad():
        for n, p in trainable.items():
            p.copy_(weights[n])
    if ema is not None:
        for n, t in load_file(ckpt / "ema.safetensors").items():
            ema[n] = t.to(ema[n].device, ema[n].dtype)
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=False))
    set_rng_state(torch.load(ckpt / "rng.pt", weights_only=False)[rank])
    return int(state["step"])


# ----------------------------------------------------------------------------- policies
def policy_meta(config, steps: int) -> dict:
    """What ``rsoup_policy.json`` records: the init, the reference, the reward, the steps."""
    return {"init": config.policy, "reference": config.reference or config.policy, "reward": config.reward,
            "steps": steps, "lora": config.lora}  # fmt: skip


def save_policy(model, tokenizer, config, out_dir: Path) -> None:
    """The trained policy as ``policy/`` (LoRA merged in) and, for LoRA, ``adapter/``."""
    if config.lora:
        with atomic_dir(Path(out_dir) / "adapter") as tmp:
            model.save_pretrained(tmp)
        model = model.merge_and_unload()
    _save_model_folder(model, tokenizer, Path(out_dir) / "policy", policy_meta(config, config.steps))


def save_snapshot(model, tokenizer, config, out_dir: Path, step: int) -> None:
    """The policy after ``step`` steps as a model folder (LoRA merged into a copy; training goes on)."""
    if config.lora:
        model = copy.deepcopy(model).merge_and_unload()
    _save_model_folder(model, tokenizer, Path(out_dir) / "snapshots" / f"step-{step}", policy_meta(config, step))


def _save_model_folder(model, tokenizer, folder: Path, meta: dict) -> None:
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / POLICY_META, meta)
