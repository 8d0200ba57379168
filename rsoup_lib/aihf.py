"""AIHF: joint reward and policy learning from demonstrations and preferences (Li et al., 2024),
the method of book chapter 4, with the staged baselines it is compared to.

**Data.** Demonstrations D = {(x, y_E)}, preferences P = {(x, y_w, y_l)} (``rsoup_lib.preferences``).

**Objective.** One reward r_theta and its KL-regularised optimal policy
pi*_theta(y|x) ~ pi_ref(y|x) exp(r_theta(x, y) / beta) are learned together:

    max_theta  lambda_D E_D[ log pi*_theta(y_E | x) ] + lambda_P E_P[ log sigmoid(r_theta(x, y_w) - r_theta(x, y_l)) ].

**Gradient.** Since log pi*_theta(y|x) = log pi_ref(y|x) + r_theta(x, y)/beta - log Z_theta(x),
and grad log Z_theta(x) = E_{y ~ pi*_theta} grad r_theta(x, y) / beta,

    grad J = (lambda_D / beta) E_D[ grad r(x, y_E) - E_{y ~ pi*_theta(.|x)} grad r(x, y) ]
             + lambda_P E_P[ sigmoid(r(x, y_l) - r(x, y_w)) (grad r(x, y_w) - grad r(x, y_l)) ]:

the demonstration term contrasts demonstrations with the policy's own samples. Two ways to
follow it (our reading; the paper's code is not public):

1. **Explicit reward** (``train_explicit``): for iterations t = 1..T,
   (a) sample y_pi ~ pi_t for the demonstration prompts;
   (b) fit the reward model on the weighted Bradley-Terry loss
       lambda_D L(y_E preferred to y_pi) + lambda_P L(y_w preferred to y_l)
       (``reward_model.fit_joint``; the demonstration term's gradient is the one above with the
       log-sum-exp replaced by its pairwise logistic surrogate);
   (c) take steps/T RLOO steps of ``rsoup_lib.rl`` on that reward (the policy approaches
       pi*_theta), continuing the same RL run (its checkpoint and RNG state carry over).
   The reward model is refitted from the policy's trunk at every iteration (a block-coordinate
   step), so with lambda_D = 0 every iteration fits the same model and the procedure is
   exactly RLHF: a reward model on P, then RL on it. With lambda_P = 0 it learns from
   demonstrations alone (maximum-likelihood inverse RL).
2. **DPO form** (``train_dpo_form``): the reward is implicit, r_theta = beta log(pi_theta / pi_ref),
   and the loss of one step is

       lambda_P * DPO(y_w, y_l) + lambda_D * DPO(y_E, y_pi),
       DPO(a, b) = - E log sigmoid( beta [log pi_theta(a)/pi_ref(a) - log pi_theta(b)/pi_ref(b)] ),

   where y_pi is a sample of the previous iterate for a demonstration prompt (as in SPIN); it is
   resampled at the start of each of the T iterations. lambda_D = 0 is DPO: the loss of a batch
   equals TRL's ``DPOTrainer`` sigmoid loss for the same batch and beta (``tests/test_aihf.py``).

Why our own loops: TRL's trainers take one dataset and one loss; the joint objectives weight
two pair sets, one of which is resampled from the policy between iterations. The baselines are
TRL's trainers: SFT on D (``SFTTrainer``), DPO on P (``DPOTrainer``), SFT then DPO, and RLHF
(``RewardTrainer``'s reward model, then RLOO through ``rsoup_lib.rl``, the book's one RL trainer).

Equal data and compute: every method makes ``steps`` policy updates (an update of the DPO-type
methods is a batch of ``batch_size`` pairs, one of the RL methods an RLOO step of
``batch_prompts x k`` samples); SFT then DPO splits them in half. An update of the joint losses
shares its ``batch_size`` pairs (and a reward-model update its ``rm_batch_size``) between P and
the demonstration pairs, so that it costs what an update of the baseline costs. Every run is cached
(``rsoup_lib.cache``, kind ``aihf``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from rsoup_lib import reward_model
from rsoup_lib.errors import UserError
from rsoup_lib.preferences import PreferenceConfig, PreferenceData

METHODS = ("sft", "dpo", "sft-dpo", "rlhf", "aihf-dpo", "aihf-explicit")


@dataclass(frozen=True)
class AIHFConfig:
    """One training run of chapter 4: the method, its data budget and its compute."""

    method: str = "aihf-dpo"  # one of METHODS
    policy: str = "tiny"  # the SFT policy every method starts from (and the DPO reference)
    n_demos: int = 64  # |D|
    n_pairs: int = 32  # |P|
    label_temperature: float = 0.1  # T of the Bradley-Terry labels (label quality)
    lam_d: float = 1.0  # lambda_D
    lam_p: float = 1.0  # lambda_P
    iterations: int = 3  # T: resamplings of y_pi (DPO form) / reward fits (explicit)
    steps: int = 24  # policy updates
    batch_size: int = 8  # pairs (or demonstrations) per update of the DPO-type methods (split between P and D)
    lr: float = 1e-4
    beta: float = 0.1  # KL coefficient (DPO's beta; RL's KL penalty)
    batch_prompts: int = 8  # RL methods: prompts per RLOO step
    k: int = 4  # RL methods: completions per prompt
    max_new_tokens: int = 32
    rm_steps: int = 32  # reward-model updates per fit
    rm_batch_size: int = 8  # pairs per reward-model update (split between P and D)
    rm_lr: float = 1e-4
    pool_demos: int = 256  # the cached data pool (rsoup_lib.preferences)
    pool_pairs: int = 256
    heldout_pairs: int = 128
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"

    def validate(self) -> None:
        from rsoup_lib.rl import check_field_types

        check_field_types(AIHFConfig, asdict(self), "AIHF config: ")
        if self.method not in METHODS:
            raise UserError(f"AIHF config: method {self.method!r} is not one of {', '.join(METHODS)}")
        for name in ("n_demos", "n_pairs", "iterations", "steps", "batch_size", "batch_prompts", "max_new_tokens",
                     "rm_steps", "rm_batch_size"):  # fmt: skip
            if getattr(self, name) < 1:
                raise UserError(f"AIHF config: {name}={getattr(self, name)} must be >= 1")
        for name in ("lam_d", "lam_p", "label_temperature", "lr", "beta", "rm_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UserError(f"AIHF config: {name}={value} must be a number >= 0")
        if self.lam_d == 0 and self.lam_p == 0:
            raise UserError("AIHF config: lam_d and lam_p are both 0: nothing to learn from")
        if self.k < 2:
            raise UserError(f"AIHF config: k={self.k}: RLOO needs at least 2 completions per prompt")
        if self.n_demos > self.pool_demos or self.n_pairs > self.pool_pairs:
            raise UserError(f"AIHF config: n_demos={self.n_demos} and n_pairs={self.n_pairs} must not exceed "
                            f"pool_demos={self.pool_demos} and pool_pairs={self.pool_pairs}")  # fmt: skip
        if self.method == "aihf-explicit" and self.steps % self.iterations:
            raise UserError(f"AIHF config: steps={self.steps} must be a multiple of iterations={self.iterations}")
        self.data_config().validate()

    def data_config(self) -> PreferenceConfig:
        return PreferenceConfig(policy=self.policy, n_demos=self.pool_demos, n_pairs=self.pool_pairs,
                                heldout_pairs=self.heldout_pairs, max_new_tokens=self.max_new_tokens,
                                seed=self.seed, device=self.device, dtype=self.dtype)  # fmt: skip

    def rm_config(self) -> reward_model.RMConfig:
        return reward_model.RMConfig(steps=self.rm_steps, batch_size=self.rm_batch_size, lr=self.rm_lr, seed=self.seed)

    def rl_config(self):
        """The RLOO recipe of the RL methods (``rsoup_lib.rl``); the reward is the learned model."""
        from rsoup_lib.rl import RLConfig

        every = self.steps // self.iterations if self.method == "aihf-explicit" else 0
        return RLConfig(policy=self.policy, reward="tone_fidelity", steps=self.steps, batch_prompts=self.batch_prompts,
                        k=self.k, max_new_tokens=self.max_new_tokens, lr=self.lr, beta=self.beta,
                        checkpoint_every=every, snapshot_every=every, seed=self.seed, device=self.device,
                        dtype=self.dtype)  # fmt: skip

    def key(self) -> dict:
        """What the cache keys a run on: only the fields the method reads."""
        from rsoup_lib.rl import init_identity

        key = asdict(self)
        unused = {
            "sft": ("n_pairs", "label_temperature", "lam_d", "lam_p", "iterations", "beta", "batch_prompts", "k",
                    "rm_steps", "rm_batch_size", "rm_lr"),
            "dpo": ("n_demos", "lam_d", "lam_p", "iterations", "batch_prompts", "k", "rm_steps", "rm_batch_size", "rm_lr"),
            "sft-dpo": ("lam_d", "lam_p", "iterations", "batch_prompts", "k", "rm_steps", "rm_batch_size", "rm_lr"),
            "rlhf": ("n_demos", "lam_d", "lam_p", "iterations", "batch_size"),
            "aihf-dpo": ("batch_prompts", "k", "rm_steps", "rm_batch_size", "rm_lr"),
            "aihf-explicit": ("batch_size",),
        }[self.method]  # fmt: skip
        for name in unused:
            key.pop(name)
        key["init_sha256"] = init_identity(self.policy)
        return key


# ----------------------------------------------------------------------------- DPO pieces
def dpo_example(tokenizer, prompt: str, chosen: str, rejected: str) -> dict:
    """A pair tokenized as TRL's DPOTrainer does: the rendered prompt, prompt + completion + EOS,
    the completion starting where the two token lists diverge."""
    from rsoup_lib.models import render_prompt

    text = render_prompt(tokenizer, prompt)

    def ids(s):
        return tokenizer(s, add_special_tokens=False)["input_ids"]

    p, c, r = ids(text), ids(text + chosen + tokenizer.eos_token), ids(text + rejected + tokenizer.eos_token)
    n = min(_common_prefix(p, c), _common_prefix(p, r))
    return {"prompt_ids": p[:n], "chosen_ids": c[n:], "rejected_ids": r[n:]}


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def collate(tokenizer, pairs: Sequence[dict]) -> dict:
    """A batch of pairs {"prompt", "chosen", "rejected"} in TRL's format (its own collator):
    input_ids [2B, L] (chosen rows, then rejected rows), attention_mask, completion_mask."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    examples = [dpo_example(tokenizer, p["prompt"], p["chosen"], p["rejected"]) for p in pairs]
    return DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)(examples)


