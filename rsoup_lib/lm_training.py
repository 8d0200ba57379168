"""Training the tiny Llama: next-token pretraining on packed text, then supervised fine-tuning.

Both stages minimise the same cross-entropy, on different data:

    L(theta) = - (1 / |M|) * sum_{(i, t) in M} log p_theta(x_{i,t} | x_{i,<t})

- pretraining: x_i are windows of ``seq_len`` tokens cut at random offsets from one stream of
  all corpus documents joined by ``<|endoftext|>``; M is every position;
- SFT: x_i = tokens(instruction + "\\n") + tokens(review) + <|endoftext|>; M is the review and
  end-of-text positions only (the instruction is conditioned on, not learned). This is the format
  ``models.render_prompt`` gives tokenizers without a chat template.

AdamW with linear warm-up and cosine decay; the loop is short and readable on purpose. It logs
``{"step", "loss", "lr", "seconds"}`` rows that the data card plots/quotes.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch


@dataclass
class TinyLlamaConfig:
    """Shape of the ``tiny`` policy (5.2M parameters with an 8k vocabulary, 2.1M of them the
    tied embedding)."""

    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    max_position_embeddings: int = 256


def tiny_llama(tokenizer, shape: TinyLlamaConfig, seed: int = 0):
    """A freshly initialised ``LlamaForCausalLM`` of the given shape for ``tokenizer``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **asdict(shape),
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def fold_temperature(model, temperature: float) -> None:
    """Make sampling ``model`` at temperature 1 the same as sampling it at ``temperature`` before.

    A Llama's logits are z = W (g * h / rms(h)) with g the final norm's gain; dividing g by T
    gives z / T for every position, so softmax(z_folded) = softmax(z / T) (up to float rounding)
    everywhere the model is used: sampling, log-probabilities, KL. ``tiny`` is shipped this way
    (data version 6, ``BuildConfig.sample_temperature``): an MLE-trained small model spreads mass
    over its vocabulary's tail, and the chapters then sample, score and regularise one and the
    same sharper policy without a temperature argument in every code path. In place."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    norm = model.get_decoder().norm
    with torch.no_grad():
        norm.weight.div_(temperature)


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 32
    seq_len: int = 128  # pretraining window; SFT examples are padded to their batch's longest
    lr: float = 2e-3
    warmup: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 25


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def pretraining_batches(stream: torch.Tensor, cfg: TrainConfig, generator: torch.Generator):
    """Endless batches of random ``seq_len``-token windows of the token stream."""
    while True:
        starts = torch.randint(0, len(stream) - cfg.seq_len - 1, (cfg.batch_size,), generator=generator)
        x = torch.stack([stream[s : s + cfg.seq_len] for s in starts.tolist()])
        yield {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": x.clone()}


def sft_example(tokenizer, instruction: str, completion: str) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one demonstration; labels are -100 on the instruction."""
    prompt = tokenizer(instruction + "\n", add_special_tokens=False)["input_ids"]
    answer = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt + answer, [-100] * len(prompt) + answer


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int, max_len: int) -> dict:
    """Right-pad a list of (ids, labels) to the longest (cut at ``max_len``)."""
    length = min(max_len, max(len(ids) for ids, _ in examples))
    ids = torch.full((len(examples), length), pad_id)
    labels = torch.full((len(examples), length), -100)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        x, y = x[:length], y[:length]
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def sft_batches(examples, cfg: TrainConfig, pad_id: int, max_len: int, generator: torch.Generator):
    """Endless batches of demonstrations, reshuffled every epoch."""
    while True:
        order = torch.randperm(len(examples), generator=generator).tolist()
        for i in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size):
            yield collate([examples[j] for j in order[i : i + cfg.batch_size]], pad_id, max_len)


def train(model, batches, cfg: TrainConfig, progress: str | None = None) -> list[dict]:
    """Run ``cfg.steps`` AdamW steps on ``batches``; returns the log rows."""
    from tqdm import tqdm

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95),
    )
    model.train()
    log, t0, running = [], time.perf_counter(), []
    bar = tqdm(range(cfg.steps), desc=progress or "train", disable=progress is None)
    for step in bar:
        batch = next(batches)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        running.append(loss.item())
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            row = {"step": step + 1, "loss": sum(running) / len(running), "lr": lr_at(step, cfg),
                   "seconds": time.perf_counter() - t0}
            log.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            running = []
    model.eval()
    return log


@torch.no_grad()
def completion_nll(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 64) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of the completions (review + end-of-text) given
    their instructions, and the number of tokens scored. Perplexity = exp(nll / tokens)."""
    model.eval()
    examples = [sft_example(tokenizer, x, y) for x, y in pairs]
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = collate(examples[i : i + batch_size], tokenizer.pad_token_id, 10_000)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        mask = labels != -100
        token_logp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        total -= token_logp[mask].sum().item()
        count += int(mask.sum())
    return total, count
