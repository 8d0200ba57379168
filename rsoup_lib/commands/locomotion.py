"""``rsoup locomotion``: the rewarded-soups locomotion experiment (chapter 6) from a config file."""

from __future__ import annotations

HELP = "train and evaluate a MuJoCo locomotion rewarded soup (risky vs cautious gait) from a YAML config"
DESCRIPTION = """\
The locomotion experiment of Rewarded Soups (Ramé et al., 2023) as rsoup_lib/locomotion.py
implements it with Stable-Baselines3's PPO on a gymnasium MuJoCo task: pre-train one policy (the
shared init) and a second one with another seed, fine-tune a risky (control-cost weight w0) and a
cautious (w1) policy from the shared init per seed, the cautious one from the other init as well,
and MORL policies on the mixed rewards; then evaluate the soups
theta_lambda = (1 - lambda) theta_risky + lambda theta_cautious on the same episodes.

Every run goes through the run cache ($RSOUP_CACHE_DIR), so a re-run with more seeds or lambdas
trains only what is new. OUT gets locomotion.json: the config, the run folders, and per policy
the mean and standard error of forward progress F and control cost C, and the per-episode values.

examples:
  rsoup locomotion --config configs/locomotion_halfcheetah.yaml --out runs/loco
  rsoup locomotion --config configs/locomotion_humanoid.yaml --out runs/loco-humanoid --workers 16
"""


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, help="YAML file of LocoConfig fields (see configs/locomotion_halfcheetah.yaml)")
    p.add_argument("--out", default="runs/locomotion", help="output folder (default: runs/locomotion)")
    p.add_argument("--workers", type=int, default=None, help="training processes side by side (default: the config's)")
    p.add_argument("--no-eval", action="store_true", help="train only, skip the evaluation of the fronts")


def run(args) -> int:
    import dataclasses
    import json
    from pathlib import Path

    from rsoup_lib import locomotion as L

    cfg = L.LocoConfig.from_file(args.config)
    if args.workers:
        cfg = dataclasses.replace(cfg, workers=args.workers)
    runs = L.train_all(cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"config": dataclasses.asdict(cfg), "runs": {k: str(v) for k, v in _run_paths(runs).items()},
              "train_seconds": runs.seconds(), "policies": []}  # fmt: skip
    if not args.no_eval:
        for name, ep in L.evaluate_experiment(cfg, runs):
            point = {"policy": name, **L.summary(ep), "forward": ep.forward.tolist(), "ctrl": ep.ctrl.tolist()}
            result["policies"].append(point)
            print(json.dumps({k: point[k] for k in ("policy", "F", "F_se", "C", "C_se")}))
    (out / "locomotion.json").write_text(json.dumps(result, indent=1))
    print(f"[rsoup locomotion] wrote {out / 'locomotion.json'}")
    return 0


def _run_paths(runs) -> dict:
    paths = {f"init {j}": p for j, p in enumerate(runs.inits)}
    for name in ("risky", "cautious", "cautious_other"):
        paths.update({f"{name} seed {s}": p for s, p in getattr(runs, name).items()})
    for mu, by_seed in runs.morl.items():
        paths.update({f"morl {mu} seed {s}": p for s, p in by_seed.items()})
    return paths