def sequence_logps(model, batch: dict):
    """sum_t log pi(y_t | x, y_<t) over the completion tokens of every row of a collated batch."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return (logp * batch["completion_mask"][:, 1:]).sum(-1)


def dpo_loss(policy_logps, ref_logps, beta: float):
    """DPO(a, b) = - mean log sigmoid(beta [(log pi(a) - log ref(a)) - (log pi(b) - log ref(b))]),
    for [2B] log-probs (rows a, then rows b), the sigmoid loss of TRL's DPOTrainer."""
    import torch.nn.functional as F

    pc, pr = policy_logps.chunk(2)
    rc, rr = ref_logps.chunk(2)
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


def aihf_dpo_loss(model, ref, pref_batch: dict | None, demo_batch: dict | None, lam_p: float, lam_d: float, beta: float):
    """lambda_P * DPO(y_w, y_l) + lambda_D * DPO(y_E, y_pi) (module docstring, DPO form); a term
    with weight 0 or no batch is not computed."""
    import torch

    loss = 0.0
    for lam, batch in ((lam_p, pref_batch), (lam_d, demo_batch)):
        if lam and batch is not None:
            with torch.no_grad():
                ref_logps = sequence_logps(ref, batch)
            loss = loss + lam * dpo_loss(sequence_logps(model, batch), ref_logps, beta)
    return loss


