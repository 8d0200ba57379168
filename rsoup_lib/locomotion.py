"""Rewarded soups beyond text: a MuJoCo locomotion front on the CPU (the book's chapter 6).

Rewarded Soups (Ramé et al., NeurIPS 2023) shows its claim on MuJoCo locomotion as well as on
text: policies fine-tuned from a SHARED init on different rewards can be averaged in weight space,
and the averages trace a front between the rewards. This module reproduces that on
``HalfCheetah-v5`` (gymnasium 1.4 with the ``mujoco`` wheel).

The two reward terms
--------------------
HalfCheetah's reward at step t is  r_t = v_t - w |a_t|^2  with v_t the forward velocity of the
torso (``info["x_velocity"]``; forward_reward_weight 1) and a_t in [-1, 1]^6 the torques. Over
an episode of T steps we keep both terms separately, per episode:

    F = sum_t v_t              (forward progress; higher is faster)
    C = sum_t |a_t|^2          (control cost, the energy spent; lower is cheaper)

and every policy's point on the front is (F, -C), both maximised. The two fine-tuning rewards
differ only in the control-cost weight w:

    risky     R_0 = F - w_risky C     (w_risky = 0: run as fast as possible)
    cautious  R_1 = F - w_caut  C     (w_caut = 0.5: five times HalfCheetah's default 0.1)

and the mixed (scalarised) reward of weight mu in [0, 1] is

    R_mu = (1 - mu) R_0 + mu R_1 = F - ((1 - mu) w_risky + mu w_caut) C,

which is HalfCheetah again with w = (1 - mu) w_risky + mu w_caut: MORL at mu trains on it.

Why w_caut = 0.5 and not 1: HalfCheetah has no reward for staying alive, so standing still
(F ~ 0, small C) is always available. With w_caut = 1, at the cpu budget, all three cautious
fine-tunes learnt to stand still (F = 7 to 19 against 986 to 1183 for the risky ones), and
R_1/2 = F - C/2 then ranks "do nothing" above every running policy: the different-init soup,
which barely moves either, scored BETTER than the shared-init soup on R_1/2 (about -100 against
-290 to -600), so the mixed reward could not show a collapse. With w_caut = 0.5 the cautious
policies still run, spending about a third less torque than the risky ones.

The soup
--------
theta_risky and theta_cautious are fine-tuned from the same pre-trained theta_init (same seed,
same hyperparameters); the rewarded soup of weight lambda is

    theta_lambda = (1 - lambda) theta_risky + lambda theta_cautious

over the WHOLE state dict of ``LocoPolicy`` (``rsoup_lib.merge.lerp``): the actor, the critic,
the log-std, and the observation normaliser's mean and variance. The normaliser is frozen at
fine-tuning, so from a shared init both policies carry the same normaliser and lerp leaves it
unchanged; from two different inits it is averaged like every other tensor (the control).

Policies act deterministically at evaluation (the mean action, clipped to [-1, 1]); each is run
on the same episode seeds (common random numbers: episode i starts from the same initial state
for every policy), so differences pair per episode.

The trainer: Stable-Baselines3's PPO
------------------------------------
Measured on this project's 2-core CPU (shared with other jobs at the time; 8 environments
stepped together, 64x64 tanh MLPs, rollouts of 8 x 256 steps, minibatches of 256, 10 epochs,
1 torch thread), 20,480 environment steps took

    Stable-Baselines3 2.9.2 PPO    5.7 to 6.5 s of CPU time (11.5 to 13.2 s wall)
    a compact own PPO (CleanRL-style, same network, batch and epochs)  4.3 s CPU (8.8 s wall)

so SB3 costs 1.3 to 1.5 times a bare loop: not enough to justify maintaining a PPO of our own,
and SB3 is the field's reference implementation, so this module uses it (``PPO`` with
``VecNormalize`` for observations and rewards). Its policy, a torch module, is wrapped with the
frozen observation normaliser in ``LocoPolicy`` so that a soup is one ``merge.lerp``.

Everything trained goes through the run cache (``rsoup_lib.cache.cached_run``, kind
``"loco"``), keyed by the whole ``TrainConfig``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

os.environ.setdefault("MUJOCO_GL", "egl")  # off-screen rendering (read when mujoco is imported)

import numpy as np

KIND = "loco"
VERSION = "1"  # bump when the training code changes what it computes (part of every cache key)
ENV_ID = "HalfCheetah-v5"
OBS_CLIP = 10.0  # VecNormalize's defaults, replicated by LocoPolicy
OBS_EPS = 1e-8


# ---------------------------------------------------------------------------------------------
# configs


@dataclass(frozen=True)
class PPOConfig:
    """SB3 PPO hyperparameters (the same for pre-training, fine-tuning and MORL)."""

    n_envs: int = 8  # environments stepped together
    n_steps: int = 256  # steps per environment per rollout (rollout = n_envs * n_steps)
    batch_size: int = 256
    n_epochs: int = 10
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    hidden: int = 64  # two tanh layers of this width, for the actor and for the critic
    threads: int = 1  # torch threads per run (2 only doubled the CPU time on this machine)


@dataclass(frozen=True)
class TrainConfig:
    """One PPO run: from scratch (``init`` empty; the observation normaliser learns) or from a
    cached run (``init`` = ``cache:KEY``; the normaliser is frozen at the init's statistics)."""

    ctrl_cost_weight: float
    steps: int
    seed: int
    init: str = ""
    env: str = ENV_ID
    episode_steps: int = 1000  # time limit of a training episode
    ppo: PPOConfig = field(default_factory=PPOConfig)
    version: str = VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LocoConfig:
    """The chapter's experiment: one shared init, the risky and cautious fine-tunes per seed,
    the different-init control and MORL, and how they are evaluated."""

    env: str = ENV_ID
    pretrain_steps: int = 100_000
    finetune_steps: int = 50_000
    pretrain_ctrl: float = 0.1  # HalfCheetah's default reward
    risky_ctrl: float = 0.0
    cautious_ctrl: float = 0.5
    init_seeds: tuple[int, int] = (0, 1)  # the shared init's pre-training seed, the other init's
    seeds: tuple[int, ...] = (0, 1, 2)  # fine-tuning seeds (one front per seed)
    lambdas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    morl_mus: tuple[float, ...] = (0.5,)
    eval_episodes: int = 8
    eval_seed: int = 10_000
    episode_steps: int = 1000
    ppo: PPOConfig = field(default_factory=PPOConfig)
    workers: int = 2  # training processes run side by side (does not change any result)

    def mixed_ctrl(self, mu: float) -> float:
        """w of R_mu = (1 - mu) R_risky + mu R_cautious."""
        return (1 - mu) * self.risky_ctrl + mu * self.cautious_ctrl

    def train_config(self, ctrl: float, steps: int, seed: int, init: str = "") -> TrainConfig:
        return TrainConfig(ctrl_cost_weight=float(ctrl), steps=int(steps), seed=int(seed), init=init, env=self.env,
                           episode_steps=self.episode_steps, ppo=self.ppo)  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LocoConfig":
        """A config from a mapping (a YAML file's contents): unknown keys and values of the wrong
        type are a ``UserError`` that names them."""
        from rsoup_lib.errors import UserError
        from rsoup_lib.rl import check_field_types

        if not isinstance(d, Mapping):
            raise UserError(f"a locomotion config must be a mapping of fields, got {type(d).__name__}")
        d = dict(d)
        raw_ppo = d.pop("ppo", {}) or {}
        for section, keys, kind in (("top level", d, cls), ("ppo section", raw_ppo, PPOConfig)):
            if not isinstance(keys, Mapping):
                raise UserError(f"locomotion config: the {section} must be a mapping")
            names = {f.name for f in dataclasses.fields(kind)} - {"ppo"}
            unknown = set(keys) - names
            if unknown:
                raise UserError(f"locomotion config: unknown key(s) {sorted(unknown)} in the {section}; valid keys: {sorted(names)}")
            check_field_types(kind, dict(keys), f"locomotion config ({section}): ")
        for k in ("init_seeds", "seeds", "lambdas", "morl_mus"):
            if k in d:
                if not isinstance(d[k], (list, tuple)):
                    raise UserError(f"locomotion config: {k} must be a list, got {d[k]!r}")
                d[k] = tuple(d[k])
        return cls(ppo=PPOConfig(**raw_ppo), **d)

    @classmethod
    def from_file(cls, path: str | Path) -> "LocoConfig":
        from rsoup_lib.io import read_config_file

        return cls.from_dict(read_config_file(path, "locomotion config", "configs/locomotion_halfcheetah.yaml"))


# The budgets of the book's profiles. cpu: the chapter builds in about 5 minutes on an idle
# 2-core machine (two training processes side by side); smoke: seconds, for the tests.
BUDGETS: dict[str, LocoConfig] = {
    "smoke": LocoConfig(pretrain_steps=512, finetune_steps=256, seeds=(0, 1), lambdas=(0.0, 0.5, 1.0),
                        eval_episodes=3, episode_steps=40, workers=1,
                        ppo=PPOConfig(n_envs=2, n_steps=64, batch_size=64, n_epochs=2)),  # fmt: skip
    "cpu": LocoConfig(),
    "gpu": LocoConfig(pretrain_steps=1_000_000, finetune_steps=500_000, seeds=(0, 1, 2, 3, 4),
                      lambdas=tuple(i / 10 for i in range(11)), morl_mus=(0.25, 0.5, 0.75), eval_episodes=16,
                      workers=4),  # fmt: skip
}


def budget(profile: str) -> LocoConfig:
    """The experiment's size for a book profile (smoke, cpu, gpu)."""
    return BUDGETS[profile]


# ---------------------------------------------------------------------------------------------
# the policy: SB3's actor-critic behind the frozen observation normaliser


@contextlib.contextmanager
def _quiet_mujoco():
    """Silence file descriptor 2 while MuJoCo compiles a model: MuJoCo 3.17 prints a
    deprecation warning from C ("compiler attribute 'settotalmass' is deprecated", about
    gymnasium's HalfCheetah XML) for every environment made, which would fill the chapter. Its
    default warning handler also appends it to ``MUJOCO_LOG.TXT`` in the working directory (the
    repository, in a book build), so the model is compiled from a scratch folder instead."""
    import sys
    import tempfile

    sys.stderr.flush()
    saved, cwd = os.dup(2), os.getcwd()
    devnull = os.open(os.devnull, os.O_WRONLY)
    scratch = Path(tempfile.gettempdir()) / "rsoup-mujoco-log"
    scratch.mkdir(exist_ok=True)
    try:
        os.dup2(devnull, 2)
        os.chdir(scratch)
        yield
    finally:
        os.chdir(cwd)
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def make_env(env_id: str, **kwargs):
    """``gymnasium.make(env_id, **kwargs)`` without MuJoCo's compiler warnings."""
    import gymnasium as gym

    with _quiet_mujoco():
        return gym.make(env_id, **kwargs)


def _spaces(env_id: str):
    env = make_env(env_id)
    spaces = env.observation_space, env.action_space
    env.close()
    return spaces


def _policy_kwargs(ppo: PPOConfig) -> dict[str, Any]:
    from torch import nn

    return dict(net_arch=dict(pi=[ppo.hidden] * 2, vf=[ppo.hidden] * 2), activation_fn=nn.Tanh)


def _torch_module():
    from torch import nn

    return nn.Module


class LocoPolicy(_torch_module()):
    """A deterministic locomotion policy as one torch module: buffers ``obs_mean`` and
    ``obs_var`` (the frozen normaliser) and ``policy``, SB3's ``ActorCriticPolicy``.

    a = clip(mu_theta(clip((o - obs_mean) / sqrt(obs_var + 1e-8), -10, 10)), -1, 1)."""

    def __init__(self, env_id: str = ENV_ID, ppo: PPOConfig = PPOConfig()):
        super().__init__()
        import torch
        from stable_baselines3.common.policies import ActorCriticPolicy

        obs_space, act_space = _spaces(env_id)
        self.env_id = env_id
        self.low = torch.as_tensor(act_space.low, dtype=torch.float32)
        self.high = torch.as_tensor(act_space.high, dtype=torch.float32)
        self.register_buffer("obs_mean", torch.zeros(obs_space.shape, dtype=torch.float64))
        self.register_buffer("obs_var", torch.ones(obs_space.shape, dtype=torch.float64))
        self.policy = ActorCriticPolicy(obs_space, act_space, lambda _: 0.0, **_policy_kwargs(ppo))

    def normalise(self, obs):
        import torch

        x = torch.as_tensor(obs, dtype=torch.float64)
        x = ((x - self.obs_mean) / torch.sqrt(self.obs_var + OBS_EPS)).clamp(-OBS_CLIP, OBS_CLIP)
        return x.float()

    def forward(self, obs):
        """Deterministic actions for a batch of raw observations."""
        import torch

        with torch.no_grad():
            a = self.policy._predict(self.normalise(obs), deterministic=True)
        return torch.maximum(torch.minimum(a, self.high), self.low)

    def act(self, obs) -> np.ndarray:
        return self(obs).numpy()


def load_policy(run_dir: str | Path) -> LocoPolicy:
    """The ``LocoPolicy`` of a trained run folder (``policy.pt`` and ``config.json``)."""
    import torch

    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    pol = LocoPolicy(cfg["env"], PPOConfig(**cfg["ppo"]))
    pol.load_state_dict(torch.load(run_dir / "policy.pt", weights_only=True))
    return pol.eval()


def soup(policies: Sequence[LocoPolicy], weights: Sequence[float]) -> LocoPolicy:
    """The rewarded soup: a policy with sum_i w_i theta_i as its whole state dict
    (``merge.merge("lerp", ...)``, w on the simplex)."""
    from rsoup_lib import merge

    sd = merge.merge("lerp", [p.state_dict() for p in policies], weights=[float(w) for w in weights])
    out = copy.deepcopy(policies[0])
    out.load_state_dict(sd)
    return out.eval()


# ---------------------------------------------------------------------------------------------
# training


def _vec_env(cfg: TrainConfig):
    from stable_baselines3.common.env_util import make_vec_env

    with _quiet_mujoco():
        return make_vec_env(cfg.env, n_envs=cfg.ppo.n_envs, seed=cfg.seed,
                            env_kwargs=dict(ctrl_cost_weight=cfg.ctrl_cost_weight,
                                            max_episode_steps=cfg.episode_steps))  # fmt: skip


def train(cfg: TrainConfig, out: Path) -> None:
    """Run PPO for ``cfg`` and write ``out``: ``policy.pt`` (the ``LocoPolicy`` state dict),
    ``vecnormalize.pkl``, ``config.json`` and ``train.json`` (seconds, per-episode training
    returns). From an init, the init's actor-critic weights and normaliser are loaded and the
    normaliser frozen (observations AND reward scale), the optimiser starts afresh."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from rsoup_lib.cache import resolve
    from rsoup_lib.profiles import using_threads

    out = Path(out)
    t0, c0 = time.perf_counter(), time.process_time()
    with using_threads(cfg.ppo.threads):
        venv = _vec_env(cfg)
        if cfg.init:
            init_dir = Path(resolve(cfg.init))
            venv = VecNormalize.load(str(init_dir / "vecnormalize.pkl"), venv)
            venv.training = False  # frozen: both fine-tunes see observations in the init's space
        else:
            venv = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=cfg.ppo.gamma)
        p = cfg.ppo
        model = PPO("MlpPolicy", venv, n_steps=p.n_steps, batch_size=p.batch_size, n_epochs=p.n_epochs,
                    learning_rate=p.lr, gamma=p.gamma, gae_lambda=p.gae_lambda, clip_range=p.clip_range,
                    ent_coef=p.ent_coef, policy_kwargs=_policy_kwargs(p), seed=cfg.seed, device="cpu", verbose=0)  # fmt: skip
        if cfg.init:
            model.policy.load_state_dict(load_policy(init_dir).policy.state_dict())
        returns: list[float] = []

        from stable_baselines3.common.callbacks import BaseCallback

        class Episodes(BaseCallback):
            def _on_step(self) -> bool:
                for info in self.locals.get("infos", []):
                    if "episode" in info:
                        returns.append(float(info["episode"]["r"]))
                return True

        model.learn(cfg.steps, callback=Episodes())
        pol = LocoPolicy(cfg.env, cfg.ppo)
        pol.policy.load_state_dict(model.policy.state_dict())
        pol.obs_mean.copy_(torch.as_tensor(venv.obs_rms.mean))
        pol.obs_var.copy_(torch.as_tensor(venv.obs_rms.var))
        torch.save(pol.state_dict(), out / "policy.pt")
        venv.save(str(out / "vecnormalize.pkl"))
        venv.close()
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    (out / "train.json").write_text(json.dumps({"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
                                                "episode_returns": returns}))  # fmt: skip


def cached_train(cfg: TrainConfig) -> Path:
    """The run folder of ``cfg`` from the run cache, training it first if needed."""
    from rsoup_lib.cache import cached_run

    return cached_run(KIND, cfg.to_dict(), lambda tmp: train(cfg, tmp))


def _train_in_worker(cfg_dict: dict, cache_dir: str) -> str:
    os.environ["RSOUP_CACHE_DIR"] = cache_dir
    ppo = PPOConfig(**cfg_dict.pop("ppo"))
    return str(cached_train(TrainConfig(ppo=ppo, **cfg_dict)))


def train_many(cfgs: Sequence[TrainConfig], workers: int = 1) -> list[Path]:
    """``cached_train`` of every config, ``workers`` processes side by side (spawned, so each
    has its own torch; the cache's locks keep two processes from training the same run)."""
    from rsoup_lib.cache import cache_dir, lookup

    todo = [c for c in cfgs if lookup(KIND, c.to_dict()) is None]
    if workers > 1 and len(todo) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(_train_in_worker, [c.to_dict() for c in todo], [str(cache_dir())] * len(todo)))
    return [cached_train(c) for c in cfgs]


@dataclass
class Runs:
    """The run folders of the experiment: ``inits[j]`` pre-trained with ``init_seeds[j]``;
    per fine-tuning seed s, ``risky[s]``, ``cautious[s]`` (from init 0), ``cautious_other[s]``
    (from init 1) and ``morl[mu][s]`` (from init 0)."""

    inits: list[Path]
    risky: dict[int, Path]
    cautious: dict[int, Path]
    cautious_other: dict[int, Path]
    morl: dict[float, dict[int, Path]]

    def seconds(self) -> dict[str, float]:
        """Training time of every run, as recorded when it was trained (wall seconds)."""
        out = {f"init {j}": _secs(p) for j, p in enumerate(self.inits)}
        for name in ("risky", "cautious", "cautious_other"):
            out.update({f"{name} seed {s}": _secs(p) for s, p in getattr(self, name).items()})
        for mu, runs in self.morl.items():
            out.update({f"morl {mu} seed {s}": _secs(p) for s, p in runs.items()})
        return out


def _secs(p: Path) -> float:
    return float(json.loads((Path(p) / "train.json").read_text())["seconds"])


def train_all(cfg: LocoConfig) -> Runs:
    """Every run of the experiment (cached): the two pre-trainings, then the fine-tunes."""
    from rsoup_lib.cache import ref

    pre = [cfg.train_config(cfg.pretrain_ctrl, cfg.pretrain_steps, s) for s in cfg.init_seeds]
    inits = train_many(pre, cfg.workers)
    shared, other = ref(inits[0]), ref(inits[1])
    ft = {}
    for s in cfg.seeds:
        ft[("risky", s)] = cfg.train_config(cfg.risky_ctrl, cfg.finetune_steps, s, shared)
        ft[("cautious", s)] = cfg.train_config(cfg.cautious_ctrl, cfg.finetune_steps, s, shared)
        ft[("cautious_other", s)] = cfg.train_config(cfg.cautious_ctrl, cfg.finetune_steps, s, other)
        for mu in cfg.morl_mus:
            ft[(mu, s)] = cfg.train_config(cfg.mixed_ctrl(mu), cfg.finetune_steps, s, shared)
    paths = dict(zip(ft, train_many(list(ft.values()), cfg.workers)))
    return Runs(inits=inits, risky={s: paths[("risky", s)] for s in cfg.seeds},
                cautious={s: paths[("cautious", s)] for s in cfg.seeds},
                cautious_other={s: paths[("cautious_other", s)] for s in cfg.seeds},
                morl={mu: {s: paths[(mu, s)] for s in cfg.seeds} for mu in cfg.morl_mus})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# evaluation


@dataclass
class Episodes:
    """Per-episode reward terms of one policy on episodes ``seed, seed + 1, ...``:
    ``forward[i]`` = F, ``ctrl[i]`` = C of episode i; ``trajectory`` (episode 0, if recorded):
    x position and the six joint angles at every step."""

    forward: np.ndarray
    ctrl: np.ndarray
    seed: int
    trajectory: dict[str, list] | None = None

    def point(self) -> np.ndarray:
        """[n_episodes, 2]: (F, -C) per episode, both maximised (a point of ``rsoup_lib.stats``)."""
        return np.stack([self.forward, -self.ctrl], axis=1)

    def mixed(self, w: float) -> np.ndarray:
        """F - w C per episode (the reward with control-cost weight w)."""
        return self.forward - w * self.ctrl


JOINTS = ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")  # qpos[3:9] of HalfCheetah


def evaluate(policy: LocoPolicy, n_episodes: int, seed: int, episode_steps: int = 1000,
             record: bool = False) -> Episodes:  # fmt: skip
    """Run ``policy`` deterministically on ``n_episodes`` environments stepped together,
    episode i reset with seed ``seed + i`` (common random numbers across policies), and return F
    and C per episode. An episode ends at ``episode_steps`` or when the environment terminates.
    Runs with one torch thread: for a 64-unit network more threads only add synchronisation, and on
    a busy machine two threads made this loop ten times slower."""
    from rsoup_lib.profiles import using_threads

    with using_threads(1):
        return _evaluate(policy, n_episodes, seed, episode_steps, record)


def _evaluate(policy: LocoPolicy, n_episodes: int, seed: int, episode_steps: int, record: bool) -> Episodes:
    envs = [make_env(policy.env_id, max_episode_steps=episode_steps) for _ in range(n_episodes)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    fwd, ctrl = np.zeros(n_episodes), np.zeros(n_episodes)
    alive = np.ones(n_episodes, bool)
    traj = {"x": [], **{j: [] for j in JOINTS}} if record else None
    while alive.any():
        actions = policy.act(obs)
        for i, e in enumerate(envs):
            if not alive[i]:
                continue
            o, _, term, trunc, info = e.step(actions[i])
            fwd[i] += float(info["x_velocity"])
            ctrl[i] += float(np.sum(np.square(actions[i])))
            obs[i] = o
            if record and i == 0:
                qpos = e.unwrapped.data.qpos
                traj["x"].append(float(qpos[0]))
                for k, j in enumerate(JOINTS):
                    traj[j].append(float(qpos[3 + k]))
            if term or trunc:
                alive[i] = False
    for e in envs:
        e.close()
    return Episodes(fwd, ctrl, seed, traj)


def render_frames(policy: LocoPolicy, steps: Sequence[int], seed: int, width: int = 320, height: int = 200) -> list:
    """RGB frames (arrays [height, width, 3]) of one deterministic episode at the given steps,
    rendered off-screen (``MUJOCO_GL``, egl by default). Raises if no GL context is available."""
    from rsoup_lib.profiles import using_threads

    with using_threads(1):
        return _render_frames(policy, steps, seed, width, height)


def _render_frames(policy: LocoPolicy, steps: Sequence[int], seed: int, width: int, height: int) -> list:
    env = make_env(policy.env_id, render_mode="rgb_array", width=width, height=height,
                   max_episode_steps=max(steps) + 1)  # fmt: skip
    obs, _ = env.reset(seed=seed)
    frames = []
    for t in range(max(steps) + 1):
        if t in steps:
            frames.append(env.render())
        obs, *_ = env.step(policy.act(obs[None])[0])
    env.close()
    return frames


def summary(ep: Episodes) -> dict[str, float]:
    """Mean and standard error over episodes of F and C."""
    n = len(ep.forward)
    se = lambda x: float(np.std(x, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")  # noqa: E731
    return {"F": float(ep.forward.mean()), "F_se": se(ep.forward), "C": float(ep.ctrl.mean()), "C_se": se(ep.ctrl)}


def pooled(eps: Sequence[Episodes]) -> Episodes:
    """Episodes of several seeds' policies stacked (seed-major), for statistics over episodes
    and seeds: row k of every pooled point is the same (seed, episode) pair."""
    return Episodes(np.concatenate([e.forward for e in eps]), np.concatenate([e.ctrl for e in eps]), eps[0].seed)


def evaluate_experiment(cfg: LocoConfig, runs: Runs):
    """Yield ``(name, Episodes)`` for every policy of the experiment, each seed's front first:
    the shared-init soups at every lambda, the different-init soups at 0.5 and 1, MORL at every
    mu; then the two pre-trained inits (the command line's evaluation; the chapter's is the
    same, cell by cell)."""
    ev = dict(n_episodes=cfg.eval_episodes, seed=cfg.eval_seed, episode_steps=cfg.episode_steps)
    for s in cfg.seeds:
        risky, cautious = load_policy(runs.risky[s]), load_policy(runs.cautious[s])
        other = load_policy(runs.cautious_other[s])
        for lam in cfg.lambdas:
            yield f"seed {s} shared-init soup lambda={lam:g}", evaluate(soup([risky, cautious], [1 - lam, lam]), **ev)
        for lam in (0.5, 1.0):
            yield f"seed {s} different-init soup lambda={lam:g}", evaluate(soup([risky, other], [1 - lam, lam]), **ev)
        for mu in cfg.morl_mus:
            yield f"seed {s} MORL mu={mu:g}", evaluate(load_policy(runs.morl[mu][s]), **ev)
    for j, run in enumerate(runs.inits):
        yield f"init {j}", evaluate(load_policy(run), **ev)


def front_xy(points: Sequence[Episodes]) -> tuple[list, list, list, list]:
    """The four series a front plot needs, from per-episode results: mean F, mean -C, and their
    standard errors over episodes."""
    def se(x):
        return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0

    return ([float(p.forward.mean()) for p in points], [float(-p.ctrl.mean()) for p in points],
            [se(p.forward) for p in points], [se(p.ctrl) for p in points])  # fmt: skip


def table_row(name: str, ep: Episodes, w: float, per_seed: Sequence[Episodes] | None = None) -> dict[str, str]:
    """One row of the chapter's table: F, C and F - w C as mean ± standard error over episodes,
    and, given each seed's own episodes, the standard deviation of the per-seed means of F - w C."""
    row = {"policy": name}
    n = len(ep.forward)
    for key, x in (("F", ep.forward), ("C", ep.ctrl), (f"F − {w:g} C", ep.mixed(w))):
        row[key] = f"{x.mean():.1f} ± {x.std(ddof=1) / np.sqrt(n):.1f}" if n > 1 else f"{x.mean():.1f}"
    means = [e.mixed(w).mean() for e in per_seed or []]
    row["seed spread"] = f"{np.std(means, ddof=1):.1f}" if len(means) > 1 else "—"
    return row
