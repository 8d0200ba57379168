"""Learned reward models for book chapter 4 (AIHF): a scalar head on the policy's trunk.

A reward model r_phi(x, y) is the policy's transformer with its language-model head replaced
by a linear head to one number, read at the last token of "instruction + completion + EOS"
(``transformers``' ``*ForSequenceClassification`` with ``num_labels = 1``). It is initialised
from the policy (trunk copied, head drawn under the fit's seed) and trained on pairs
(x, y_w, y_l) by the Bradley-Terry loss

    L_P(phi) = - E_P [ log sigmoid( r_phi(x, y_w) - r_phi(x, y_l) ) ].

Two trainers, one loss:

- the preference-only reward model of the RLHF baseline is TRL's ``RewardTrainer``
  (``train_preference_only``);
- AIHF's reward model (``fit_joint``) minimises the *weighted* loss of the chapter,

      L(phi) = lambda_P * L_P(phi) + lambda_D * L_D(phi),
      L_D(phi) = - E_{x ~ D, y ~ pi} [ log sigmoid( r_phi(x, y_E) - r_phi(x, y) ) ],

  where y is a sample of the current policy for a demonstration prompt. Each step shares its
  ``batch_size`` pairs between the two sets (the cost of a TRL step); a zero weight skips its set. TRL's trainer has one dataset and one
  unweighted loss, which is why this loop is our own; with lambda_D = 0 and lambda_P = 1 its
  loss on a batch is TRL's, bit for bit (``tests/test_aihf.py``). The optimiser (AdamW, constant
  learning rate, no weight decay) and the number of updates are those given to TRL as well.

The accuracy of a reward model is measured on held-out gold-labelled pairs (``correct``: one
0/1 per pair, so two reward models compare by a paired difference over the same pairs).
Fitted reward models are cached (``rsoup_lib.cache``, kind ``reward-model``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from rsoup_lib.errors import UserError


@dataclass(frozen=True)
class RMConfig:
    """How a reward model is fitted (both trainers)."""

    steps: int = 32  # optimiser updates
    batch_size: int = 8  # pairs per batch (shared by the two sets of the joint loss)
    lr: float = 1e-4
    seed: int = 0

    def validate(self) -> None:
        from rsoup_lib.rl import check_field_types

        check_field_types(RMConfig, asdict(self), "reward-model config: ")
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise UserError(f"reward-model config: steps={self.steps}, batch_size={self.batch_size} must be >= 1 "
                            f"and lr={self.lr} > 0")  # fmt: skip


def from_policy(policy: str, seed: int = 0, device: str = "cpu", dtype: str = "float32"):
    """``(reward model, tokenizer)``: the policy's trunk under a scalar head drawn with ``seed``."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from rsoup_lib.models import load_policy

    lm, tokenizer = load_policy(policy, device=device, dtype=dtype, seed=seed)
    config = lm.config.__class__.from_dict(lm.config.to_dict())
    config.num_labels = 1  # one scalar: the reward
    config.pad_token_id = tokenizer.pad_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rm = AutoModelForSequenceClassification.from_config(config)
    trunk = {k: v for k, v in lm.state_dict().items() if not k.startswith("lm_head")}
    missing, _ = rm.load_state_dict(trunk, strict=False)
    if any(not k.startswith("score") for k in missing):
        raise UserError(f"policy {policy}: its trunk does not fit a reward model (missing {missing[:3]})")
    return rm.to(device=lm.device, dtype=lm.dtype).eval(), tokenizer


def load(folder: str | Path, device: str = "cpu"):
    """A saved reward model and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm = AutoModelForSequenceClassification.from_pretrained(str(folder)).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return rm, tokenizer


def encode(tokenizer, prompt: str, completion: str) -> list[int]:
    """Token ids of the policy's prompt (``render_prompt``), the completion and EOS: what a
    reward model reads, and what the policy conditions on when it samples."""
    from rsoup_lib.models import render_prompt

    ids = tokenizer(render_prompt(tokenizer, prompt) + completion, add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id]


def _pad(rows: Sequence[list[int]], pad_id: int, device):
    import torch

    n = max(len(r) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    return ids.to(device), mask.to(device)


def rewards(rm, tokenizer, ids: Sequence[list[int]]):
    """r_phi of each token sequence (right-padded; the head reads the last real token)."""
    input_ids, mask = _pad(ids, tokenizer.pad_token_id, rm.device)
    return rm(input_ids=input_ids, attention_mask=mask, use_cache=False).logits.squeeze(-1).float()


def score(rm, tokenizer, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 64) -> list[float]:
    """r_phi(x, y) for every (prompt, completion), without gradients."""
    import torch

    out: list[float] = []
    with torch.no_grad():
        for s in range(0, len(prompts), batch_size):
            ids = [encode(tokenizer, x, y) for x, y in zip(prompts[s : s + batch_size], completions[s : s + batch_size])]
            out += rewards(rm, tokenizer, ids).tolist()
    return out


class Scorer:
    """A reward model as the training reward of ``rl.train`` (``reward_fn(prompts, completions)``)."""

    def __init__(self, rm, tokenizer, name: str = "reward_model"):
        self.rm, self.tokenizer, self.__name__ = rm, tokenizer, name

    def __call__(self, prompts, completions) -> list[float]:
        return score(self.rm, self.tokenizer, list(prompts), list(completions))


def bradley_terry_loss(r_chosen, r_rejected):
    """L = - mean log sigmoid(r_w - r_l): the loss of TRL's RewardTrainer (no margin)."""
    import torch.nn.functional as F

    return -F.logsigmoid(r_chosen - r_rejected).mean()