# ----------------------------------------------------------------------------- sampling y_pi
def sample_policy(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, seed: int) -> list[str]:
    """One completion per prompt under ``seed`` (the global RNG is left as it was)."""
    import torch

    from rsoup_lib.sampling import sample_completions

    out: list[str] = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for s in range(0, len(prompts), 64):
            out += sample_completions(model, tokenizer, list(prompts[s : s + 64]), max_new_tokens).texts
    return out


def demo_pairs(demos: Sequence[dict], samples: Sequence[str]) -> list[dict]:
    """(x, y_E preferred to y_pi) for every demonstration and the policy's sample for its prompt."""
    return [{"prompt": d["prompt"], "chosen": d["completion"], "rejected": y} for d, y in zip(demos, samples)]


def _iteration_seed(config: AIHFConfig, t: int) -> int:
    return config.seed * 1000 + 17 + t


def split_batch(batch_size: int, *active: bool) -> int:
    """Pairs per set in one update: the batch is shared by the sets in use (equal compute per
    update whatever the weights), at least one pair each."""
    return max(1, batch_size // max(1, sum(active)))


def _batch_rows(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """The rows of step ``step``: a stream of seeded permutations of range(n)."""
    from rsoup_lib.rl import batch_indices

    return batch_indices(step, min(batch_size, n), n, seed)


# ----------------------------------------------------------------------------- the DPO form
def train_dpo_form(config: AIHFConfig, data: PreferenceData, out_dir: Path, progress: bool = False) -> Path:
    """AIHF, DPO form (module docstring): T iterations of steps/T updates; y_pi resampled from
    the previous iterate at the start of each. Writes ``out_dir/policy``."""
    import torch
    from tqdm.auto import tqdm

    from rsoup_lib.models import load_policy

    model, tokenizer = load_policy(config.policy, device=config.device, dtype=config.dtype, seed=config.seed)
    ref, _ = load_policy(config.policy, device=config.device, dtype=config.dtype, seed=config.seed)
    model.eval(), ref.eval()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    prefs = data.pairs(config.n_pairs, config.label_temperature) if config.lam_p else []
    demos = data.demonstrations(config.n_demos) if config.lam_d else []
    per_iteration = [len(range(t, config.steps, config.iterations)) for t in range(config.iterations)]
    size = split_batch(config.batch_size, bool(prefs), bool(demos))
    step = 0
    bar = tqdm(total=config.steps, disable=not progress, desc="aihf-dpo")
    for t in range(config.iterations):
        pairs_d = []
        if demos:  # y_pi from the previous iterate
            samples = sample_policy(model, tokenizer, [d["prompt"] for d in demos], config.max_new_tokens,
                                    _iteration_seed(config, t))  # fmt: skip
            pairs_d = demo_pairs(demos, samples)
        for _ in range(per_iteration[t]):
            pb = collate(tokenizer, [prefs[i] for i in _batch_rows(len(prefs), size, step, config.seed)]) if prefs else None
            db = collate(tokenizer, [pairs_d[i] for i in _batch_rows(len(pairs_d), size, step, config.seed + 1)]) if pairs_d else None  # fmt: skip
            loss = aihf_dpo_loss(model, ref, pb, db, config.lam_p, config.lam_d, config.beta)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
    bar.close()
    _save_policy(model, tokenizer, out_dir / "policy")
    return out_dir


def _save_policy(model, tokenizer, folder: Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


# ----------------------------------------------------------------------------- the explicit form
def train_explicit(config: AIHFConfig, data: PreferenceData, out_dir: Path, progress: bool = False,
                   stop_after_iteration: int | None = None) -> Path:  # fmt: skip
    """AIHF, explicit reward (module docstring): T rounds of (a) sample, (b) reward fit, (c) RLOO.

    Resumable: round t's reward model is ``out_dir/rm-t`` (written atomically) and the RL run
    ``out_dir/rl`` checkpoints at every round's end, so a killed run redoes only the unfinished
    round. ``stop_after_iteration``: return after that many rounds, as if killed (tests)."""
    from rsoup_lib import rl
    from rsoup_lib.io import atomic_dir

    config.validate()
    rl_config = config.rl_config()
    per_round = config.steps // config.iterations
    prefs = data.pairs(config.n_pairs, config.label_temperature) if config.lam_p else []
    demos = data.demonstrations(config.n_demos) if config.lam_d else []
    for t in range(config.iterations):
        rm_dir = out_dir / f"rm-{t}"
        if not rm_dir.is_dir():
            pairs_d = []
            if demos:  # (a) y_pi from the current policy: the SFT policy, then the RL run's snapshot
                current = config.policy if t == 0 else str(out_dir / "rl" / "snapshots" / f"step-{t * per_round}")
                pairs_d = demo_pairs(demos, _sample_from(current, config, [d["prompt"] for d in demos], t))
            with atomic_dir(rm_dir) as tmp:  # (b) the reward model of round t
                reward_model.fit_joint(config.policy, prefs, pairs_d, config.lam_p, config.lam_d,
                                       config.rm_config(), tmp, device=config.device)  # fmt: skip
        last = t == config.iterations - 1
        if _rl_done(out_dir / "rl") < (t + 1) * per_round:  # (c), unless a killed run got past it
            rm, tokenizer = reward_model.load(rm_dir, device=config.device)
            rl.train(rl_config, out_dir / "rl", reward_fn=reward_model.Scorer(rm, tokenizer), progress=progress,
                     stop_at_step=None if last else (t + 1) * per_round)  # fmt: skip
        if stop_after_iteration is not None and t + 1 >= stop_after_iteration and not last:
            return out_dir
    _link_outputs(out_dir, out_dir / "rl" / "policy", out_dir / f"rm-{config.iterations - 1}")
    return out_dir


def _rl_done(run: Path) -> int:
    """Steps an RL run folder has finished for good: all when complete, else its last checkpoint's."""
    from rsoup_lib import runs

    if (run / "summary.json").is_file():
        return json.loads((run / "config.json").read_text())["steps"]
    ckpt = runs.latest_checkpoint(run) if run.is_dir() else None
    return int(ckpt.name.split("-")[-1]) if ckpt is not None else 0


def _sample_from(policy: str, config: AIHFConfig, prompts: list[str], t: int) -> list[str]:
    from rsoup_lib.models import load_policy

    model, tokenizer = load_policy(policy, device=config.device, dtype=config.dtype, seed=config.seed)
    return sample_policy(model.eval(), tokenizer, prompts, config.max_new_tokens, _iteration_seed(config, t))


def _link_outputs(out_dir: Path, policy: Path, rm: Path | None) -> None:
    """``out_dir/policy`` and ``out_dir/rm``: the run's results under fixed names."""
    for name, src in (("policy", policy), ("rm", rm)):
        if src is not None and not (out_dir / name).exists():
            shutil.copytree(src, out_dir / name)


# ----------------------------------------------------------------------------- the baselines (TRL)
def _quiet(trainer):
    """No per-step metric dicts or dataset progress bars in a chapter's output."""
    import datasets
    from transformers import PrinterCallback, ProgressCallback

    datasets.disable_progress_bars()
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    return trainer


@contextlib.contextmanager
def _no_future_warnings():
    """TRL 1.16 calls transformers' gradient-checkpointing API under its deprecated names; those
    FutureWarnings say nothing about the run, so a chapter's output does not show them."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _trl_args(cls, config: AIHFConfig, tmp: str, steps: int, **extra):
    """A TRL config with the optimiser every method shares (AdamW, constant lr, no decay)."""
    import datasets

    datasets.disable_progress_bars()  # TRL's dataset preparation would print its own bars
    return cls(output_dir=tmp, max_steps=steps, per_device_train_batch_size=config.batch_size,
               learning_rate=config.lr, lr_scheduler_type="constant", weight_decay=0.0, warmup_steps=0,
               seed=config.seed, data_seed=config.seed, report_to="none", save_strategy="no",
               logging_strategy="no", disable_tqdm=True, use_cpu=config.device == "cpu", optim="adamw_torch",
               bf16=False, max_length=None, **extra)  # fmt: skip


def train_sft(config: AIHFConfig, data: PreferenceData, out_dir: Path, policy: str | None = None,
              steps: int | None = None) -> Path:  # fmt: skip
    """SFT on D with TRL's ``SFTTrainer`` (loss on the completion tokens only)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from rsoup_lib.models import load_policy

    model, tokenizer = load_policy(policy or config.policy, device=config.device, dtype=config.dtype, seed=config.seed)
    rows = []
    for d in data.demonstrations(config.n_demos):
        ex = dpo_example(tokenizer, d["prompt"], d["completion"], d["completion"])
        rows.append({"input_ids": ex["prompt_ids"] + ex["chosen_ids"],
                     "completion_mask": [0] * len(ex["prompt_ids"]) + [1] * len(ex["chosen_ids"])})  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        args = _trl_args(SFTConfig, config, tmp, steps or config.steps, completion_only_loss=True, packing=False)
        _quiet(SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)).train()
    _save_policy(model.eval(), tokenizer, out_dir / "policy")
    return out_dir


def train_dpo_trl(config: AIHFConfig, data: PreferenceData, out_dir: Path, policy: str | None = None,
                  steps: int | None = None) -> Path:  # fmt: skip
    """DPO on P with TRL's ``DPOTrainer`` (sigmoid loss), the reference being the start policy."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from rsoup_lib.models import load_policy, render_prompt

    start = policy or config.policy
    model, tokenizer = load_policy(start, device=config.device, dtype=config.dtype, seed=config.seed)
    ref, _ = load_policy(start, device=config.device, dtype=config.dtype, seed=config.seed)
    rows = [{"prompt": render_prompt(tokenizer, p["prompt"]), "chosen": p["chosen"], "rejected": p["rejected"]}
            for p in data.pairs(config.n_pairs, config.label_temperature)]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        args = _trl_args(DPOConfig, config, tmp, steps or config.steps, beta=config.beta, loss_type=["sigmoid"],
                         precompute_ref_log_probs=False)  # fmt: skip
        _quiet(DPOTrainer(model=model, ref_model=ref.eval(), args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer)).train()  # fmt: skip
    _save_policy(model.eval(), tokenizer, out_dir / "policy")
    return out_dir


def train_sft_dpo(config: AIHFConfig, data: PreferenceData, out_dir: Path) -> Path:
    """SFT on D for half the updates, then DPO on P (reference: the SFT'd policy) for the rest."""
    first = config.steps // 2
    train_sft(config, data, out_dir / "sft", steps=first)
    train_dpo_trl(config, data, out_dir, policy=str(out_dir / "sft" / "policy"), steps=config.steps - first)
    shutil.rmtree(out_dir / "sft")
    return out_dir


def train_rlhf(config: AIHFConfig, data: PreferenceData, out_dir: Path, progress: bool = False) -> Path:
    """RLHF: TRL's ``RewardTrainer`` on P, then ``config.steps`` RLOO steps on that reward model."""
    from rsoup_lib import rl

    reward_model.train_preference_only(config.policy, data.pairs(config.n_pairs, config.label_temperature),
                                       config.rm_config(), out_dir / "rm", device=config.device)  # fmt: skip
    rm, tokenizer = reward_model.load(out_dir / "rm", device=config.device)
    rl.train(config.rl_config(), out_dir / "rl", reward_fn=reward_model.Scorer(rm, tokenizer), progress=progress)
    _link_outputs(out_dir, out_dir / "rl" / "policy", None)
    return out_dir


TRAINERS = {"sft": train_sft, "dpo": train_dpo_trl, "sft-dpo": train_sft_dpo, "rlhf": train_rlhf,
            "aihf-dpo": train_dpo_form, "aihf-explicit": train_explicit}  # fmt: skip


def train(config: AIHFConfig, out_dir: Path, data: PreferenceData | None = None) -> Path:
    """Train ``config.method`` into ``out_dir`` (``out_dir/policy``, and ``out_dir/rm`` for the
    methods with an explicit reward model)."""
    from rsoup_lib.preferences import cached_preference_data

    config.validate()
    data = data or cached_preference_data(config.data_config())
    import torch

    with torch.random.fork_rng(devices=[]), _no_future_warnings():
        torch.manual_seed(config.seed)
        return TRAINERS[config.method](config, data, Path(out_dir))


def cached(config: AIHFConfig, data: PreferenceData | None = None) -> Path:
    """``train`` through the run cache (kind ``aihf``): a config trained before is not trained again."""
    from rsoup_lib.cache import cached_run

    config.validate()
    return cached_run("aihf", config.key(), lambda d: train(config, d, data))


def with_changes(config: AIHFConfig, **changes) -> AIHFConfig:
    return dataclasses.replace(config, **changes)


def reward_model_accuracy(run: Path, data: PreferenceData):
    """The 0/1 correctness on the held-out gold pairs of a run's reward model (``run/rm``)."""
    rm, tokenizer = reward_model.load(Path(run) / "rm")
    return reward_model.correct(rm, tokenizer, data.heldout)


def cached_reward_model(config: AIHFConfig, data: PreferenceData, joint: bool) -> Path:
    """A reward model alone (no RL), cached (kind ``reward-model``): ``joint`` fits AIHF's
    weighted loss with y_pi sampled from the SFT policy (round 1 of the explicit form); else
    TRL's RewardTrainer on P (the RLHF baseline's model)."""
    from rsoup_lib.cache import cached_run

    key = {"joint": joint, **with_changes(config, method="aihf-explicit" if joint else "rlhf").key()}
    for name in ("steps", "batch_prompts", "k", "lr", "beta", "iterations"):
        key.pop(name, None)

    def fit(out: Path):
        pairs = data.pairs(config.n_pairs, config.label_temperature)
        if not joint:
            with _no_future_warnings():
                return reward_model.train_preference_only(config.policy, pairs, config.rm_config(), out / "rm", config.device)
        demos = data.demonstrations(config.n_demos) if config.lam_d else []
        pairs_d = demo_pairs(demos, _sample_from(config.policy, config, [d["prompt"] for d in demos], 0)) if demos else []
        reward_model.fit_joint(config.policy, pairs if config.lam_p else [], pairs_d, config.lam_p, config.lam_d,
                               config.rm_config(), out / "rm", device=config.device)  # fmt: skip

    return cached_run("reward-model", key, fit)


def read_config(path: str | Path) -> tuple[AIHFConfig, list[str]]:
    """A YAML/TOML file of AIHFConfig keys plus ``methods`` (a list; default: [method])."""
    from rsoup_lib.io import read_config_file
    from rsoup_lib.rl import check_field_types

    raw = read_config_file(path, "AIHF config", "configs/aihf_tiny.yaml")
    if not isinstance(raw, dict):
        raise UserError(f"AIHF config: the file must be a mapping of keys (method:, n_pairs:, ...), "
                        f"not a {type(raw).__name__}; see configs/aihf_tiny.yaml")  # fmt: skip
    raw = dict(raw)
    methods = raw.pop("methods", None)
    known = {f.name for f in dataclasses.fields(AIHFConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"AIHF config: unknown key(s) {unknown}; valid keys: {sorted(known | {'methods'})}")
    check_field_types(AIHFConfig, raw, "AIHF config: ")
    if methods is None:
        methods = [raw.get("method", AIHFConfig.method)]
    if not isinstance(methods, list) or not methods or any(m not in METHODS for m in methods):
        raise UserError(f"AIHF config: methods={methods!r} must be a list of {', '.join(METHODS)}")
    config = AIHFConfig(**raw)
    for m in methods:
        with_changes(config, method=m).validate()
    return config, methods


def write_results(out: Path, rows: list[dict]) -> Path:
    from rsoup_lib.io import atomic_write_json

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "aihf.json", rows)
    return out / "aihf.json"


# ----------------------------------------------------------------------------- book chapter 4
def book_config(P, **chapter) -> AIHFConfig:
    """The chapter's base config from a profile (``rsoup_lib.profiles``): the policy, device,
    seed, learning rate and RL batch of the profile; the smoke profile shrinks every data size
    and step count so that the chapter runs in seconds on a random model."""
    base = AIHFConfig(policy=P.policy, lr=P.lr, batch_prompts=P.batch_prompts, k=P.k, max_new_tokens=P.max_new_tokens,
                      seed=P.seed, device=P.device, dtype=P.dtype)  # fmt: skip
    if P.name == "smoke":
        base = with_changes(base, n_demos=4, n_pairs=4, pool_demos=16, pool_pairs=16, heldout_pairs=8, steps=2,
                            iterations=2, batch_size=2, rm_steps=2, rm_batch_size=2)  # fmt: skip
    return with_changes(base, **chapter)


def win_rate(a, b):
    """Share of prompts where policy a's u* beats b's (ties count 1/2), as an ``Estimate`` (its
    se from the per-prompt indicators)."""
    import numpy as np

    from rsoup_lib.stats import mean

    a, b = np.asarray(a, float), np.asarray(b, float)
    return mean(np.where(a > b, 1.0, np.where(a < b, 0.0, 0.5)))
