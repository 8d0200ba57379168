"""Loading policies by name.

``load_policy(name)`` returns ``(model, tokenizer)`` for

- ``tiny-random``: a randomly initialised Llama of about 100k parameters with a byte-level BPE
  tokenizer trained in memory on a few built-in sentences. Built in well under a second, no
  files: the ``smoke`` profile and the test suite use it.
- a path to a Hugging Face model folder (``config.json`` + safetensors), e.g. a policy that
  ``rsoup train`` or ``rsoup merge`` wrote.

Every model is a transformers ``PreTrainedModel`` (LlamaForCausalLM for ours), so ``generate``,
peft and TRL work on all of them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rsoup_lib.errors import UserError

# Text the tiny-random tokenizer is trained on: enough to give it real merges, nothing more.
_SEED_TEXT = [
    "Write a review of a horror movie.",
    "Write a short, positive review of a comedy film.",
    "The acting was superb and the plot kept me on the edge of my seat.",
    "A dull, predictable script; the director wasted a talented cast.",
    "The cinematography is beautiful, the score is moving, and the story is simple.",
    "I loved this movie. The characters felt real and the ending surprised me.",
    "Terrible pacing and weak dialogue made this film hard to finish.",
]


def tiny_random_tokenizer(vocab_size: int = 384):
    """A byte-level BPE tokenizer trained in memory (deterministic, no files)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_SEED_TEXT * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        padding_side="left",
    )


def tiny_random(seed: int = 0, hidden_size: int = 64, layers: int = 2):
    """A random tiny Llama and its tokenizer; same seed, same weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_random_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    gen = torch.random.fork_rng()
    with gen:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_policy(name: str, device: str = "cpu", dtype: str = "float32", seed: int = 0):
    """``(model, tokenizer)`` for a policy name or a model folder; see the module docstring."""
    if name == "tiny-random":
        model, tokenizer = tiny_random(seed=seed)
    elif Path(name).is_dir():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not (Path(name) / "config.json").is_file():
            raise UserError(f"{name} is a folder but holds no config.json: not a Hugging Face model folder")
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=getattr(torch, dtype))
    else:
        raise UserError(
            f"unknown policy {name!r}: use one of {', '.join(POLICY_NAMES)} or the path of a model folder"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    device = resolve_device(device)
    return model.to(device=device, dtype=getattr(torch, dtype)), tokenizer


POLICY_NAMES = ["tiny-random"]


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for, but torch sees no GPU; use device=cpu")
    return device


def render_prompt(tokenizer, instruction: str) -> str:
    """The text a policy is conditioned on: the chat template when the tokenizer has one
    (SmolLM2), else the instruction and a newline (our tiny models are trained that way)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
        )
    return instruction + "\n"


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
