"""Policies by name (tiny from data/, SmolLM2 from its package) and the KV-cached sampler."""

import json
import shutil

import pytest
import torch

from rsoup_lib.errors import UserError
from rsoup_lib.sampling import sample, sample_ids
from rsoup_lib.manifest import DATA_DIR, verified_dir
from rsoup_lib.models import POLICY_NAMES, count_parameters, load_policy, render_prompt

HAVE_TINY = (DATA_DIR / "MANIFEST.json").is_file() and "tiny" in json.loads(
    (DATA_DIR / "MANIFEST.json").read_text()).get("artifacts", {})


def test_policy_names_and_unknown_policy():
    assert {"tiny", "smollm2-135m-instruct", "tiny-random"} <= set(POLICY_NAMES)
    with pytest.raises(UserError, match="unknown policy"):
        load_policy("gpt-17")


def test_sampling_is_seeded_and_stops_at_eos():
    model, tok = load_policy("tiny-random")
    prompts = ["Write a review of a horror movie.", "Write a short review of a comedy film."]
    a = sample(model, tok, prompts, max_new_tokens=12, seed=3)
    assert a == sample(model, tok, prompts, max_new_tokens=12, seed=3)
    assert a != sample(model, tok, prompts, max_new_tokens=12, seed=4)
    enc = tok([render_prompt(tok, p) for p in prompts], return_tensors="pt", padding=True)
    # Greedy decoding with our loop equals transformers' greedy generate (left padding included).
    ours = sample_ids(model, enc["input_ids"], enc["attention_mask"], 10, tok.eos_token_id, tok.pad_token_id,
                      temperature=0)
    ref = model.generate(**enc, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)
    ref = ref[:, enc["input_ids"].shape[1]:]
    assert torch.equal(ours[:, : ref.shape[1]], ref)
    # Make every token end-of-text: each row stops after one token, the rest is padding.
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.model.embed_tokens.weight[tok.eos_token_id] = 1.0  # tied: the eos logit wins
    ids = sample_ids(model, enc["input_ids"], enc["attention_mask"], 5, tok.eos_token_id, tok.pad_token_id,
                     temperature=0)
    assert ids.shape[1] == 1 and (ids[:, 0] == tok.eos_token_id).all()


@pytest.mark.skipif(not HAVE_TINY, reason="data/tiny not built yet")
def test_tiny_loads_from_data_and_writes_words():
    model, tok = load_policy("tiny")
    assert 5e6 <= count_parameters(model) <= 15e6
    assert type(model).__name__ == "LlamaForCausalLM" and 7000 <= len(tok) <= 9000
    assert render_prompt(tok, "Write a review of a horror movie.") == "Write a review of a horror movie.\n"
    texts = sample(model, tok, ["Write a review of a horror movie."] * 8, max_new_tokens=24, seed=0)
    assert sum(bool(t) for t in texts) >= 6


@pytest.mark.skipif(not HAVE_TINY, reason="data/tiny not built yet")
def test_tiny_with_a_corrupt_or_missing_file_names_it(tmp_path):
    shutil.copytree(DATA_DIR / "tiny", tmp_path / "tiny")
    shutil.copy(DATA_DIR / "MANIFEST.json", tmp_path / "MANIFEST.json")
    assert verified_dir("tiny", tmp_path) == tmp_path / "tiny"
    (tmp_path / "tiny" / "tokenizer.json").write_text("{}")
    with pytest.raises(UserError, match="tokenizer.json is corrupt"):
        verified_dir("tiny", tmp_path)
    (tmp_path / "tiny" / "model.safetensors").unlink()
    with pytest.raises(UserError, match="model.safetensors is missing"):
        verified_dir("tiny", tmp_path)


@pytest.mark.slow
def test_smollm2_converts_once_and_writes_through_its_chat_template():
    from rsoup_lib.cache import cache_dir

    model, tok = load_policy("smollm2-135m-instruct")
    assert (cache_dir() / "models" / "smollm2-135m-instruct" / "model.safetensors").is_file()
    assert 130e6 < count_parameters(model) < 140e6
    assert "<|im_start|>assistant" in render_prompt(tok, "Write a review of a horror movie.")
    text = sample(model, tok, ["Write a short review of a horror movie."], max_new_tokens=24, temperature=0)[0]
    assert len(text.split()) >= 5
    # Second load comes from the safetensors folder.
    model2, _ = load_policy("smollm2-135m-instruct")
    assert torch.equal(model2.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_parameter_breakdown_adds_up_and_counts_tied_weights_once():
    from rsoup_lib.models import count_parameters, load_policy, parameter_breakdown

    model, _ = load_policy("tiny-random")
    parts = parameter_breakdown(model)
    assert sum(parts.values()) == count_parameters(model)
    assert all(v > 0 for v in parts.values())