def pair_ids(tokenizer, pairs: Sequence[dict]) -> list[tuple[list[int], list[int]]]:
    """(chosen ids, rejected ids) of pairs {"prompt", "chosen", "rejected"}."""
    return [(encode(tokenizer, p["prompt"], p["chosen"]), encode(tokenizer, p["prompt"], p["rejected"])) for p in pairs]


def weighted_loss(rm, tokenizer, pref_batch, demo_batch, lam_p: float, lam_d: float):
    """lambda_P * L_P + lambda_D * L_D on one batch of each (lists of (chosen ids, rejected ids));
    a set with weight 0 (or no batch) is not computed."""
    loss = 0.0
    for lam, batch in ((lam_p, pref_batch), (lam_d, demo_batch)):
        if lam and batch:
            r = rewards(rm, tokenizer, [c for c, _ in batch] + [r for _, r in batch])
            loss = loss + lam * bradley_terry_loss(*r.chunk(2))
    return loss


def _batches(n: int, batch_size: int, steps: int, generator):
    """``steps`` index batches over range(n): a fresh permutation per epoch."""
    import torch

    order: list[int] = []
    for _ in range(steps):
        if len(order) < min(batch_size, n):
            order += torch.randperm(n, generator=generator).tolist()
        batch, order = order[: min(batch_size, n)], order[min(batch_size, n) :]
        yield batch


def fit_joint(policy: str, pref_pairs: Sequence[dict], demo_pairs: Sequence[dict], lam_p: float, lam_d: float,
              config: RMConfig, out_dir: Path, device: str = "cpu") -> Path:  # fmt: skip
    """Minimise lambda_P L_P + lambda_D L_D (module docstring) from the policy's trunk; save to
    ``out_dir``. ``demo_pairs``: {"prompt", "chosen": y_E, "rejected": y ~ pi}."""
    import torch

    config.validate()
    if not (lam_p and pref_pairs) and not (lam_d and demo_pairs):
        raise UserError("the reward model has nothing to learn from: lambda_P * |P| and lambda_D * |D| are both 0")
    rm, tokenizer = from_policy(policy, seed=config.seed, device=device)
    rm.train()
    opt = torch.optim.AdamW(rm.parameters(), lr=config.lr, weight_decay=0.0)
    pref, demo = pair_ids(tokenizer, pref_pairs), pair_ids(tokenizer, demo_pairs)
    g = torch.Generator().manual_seed(config.seed)
    size = max(1, config.batch_size // (bool(lam_p and pref) + bool(lam_d and demo)))  # the batch is shared
    batches_p = _batches(max(len(pref), 1), size, config.steps, g)
    batches_d = _batches(max(len(demo), 1), size, config.steps, g)
    for bp, bd in zip(batches_p, batches_d):
        loss = weighted_loss(rm, tokenizer, [pref[i] for i in bp] if pref else [],
                             [demo[i] for i in bd] if demo else [], lam_p, lam_d)  # fmt: skip
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    rm.eval()
    rm.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def trl_config(config: RMConfig, out_dir: Path, device: str = "cpu"):
    """TRL's ``RewardConfig`` with the optimiser of ``fit_joint``: AdamW, constant learning rate,
    no weight decay, ``config.steps`` updates of ``config.batch_size`` pairs, no saving or logging."""
    from trl import RewardConfig

    return RewardConfig(
        output_dir=str(out_dir), max_steps=config.steps, per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr, lr_scheduler_type="constant", weight_decay=0.0, warmup_steps=0,
        seed=config.seed, data_seed=config.seed, report_to="none", save_strategy="no", logging_strategy="no",
        disable_tqdm=True, use_cpu=device == "cpu", max_length=None, dataloader_drop_last=False,
        center_rewards_coefficient=None, optim="adamw_torch", bf16=False,
    )  # fmt: skip


def trl_dataset(tokenizer, pairs: Sequence[dict]):
    """Pairs tokenized as ``encode`` does (so both trainers see the same tokens), in TRL's
    processed format (``chosen_ids``, ``rejected_ids``)."""
    from datasets import Dataset

    return Dataset.from_list([{"chosen_ids": c, "rejected_ids": r} for c, r in pair_ids(tokenizer, pairs)])


def train_preference_only(policy: str, pairs: Sequence[dict], config: RMConfig, out_dir: Path,
                          device: str = "cpu") -> Path:  # fmt: skip
    """The RLHF baseline's reward model: TRL's ``RewardTrainer`` on P alone."""
    import tempfile

    from trl import RewardTrainer

    config.validate()
    rm, tokenizer = from_policy(policy, seed=config.seed, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = RewardTrainer(model=rm, args=trl_config(config, Path(tmp), device),
                                train_dataset=trl_dataset(tokenizer, pairs), processing_class=tokenizer)  # fmt: skip
        from rsoup_lib.aihf import _quiet

        _quiet(trainer).train()
    rm.eval()
    rm.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def correct(rm, tokenizer, heldout: Sequence[dict]):
    """1.0 where r_phi ranks a held-out pair as u* does, 0.0 where not (0.5 on a tie): [n]."""
    import numpy as np

    prompts = [p["prompt"] for p in heldout]
    rc = np.asarray(score(rm, tokenizer, prompts, [p["chosen"] for p in heldout]))
    rr = np.asarray(score(rm, tokenizer, prompts, [p["rejected"] for p in heldout]))
    return np.where(rc > rr, 1.0, np.where(rc < rr, 0.0, 0.5))
