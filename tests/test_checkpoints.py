"""rsoup_lib.checkpoints: the numpy safetensors codec against torch's, folder reading (sharded
models, adapters), the torch-side loaders, and atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rsoup_lib import checkpoints as C
from rsoup_lib.errors import UserError


def arrays():
    g = np.random.default_rng(0)
    return {
        "f32": g.standard_normal((3, 5)).astype(np.float32),
        "f16": g.standard_normal((7,)).astype(np.float16),
        "f64": g.standard_normal((2, 2)),
        "i64": np.arange(6, dtype=np.int64).reshape(2, 3),
        "u8": np.arange(4, dtype=np.uint8),
        "flag": np.array([True, False]),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "bf16": (g.standard_normal((4, 3)) * 10.0 ** g.integers(-20, 20, (4, 3))).astype(np.float32),
    }


def test_numpy_writer_loads_in_torch_bit_for_bit(tmp_path):
    from safetensors.torch import load_file

    tensors = arrays()
    nbytes = C.write_safetensors(tmp_path / "x.safetensors", tensors, {"bf16": "BF16"})
    got = load_file(tmp_path / "x.safetensors")
    assert list(got) == list(tensors)
    for name, arr in tensors.items():
        want = torch.from_numpy(arr)
        if name == "bf16":
            want = want.bfloat16()  # written rounded to nearest even, as torch rounds
        assert got[name].dtype == want.dtype and torch.equal(got[name], want), name
    assert nbytes == sum(t.numel() * t.element_size() for t in got.values())


def test_numpy_reader_reads_torch_files(tmp_path):
    from safetensors.torch import load_file, save_file

    g = torch.Generator().manual_seed(0)
    state = {"w": torch.randn(4, 6, generator=g), "b": torch.randn(6, generator=g).bfloat16(), "n": torch.arange(3)}
    save_file(state, tmp_path / "t.safetensors")
    specs = C.read_safetensors_header(tmp_path / "t.safetensors")
    assert {k: (s.shape, s.dtype) for k, s in specs.items()} == {"w": ((4, 6), "float32"), "b": ((6,), "bfloat16"), "n": ((3,), "int64")}
    tensors, dtypes = C.read_safetensors(tmp_path / "t.safetensors")
    assert dtypes == {"w": "F32", "b": "BF16", "n": "I64"}
    assert np.array_equal(tensors["w"], state["w"].numpy())
    assert tensors["b"].dtype == np.float32 and np.array_equal(tensors["b"], state["b"].float().numpy())
    assert np.array_equal(tensors["n"], state["n"].numpy())
    # and back: the numpy writer with the file's dtypes gives the same tensors
    C.write_safetensors(tmp_path / "back.safetensors", tensors, dtypes)
    again = load_file(tmp_path / "back.safetensors")
    assert all(again[k].dtype == state[k].dtype and torch.equal(again[k], state[k]) for k in state)


def test_unreadable_file_is_a_user_error(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x05")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        C.read_safetensors_header(tmp_path / "bad.safetensors")


def test_sharded_model_folder(tmp_path):
    from rsoup_lib.models import load_policy

    model, tok = load_policy("tiny-random", seed=0)
    model.save_pretrained(tmp_path / "m", max_shard_size="60KB")
    files = C.weight_files(tmp_path / "m")
    assert len(files) > 1 and files == sorted(files) and all(f.is_file() for f in files)
    ck = C.Checkpoint(tmp_path / "m")
    assert ck.kind == "model" and list(ck.layout) == [f.name for f in files]
    state = C.load_state_dict(tmp_path / "m")
    assert set(state) == set(ck.specs) == set(C.policy_state("tiny-random"))  # tied tensors once
    params = C.parameters(model)
    assert all(torch.equal(state[k], params[k]) for k in params)
    numpy_state = ck.load()
    assert all(np.array_equal(numpy_state[k], state[k].numpy()) for k in state)


def test_parameters_are_detached_copies():
    from rsoup_lib.models import load_policy

    model, _ = load_policy("tiny-random", seed=0)
    params = C.parameters(model)
    assert list(params) == [k for k, _ in model.named_parameters()]
    k, p = next(iter(model.named_parameters()))
    assert not params[k].requires_grad and params[k].data_ptr() != p.data_ptr()
    params[k].add_(1.0)
    assert not torch.equal(params[k], p.detach())


def write_adapter(folder, seed=0, **config):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    folder.mkdir()
    m = "base_model.model.model.layers.0.self_attn.q_proj"
    tensors = {f"{m}.lora_A.weight": torch.randn(2, 8, generator=g), f"{m}.lora_B.weight": torch.randn(8, 2, generator=g)}
    save_file(tensors, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4, **config}))
    return tensors


def test_load_adapter(tmp_path):
    tensors = write_adapter(tmp_path / "ad", use_rslora=True)
    got, config = C.load_adapter(tmp_path / "ad")
    assert list(got) == list(tensors) and all(torch.equal(got[k], tensors[k]) for k in tensors)
    assert config["lora_alpha"] == 4 and config["use_rslora"] is True
    ck = C.Checkpoint(tmp_path / "ad")
    assert ck.kind == "adapter" and ck.lora_alpha_and_rslora() == (4.0, True)
    with pytest.raises(UserError, match="not a peft adapter folder"):
        C.load_adapter(tmp_path)
    write_adapter(tmp_path / "dora", use_dora=True)
    with pytest.raises(UserError, match="DoRA"):
        C.Checkpoint(tmp_path / "dora")


def test_missing_weights_are_user_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no .safetensors weights"):
        C.load_state_dict(tmp_path / "empty")
    with pytest.raises(UserError, match="holds neither config.json"):
        C.Checkpoint(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="model.safetensors is missing"):
        C.Checkpoint(tmp_path / "empty")


def test_save_merged_round_trip(tmp_path):
    from transformers import AutoModelForCausalLM

    state = C.policy_state("tiny-random")
    state = {k: v + 0.5 for k, v in state.items()}
    C.save_merged("tiny-random", state, tmp_path / "out")
    assert (tmp_path / "out" / "config.json").is_file() and (tmp_path / "out" / "tokenizer_config.json").is_file()
    got = C.load_state_dict(tmp_path / "out")
    assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state)
    AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_save_merged_is_atomic(tmp_path, monkeypatch):
    """Nothing at out_dir (and no temporary folder left) when the weights do not fit the
    template, nor when writing fails halfway (after the weights, before the tokenizer)."""
    import rsoup_lib.models

    state = C.policy_state("tiny-random")
    with pytest.raises(UserError, match="do not fit"):
        C.save_merged("tiny-random", {**state, "extra.weight": torch.zeros(1)}, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []

    load_policy = rsoup_lib.models.load_policy

    class BrokenTokenizer:
        def save_pretrained(self, folder):
            assert (folder / "model.safetensors").is_file()  # the weights were written
            raise OSError("disk full")

    monkeypatch.setattr(rsoup_lib.models, "load_policy", lambda name: (load_policy(name)[0], BrokenTokenizer()))
    with pytest.raises(OSError, match="disk full"):
        C.save_merged("tiny-random", state, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []

