"""Merge methods against independent float64 numpy implementations of the formulas of the
book (chapter 2, Rewarded soups; chapter 3, WARP), their properties, the registry, the in-place
front, and `rsoup merge`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rsoup_lib import merge as M
from rsoup_lib.errors import UserError
from rsoup_lib.front import Front

TOL = 1e-5


# ---------------------------------------------------------------------------------------------
# Independent reference implementations (numpy float64, written from the formulas)


def np_sd(sd):
    return {k: v.double().numpy() for k, v in sd.items()}


def ref_lerp(models, w):
    return {k: sum(wi * m[k] for wi, m in zip(w, models)) for k in models[0]}


def ref_slerp_vectors(d1, d2, lam):
    """slerp of two flat task vectors; linear when an angle does not exist."""
    n1, n2 = np.linalg.norm(d1), np.linalg.norm(d2)
    if n1 == 0 or n2 == 0:
        return (1 - lam) * d1 + lam * d2
    omega = np.arccos(np.clip(d1 @ d2 / (n1 * n2), -1, 1))
    if np.sin(omega) < 1e-6:
        return (1 - lam) * d1 + lam * d2
    return np.sin((1 - lam) * omega) / np.sin(omega) * d1 + np.sin(lam * omega) / np.sin(omega) * d2


def ref_slerp(init, models, lam, groups):
    """groups: list of key lists; each group's tensors are concatenated into one vector."""
    out = {}
    for g in groups:
        flat = lambda sd: np.concatenate([sd[k].ravel() for k in g])  # noqa: E731
        base = flat(init)
        cur = flat(models[0]) - base
        for m in range(1, len(models)):
            cur = ref_slerp_vectors(cur, flat(models[m]) - base, lam if len(models) == 2 else 1 / (m + 1))
        theta, i = base + cur, 0
        for k in g:
            n = init[k].size
            out[k] = theta[i : i + n].reshape(init[k].shape)
            i += n
    return out


def max_err(a, b):
    return max(float(np.abs(np.asarray(a[k], dtype=np.float64) - b[k]).max()) for k in b)


def as_np(sd):
    return {k: v.double().numpy() for k, v in sd.items()}


def random_sd(seed, dtype=torch.float32, scale=1.0, layers=2):
    g = torch.Generator().manual_seed(seed)
    sd = {"model.embed_tokens.weight": torch.randn(11, 6, generator=g)}
    for i in range(layers):
        sd[f"model.layers.{i}.self_attn.q_proj.weight"] = torch.randn(6, 6, generator=g)
        sd[f"model.layers.{i}.mlp.up_proj.weight"] = torch.randn(9, 6, generator=g)
        sd[f"model.layers.{i}.input_layernorm.weight"] = torch.randn(6, generator=g)
    sd["model.norm.weight"] = torch.randn(6, generator=g)
    sd["lm_head.weight"] = torch.randn(11, 6, generator=g)
    return {k: (v * scale).to(dtype) for k, v in sd.items()}


def finetuned(init, seed, scale=0.1):
    noise = random_sd(seed, scale=scale)
    return {k: v + noise[k].to(v.dtype) for k, v in init.items()}


@pytest.fixture
def trio():
    init = random_sd(0)
    return init, [finetuned(init, s) for s in (1, 2, 3)]


# ---------------------------------------------------------------------------------------------
# Formulas vs references


def test_lerp_matches_reference(trio):
    _, models = trio
    w = [0.2, 0.5, 0.3]
    assert max_err(M.lerp(models, w), ref_lerp([np_sd(m) for m in models], w)) < TOL
    uniform = M.lerp(models)
    assert max_err(uniform, ref_lerp([np_sd(m) for m in models], [1 / 3] * 3)) < TOL


@pytest.mark.parametrize("granularity", ["tensor", "layer", "model"])
@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
def test_slerp_two_models_matches_reference(trio, granularity, lam):
    init, (a, b, _) = trio
    groups = M.parameter_groups(list(init), granularity)
    got = M.slerp(init, [a, b], lam=lam, granularity=granularity)
    assert max_err(got, ref_slerp(np_sd(init), [np_sd(a), np_sd(b)], lam, groups)) < TOL


def test_layer_groups():
    keys = list(random_sd(0))
    groups = M.parameter_groups(keys, "layer")
    assert ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.input_layernorm.weight"] in groups
    assert ["model.embed_tokens.weight"] in groups and ["model.norm.weight"] in groups and ["lm_head.weight"] in groups
    assert len(groups) == 5
    assert len(M.parameter_groups(keys, "tensor")) == len(keys)
    assert M.parameter_groups(keys, "model") == [keys]
    with pytest.raises(UserError, match="granularity"):
        M.parameter_groups(keys, "block")


@pytest.mark.parametrize("granularity", ["tensor", "layer", "model"])
def test_slerp_three_models_iterates(trio, granularity):
    init, models = trio
    groups = M.parameter_groups(list(init), granularity)
    got = M.slerp(init, models, granularity=granularity)
    assert max_err(got, ref_slerp(np_sd(init), [np_sd(m) for m in models], None, groups)) < TOL
    # and it is literally slerp(init, slerp(init, t1, t2, 1/2), t3, 1/3)
    two = M.slerp(init, models[:2], lam=0.5, granularity=granularity)
    again = M.slerp(init, [two, models[2]], lam=1 / 3, granularity=granularity)
    assert max(float((got[k] - again[k]).abs().max()) for k in got) < TOL


def test_liti_and_ema_match_reference(trio):
    init, (a, _, _) = trio
    ni, na = np_sd(init), np_sd(a)
    for eta in (0.0, 0.3, 1.0):
        assert max_err(M.liti(init, a, eta), {k: (1 - eta) * ni[k] + eta * na[k] for k in ni}) < TOL
    mu = 0.01
    assert max_err(M.ema_update(init, a, mu), {k: (1 - mu) * ni[k] + mu * na[k] for k in ni}) < TOL
    ema = [t.clone() for t in init.values()]
    M.ema_update_(ema, list(a.values()), mu)
    assert max_err(dict(zip(init, ema)), {k: (1 - mu) * ni[k] + mu * na[k] for k in ni}) < TOL
    with pytest.raises(ValueError, match="float32"):
        M.ema_update_([t.bfloat16() for t in init.values()], list(a.values()), mu)


def test_registry_dispatch(trio):
    init, (a, b, _) = trio
    assert set(M.METHODS) == {"lerp", "slerp", "liti"}
    for name, kwargs in [("lerp", {"weights": [0.4, 0.6]}), ("slerp", {"lam": 0.4}), ("liti", {})]:
        models = [a] if name == "liti" else [a, b]
        direct = {"lerp": lambda: M.lerp([a, b], [0.4, 0.6]), "slerp": lambda: M.slerp(init, [a, b], 0.4), "liti": lambda: M.liti(init, a, 0.3)}[name]()
        got = M.merge(name, models, init=init, **kwargs)
        assert all(torch.equal(got[k], direct[k]) for k in got)
    with pytest.raises(UserError, match="needs the init"):
        M.merge("slerp", [a, b])
    with pytest.raises(UserError, match="unknown merge method"):
        M.merge("ties", [a, b], init=init)


def test_registry_refuses_unknown_parameters(trio):
    init, (a, b, _) = trio
    with pytest.raises(UserError, match=r"slerp has no parameter 'lamda': its parameters are lam, granularity"):
        M.merge("slerp", [a, b], init=init, lamda=0.3)
    with pytest.raises(UserError, match=r"lerp has no parameter 'lam': its parameters are weights"):
        M.merge("lerp", [a, b], lam=0.3)
    with pytest.raises(UserError, match=r"liti has no parameter 'weights'"):
        M.merge("liti", [a], init=init, weights=[1.0])


def test_registry_fills_defaults_and_none_means_default(trio):
    init, (a, b, c) = trio
    assert M.METHODS["slerp"].resolve(2, True, {}) == {"lam": 0.5, "granularity": "tensor"}
    assert M.METHODS["slerp"].resolve(3, True, {"lam": None}) == {"lam": None, "granularity": "tensor"}
    assert M.METHODS["lerp"].resolve(4, False, {}) == {"weights": [0.25] * 4}
    assert M.METHODS["liti"].resolve(1, True, {"eta": None}) == {"eta": 0.3}
    got = M.merge("liti", [a], init=init, eta=None)
    assert all(torch.equal(got[k], M.liti(init, a, 0.3)[k]) for k in got)


# Each declared rule: (method, number of models, init given, parameters, the one message).
RULES = [
    ("lerp", 2, False, {"weights": [0.5, 0.6]}, "weights [0.5, 0.6] sum to 1.1, not 1: lerp takes simplex weights"),
    ("lerp", 2, False, {"weights": [1.0]}, "got 1 weights for 2 models: give one weight per model"),
    ("lerp", 2, False, {"weights": [-0.5, 1.5]}, "weights [-0.5, 1.5] must all be >= 0 (a point of the simplex)"),
    ("slerp", 3, True, {"lam": 0.3}, "lam applies to two models; with 3 models slerp iterates with lam = 1/m"),
    ("slerp", 1, True, {}, "slerp needs at least two models, got 1"),
    ("slerp", 2, True, {"lam": 1.5}, "lam=1.5 is outside [0, 1]"),
    ("slerp", 2, True, {"granularity": "block"}, "unknown granularity 'block': use one of tensor, layer, model"),
    ("slerp", 2, False, {}, "slerp needs the init checkpoint (task vectors are theta_i - theta_init)"),
    ("liti", 1, True, {"eta": -0.1}, "eta=-0.1 is outside [0, 1]"),
    ("liti", 2, True, {}, "liti takes exactly 1 model(s), got 2"),
    ("liti", 1, False, {}, "liti needs the init checkpoint"),
]


@pytest.mark.parametrize("method,n,has_init,params,message", RULES)
def test_each_declared_check_has_one_message(trio, tmp_path, method, n, has_init, params, message):
    """The same message from the registry, from merge() and from rsoup merge's merge_folders
    (which refuses before opening any folder: the paths below do not exist)."""
    from rsoup_lib.merge_files import merge_folders

    init, models = trio
    models = (models * 2)[:n]
    for call in (
        lambda: M.METHODS[method].resolve(n, has_init, params),
        lambda: M.merge(method, models, init=init if has_init else None, **params),
        lambda: merge_folders(method, [tmp_path / f"m{i}" for i in range(n)], tmp_path / "out",
                              init=tmp_path / "init" if has_init else None, **params),
    ):  # fmt: skip
        with pytest.raises(UserError) as err:
            call()
        assert str(err.value).startswith(message)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# SLERP properties


def test_slerp_preserves_norm_of_equal_norm_deltas():
    init = {"w": torch.zeros(200, dtype=torch.float64)}
    g = torch.Generator().manual_seed(0)
    d1, d2 = torch.randn(200, generator=g, dtype=torch.float64), torch.randn(200, generator=g, dtype=torch.float64)
    d2 = d2 / d2.norm() * d1.norm()
    for lam in np.linspace(0, 1, 11):
        s = M.slerp(init, [{"w": d1}, {"w": d2}], lam=float(lam))["w"]
        assert abs(float(s.norm() / d1.norm()) - 1) < 1e-9
        lerp_norm = float(((1 - lam) * d1 + lam * d2).norm() / d1.norm())
        cos = float(d1 @ d2 / d1.norm() ** 2)
        assert abs(lerp_norm - math.sqrt(1 - 2 * (1 - cos) * (lam - lam**2))) < 1e-9  # chapter 3, WARP


def test_slerp_endpoints(trio):
    init, (a, b, _) = trio
    for lam, target in [(0.0, a), (1.0, b)]:
        got = M.slerp(init, [a, b], lam=lam)
        assert max(float((got[k] - target[k]).abs().max()) for k in got) < TOL


def test_slerp_near_parallel_falls_back_to_linear():
    init = {"w": torch.ones(50)}
    d = torch.linspace(-1, 1, 50)
    a, b = {"w": init["w"] + d}, {"w": init["w"] + 2 * d}  # exactly parallel deltas
    got = M.slerp(init, [a, b], lam=0.25)["w"]
    assert torch.isfinite(got).all()
    assert float((got - (init["w"] + 1.25 * d)).abs().max()) < TOL
    assert M.slerp_coefficients(1.0, 1.0, 1.0, 0.25) == (0.75, 0.25)
    assert M.slerp_coefficients(-1.0, 1.0, 1.0, 0.25) == (0.75, 0.25)  # antiparallel: no unique arc


def test_slerp_zero_norm_delta_is_safe(trio):
    init, (a, _, _) = trio
    got = M.slerp(init, [init, a], lam=0.5)  # delta_1 = 0 everywhere
    for k in got:
        assert torch.isfinite(got[k]).all()
        assert float((got[k] - (init[k] + 0.5 * (a[k] - init[k]))).abs().max()) < TOL
    both = M.slerp(init, [init, init], lam=0.7, granularity="model")
    assert all(torch.equal(both[k], init[k]) for k in init)


# ---------------------------------------------------------------------------------------------
# Numerics and validation


def test_bf16_storage_accumulates_in_fp32():
    # 1 + 2^-9 is not a bf16 number: a bf16 accumulator would round the two halves and lose it.
    a = {"w": torch.full((4,), 1.0, dtype=torch.bfloat16)}
    b = {"w": torch.full((4,), 1.0 + 2**-7, dtype=torch.bfloat16)}
    w = [0.5, 0.5]
    got = M.lerp([a, b], w)["w"]
    assert got.dtype == torch.bfloat16
    expected = torch.tensor(1.0 + 2**-8, dtype=torch.float32).bfloat16()  # fp32 mean, one rounding
    assert torch.equal(got, expected.expand(4))
    # many models: the fp32 accumulator keeps what bf16 partial sums would round away
    base, bump = torch.ones(1, dtype=torch.bfloat16), torch.full((1,), 1 + 2**-7, dtype=torch.bfloat16)
    models = [{"w": bump}] + [{"w": base}] * 3
    got = M.lerp(models, [0.25] * 4)["w"]
    exact = np.mean([1 + 2**-7, 1, 1, 1])
    assert abs(float(got) - exact) <= abs(float(torch.tensor(exact).bfloat16()) - exact) + 1e-12
    # slerp and liti keep init's storage dtype
    init = random_sd(0, dtype=torch.bfloat16)
    x, y = finetuned(init, 1), finetuned(init, 2)
    assert all(v.dtype == torch.bfloat16 for v in M.slerp(init, [x, y]).values())
    ref = ref_slerp(np_sd(init), [np_sd(x), np_sd(y)], 0.5, M.parameter_groups(list(init)))
    got = M.slerp(init, [x, y])
    assert max(float(np.abs(got[k].double().numpy() - ref[k]).max() / (np.abs(ref[k]).max())) for k in got) < 2**-8


def test_incompatible_checkpoints_refused(trio):
    init, (a, b, _) = trio
    missing = {k: v for k, v in b.items() if k != "model.layers.1.mlp.up_proj.weight"}
    with pytest.raises(UserError, match="model.layers.1.mlp.up_proj.weight"):
        M.lerp([a, missing], [0.5, 0.5])
    reshaped = dict(b, **{"model.layers.0.self_attn.q_proj.weight": torch.zeros(6, 7)})
    with pytest.raises(UserError, match=r"model\.layers\.0\.self_attn\.q_proj\.weight.*\[6, 6\].*\[6, 7\]"):
        M.slerp(init, [a, reshaped])
    extra = dict(b, extra=torch.zeros(1))
    with pytest.raises(UserError, match="'extra'"):
        M.liti(init, extra)
    ints = dict(b, **{"model.norm.weight": torch.zeros(6, dtype=torch.int64)})
    with pytest.raises(UserError, match="cannot be cast"):
        M.lerp([a, ints])


@pytest.mark.parametrize("weights", [[0.5, 0.6], [-0.1, 1.1], [1.0], [float("nan"), 1.0]])
def test_weights_must_be_on_the_simplex(trio, weights):
    _, (a, b, _) = trio
    with pytest.raises(UserError, match="weights"):
        M.lerp([a, b], weights)


# ---------------------------------------------------------------------------------------------
# LoRA


def random_adapter(seed, modules, r=4, d_in=6, d_out=9):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for m in modules:
        sd[f"base_model.model.{m}.lora_A.weight"] = torch.randn(r, d_in, generator=g)
        sd[f"base_model.model.{m}.lora_B.weight"] = torch.randn(d_out, r, generator=g)
    return sd


def test_lora_delta_and_ab_match_reference():
    mods = ["model.layers.0.mlp.up_proj", "model.layers.1.mlp.up_proj"]
    x, y = random_adapter(1, mods), random_adapter(2, mods)
    alpha, r = 8.0, 4
    deltas = [M.lora_deltas(ad, alpha) for ad in (x, y)]
    w = [0.3, 0.7]
    merged = M.lerp(deltas, w)
    ab = M.lora_ab_lerp([x, y], w)
    for m in mods:
        A = [np_sd(ad)[f"base_model.model.{m}.lora_A.weight"] for ad in (x, y)]
        B = [np_sd(ad)[f"base_model.model.{m}.lora_B.weight"] for ad in (x, y)]
        ref_delta = sum(wi * alpha / r * b @ a for wi, a, b in zip(w, A, B))
        assert float(np.abs(merged[m + ".weight"].double().numpy() - ref_delta).max()) < TOL
        ref_a = sum(wi * a for wi, a in zip(w, A))
        ref_b = sum(wi * b for wi, b in zip(w, B))
        assert float(np.abs(ab[f"base_model.model.{m}.lora_A.weight"].double().numpy() - ref_a).max()) < TOL
        assert float(np.abs(ab[f"base_model.model.{m}.lora_B.weight"].double().numpy() - ref_b).max()) < TOL
        # ab is not delta merging: cross terms
        assert np.abs(alpha / r * ref_b @ ref_a - ref_delta).max() > 0.1
    rs = M.lora_deltas(x, alpha, use_rslora=True)[mods[0] + ".weight"]
    assert torch.allclose(rs, deltas[0][mods[0] + ".weight"] * math.sqrt(r))  # alpha/sqrt(r) vs alpha/r


def test_lora_refuses_non_lora_tensors():
    ad = random_adapter(1, ["model.layers.0.mlp.up_proj"])
    ad["base_model.model.model.layers.0.mlp.up_proj.lora_magnitude_vector"] = torch.ones(9)
    with pytest.raises(UserError, match="DoRA"):
        M.lora_deltas(ad, 8.0)


# ---------------------------------------------------------------------------------------------
# In-place front


def tiny_model_and_states(seed=0):
    from rsoup_lib.models import load_policy

    model, _ = load_policy("tiny-random", seed=seed)
    init = {k: v.detach().clone() for k, v in model.named_parameters()}  # tied lm_head once, as in files
    models = []
    for s in (1, 2, 3):
        g = torch.Generator().manual_seed(s)
        models.append({k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in init.items()})
    return model, init, models


def params_equal(model, sd, tol=TOL):
    return max(float((p.detach() - sd[k]).abs().max()) for k, p in model.named_parameters()) <= tol


@pytest.mark.parametrize("granularity", ["tensor", "layer", "model"])
def test_front_matches_from_scratch_merge(granularity):
    model, init, models = tiny_model_and_states()
    front = Front.from_state_dicts(model, init, models[:2], granularity=granularity)
    for lam in (0.0, 0.3, 1.0):
        front.lerp([1 - lam, lam])
        assert params_equal(model, M.lerp(models[:2], [1 - lam, lam]))
        front.slerp(lam)
        assert params_equal(model, M.slerp(init, models[:2], lam=lam, granularity=granularity))
        front.liti(lam)
        assert params_equal(model, M.liti(init, models[0], lam))
    front.reset()
    assert params_equal(model, init, tol=0)
    three = Front.from_state_dicts(model, init, models, granularity=granularity)
    three.slerp()
    assert params_equal(model, M.slerp(init, models, granularity=granularity))
    three.lerp([0.2, 0.3, 0.5])
    assert params_equal(model, M.lerp(models, [0.2, 0.3, 0.5]))


def test_front_bf16_model_and_lora():
    model, init, models = tiny_model_and_states()
    model = model.to(torch.bfloat16)
    front = Front.from_state_dicts(model, init, models[:2])
    front.lerp([0.25, 0.75])
    expected = M.lerp(models[:2], [0.25, 0.75])
    for k, p in model.named_parameters():
        assert p.dtype == torch.bfloat16  # one bf16 rounding of the fp32 result, at most one ulp off
        assert bool(((p.detach().float() - expected[k]).abs() <= expected[k].abs() * 2**-8 + 1e-9).all())
    # LoRA front over the base: theta = base + sum_i w_i s B_i A_i
    model, init, _ = tiny_model_and_states()
    q = "model.layers.0.self_attn.q_proj"
    ads = [random_adapter(s, [q], r=2, d_in=64, d_out=64) for s in (1, 2)]
    lora = Front.from_lora(model, ads, [4.0, 4.0])
    lora.lerp([0.5, 0.5])
    delta = M.lerp([M.lora_deltas(a, 4.0) for a in ads], [0.5, 0.5])[q + ".weight"]
    assert float((model.get_parameter(q + ".weight").detach() - (init[q + ".weight"] + delta)).abs().max()) < TOL


# ---------------------------------------------------------------------------------------------
# CLI round trips


def save_model(path, seed, perturb=None):
    from rsoup_lib.models import load_policy

    model, tok = load_policy("tiny-random", seed=0)
    if perturb is not None:
        g = torch.Generator().manual_seed(perturb)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.fixture
def folders(tmp_path):
    init = save_model(tmp_path / "init", 0)
    a = save_model(tmp_path / "a", 0, perturb=1)
    b = save_model(tmp_path / "b", 0, perturb=2)
    return tmp_path, init, a, b


def rsoup(*argv):
    from rsoup_lib.cli import main

    return main([str(x) for x in argv])


def load_params(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path)
    AutoTokenizer.from_pretrained(path)  # the tokenizer came along
    return {k: v.detach() for k, v in model.named_parameters()}


def test_cli_round_trip(folders):
    tmp, init, a, b = folders
    assert rsoup("merge", "--method", "lerp", "--models", tmp / "a", tmp / "b", "--weights", 0.3, 0.7, "--out", tmp / "lerp") == 0
    got = load_params(tmp / "lerp")
    assert max_err(got, ref_lerp([np_sd(a), np_sd(b)], [0.3, 0.7])) < TOL
    assert json.loads((tmp / "lerp" / "rsoup_merge.json").read_text())["weights"] == [0.3, 0.7]

    assert rsoup("merge", "--method", "slerp", "--init", tmp / "init", "--models", tmp / "a", tmp / "b", "--lam", 0.4, "--granularity", "layer", "--out", tmp / "slerp") == 0
    groups = M.parameter_groups(list(init), "layer")
    assert max_err(load_params(tmp / "slerp"), ref_slerp(np_sd(init), [np_sd(a), np_sd(b)], 0.4, groups)) < TOL

    assert rsoup("merge", "--method", "liti", "--init", tmp / "init", "--models", tmp / "a", "--eta", 0.3, "--out", tmp / "liti") == 0
    ni, na = np_sd(init), np_sd(a)
    assert max_err(load_params(tmp / "liti"), {k: 0.7 * ni[k] + 0.3 * na[k] for k in ni}) < TOL


def test_cli_refuses_incompatible_and_writes_nothing(folders, capsys):
    from rsoup_lib.models import tiny_random

    tmp, *_ = folders
    other, _ = tiny_random(seed=0, hidden_size=32)
    other.save_pretrained(tmp / "other")
    assert rsoup("merge", "--method", "lerp", "--models", tmp / "a", tmp / "other", "--out", tmp / "bad") == 2
    err = capsys.readouterr().err
    assert "incompatible" in err and "model.embed_tokens.weight" in err
    assert not (tmp / "bad").exists()
    assert not [p for p in tmp.iterdir() if p.name.startswith(".tmp-")]
    # bad flags, also before anything is written
    for argv in (
        ["--method", "lerp", "--models", tmp / "a", tmp / "b", "--weights", 0.5, 0.6],
        ["--method", "slerp", "--models", tmp / "a", tmp / "b"],
        ["--method", "liti", "--init", tmp / "init", "--models", tmp / "a", tmp / "b"],
        ["--method", "lerp", "--models", tmp / "a", tmp / "b", "--lam", 0.5],
        ["--method", "lerp", "--models", tmp / "a", tmp / "nope"],
    ):
        assert rsoup("merge", *argv, "--out", tmp / "bad") == 2
        assert not (tmp / "bad").exists()
    assert rsoup("merge", "--method", "lerp", "--models", tmp / "a", tmp / "b", "--out", tmp / "a") == 2


def test_cli_lora_adapters(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    from rsoup_lib.models import load_policy

    base, tok = load_policy("tiny-random", seed=0)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    adapters = []
    for s in (1, 2):
        model, _ = load_policy("tiny-random", seed=0)
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
        peft_model = get_peft_model(model, cfg)
        g = torch.Generator().manual_seed(s)
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_" in n:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
        peft_model.save_pretrained(tmp_path / f"lora{s}")
        from peft import get_peft_model_state_dict

        adapters.append({k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()})
    base_sd = {k: v.detach().clone() for k, v in base.named_parameters()}
    w = [0.4, 0.6]

    # delta mode: a full model, base + sum_i w_i s B_i A_i
    assert rsoup("merge", "--method", "lerp", "--init", tmp_path / "base", "--models", tmp_path / "lora1", tmp_path / "lora2", "--weights", *w, "--out", tmp_path / "delta") == 0
    got = load_params(tmp_path / "delta")
    expected = {k: v.double().numpy() for k, v in base_sd.items()}
    for name in M.lora_modules(adapters[0]):
        expected[name] = expected[name] + sum(wi * M.lora_deltas(ad, 8.0)[name].double().numpy() for wi, ad in zip(w, adapters))
    assert max_err(got, expected) < TOL

    # delta mode slerp runs too (task vectors = the deltas)
    assert rsoup("merge", "--method", "slerp", "--init", tmp_path / "base", "--models", tmp_path / "lora1", tmp_path / "lora2", "--out", tmp_path / "dslerp") == 0

    # ab mode: an adapter that peft loads, with averaged A and B
    assert rsoup("merge", "--method", "lerp", "--models", tmp_path / "lora1", tmp_path / "lora2", "--weights", *w, "--lora-mode", "ab", "--out", tmp_path / "ab") == 0
    fresh, _ = load_policy("tiny-random", seed=0)
    peft_model = PeftModel.from_pretrained(fresh, tmp_path / "ab")
    from peft import get_peft_model_state_dict

    loaded = get_peft_model_state_dict(peft_model)
    for k, v in loaded.items():
        assert float((v - (w[0] * adapters[0][k] + w[1] * adapters[1][k])).abs().max()) < TOL
    merged_ab = {k: v.detach() for k, v in peft_model.merge_and_unload().named_parameters()}
    assert max_err(merged_ab, expected) > 1e-3  # A/B averaging is not delta merging

    # refusals
    assert rsoup("merge", "--method", "lerp", "--models", tmp_path / "lora1", tmp_path / "lora2", "--out", tmp_path / "x") == 2  # no base
    assert rsoup("merge", "--method", "slerp", "--init", tmp_path / "base", "--models", tmp_path / "lora1", tmp_path / "lora2", "--lora-mode", "ab", "--out", tmp_path / "x") == 2
    assert rsoup("merge", "--method", "lerp", "--models", tmp_path / "lora1", tmp_path / "base", "--out", tmp_path / "x") == 2  # mixed kinds
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# numpy arrays (what `rsoup merge` computes on) and its safetensors codec


def to_numpy(sd):
    return {k: v.numpy() for k, v in sd.items()}


@pytest.mark.parametrize("granularity", ["tensor", "layer", "model"])
def test_numpy_arrays_match_reference(trio, granularity):
    init, models = trio
    ni, nm = to_numpy(init), [to_numpy(m) for m in models]
    ri, rm = np_sd(init), [np_sd(m) for m in models]
    groups = M.parameter_groups(list(init), granularity)
    got = M.lerp(nm, [0.2, 0.5, 0.3])
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in got.values())
    assert max_err(got, ref_lerp(rm, [0.2, 0.5, 0.3])) < TOL
    assert max_err(M.slerp(ni, nm[:2], 0.3, granularity), ref_slerp(ri, rm[:2], 0.3, groups)) < TOL
    assert max_err(M.slerp(ni, nm, None, granularity), ref_slerp(ri, rm, None, groups)) < TOL
    assert max_err(M.liti(ni, nm[0], 0.3), {k: 0.7 * ri[k] + 0.3 * rm[0][k] for k in ri}) < TOL
    half = {k: v.astype(np.float16) for k, v in nm[0].items()}  # float16 storage: fp32 math, fp16 out
    out = M.lerp([half, half], [0.5, 0.5])
    assert all(v.dtype == np.float16 for v in out.values())
    assert all(np.array_equal(out[k], half[k]) for k in half)


def test_bf16_codec_matches_torch():
    from rsoup_lib.checkpoints import bf16_to_float32, float32_to_bf16

    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(10000, generator=g) * 10 ** torch.randint(-30, 30, (10000,), generator=g).float(),
                   torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 3.4e38, 1e-45, 1.0 + 2**-8, 1.0 + 3 * 2**-8])])  # fmt: skip
    bits = float32_to_bf16(x.numpy())
    assert np.array_equal(bits, x.bfloat16().view(torch.int16).numpy().view(np.uint16))
    assert np.array_equal(bf16_to_float32(bits), x.bfloat16().float().numpy())
    nan = float32_to_bf16(np.array([np.nan, -np.nan], dtype=np.float32))
    assert np.isnan(bf16_to_float32(nan)).all()


def test_cli_bf16_round_trip(tmp_path):
    from transformers import AutoModelForCausalLM

    from rsoup_lib.models import load_policy

    sds = []
    for name, s in [("a", 1), ("b", 2)]:
        model, tok = load_policy("tiny-random", seed=0, dtype="bfloat16")
        g = torch.Generator().manual_seed(s)
        with torch.no_grad():
            for p in model.parameters():
                p.add_((0.05 * torch.randn(p.shape, generator=g)).bfloat16())
        model.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
        sds.append({k: v.detach().clone() for k, v in model.named_parameters()})
    assert rsoup("merge", "--method", "lerp", "--models", tmp_path / "a", tmp_path / "b", "--weights", 0.3, 0.7, "--out", tmp_path / "m") == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "m", dtype=torch.bfloat16)
    expected = M.lerp(sds, [0.3, 0.7])  # the same formulas on torch bf16 tensors (fp32 inside)
    for k, p in merged.named_parameters():
        assert p.dtype == torch.bfloat16
        diff = (p.detach().float() - expected[k].float()).abs()
        # one bf16 ulp (fp32 rounding order differs between torch and numpy), or ~0 on cancellation
        assert bool((diff <= expected[k].float().abs() * 2**-7 + 1e-7).all())
    ref = ref_lerp([np_sd(sd) for sd in sds], [0.3, 0.7])
    assert max(float(np.abs(merged.get_parameter(k).detach().double().numpy() - ref[k]).max()) for k in ref) <= 2**-8  # half a bf16 ulp at |w| ~ 1


def test_cli_sharded_models_keep_their_layout(tmp_path):
    from rsoup_lib.models import load_policy

    sds = []
    for name, s in [("a", 1), ("b", 2)]:
        model, tok = load_policy("tiny-random", seed=s)
        model.save_pretrained(tmp_path / name, max_shard_size="60KB")
        tok.save_pretrained(tmp_path / name)
        sds.append({k: v.detach().clone() for k, v in model.named_parameters()})
    shards = sorted(p.name for p in (tmp_path / "a").glob("*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "a" / "model.safetensors.index.json").is_file()
    assert rsoup("merge", "--method", "lerp", "--models", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "m") == 0
    assert sorted(p.name for p in (tmp_path / "m").glob("*.safetensors")) == shards
    assert max_err(load_params(tmp_path / "m"), ref_lerp([np_sd(sd) for sd in sds], [0.5, 0.5])) < TOL


def test_cli_merge_never_imports_torch(folders):
    """The file-to-file merge computes with numpy: no torch import time in `rsoup merge`."""
    import subprocess
    import sys

    tmp, *_ = folders
    code = (
        "import sys; from rsoup_lib.cli import main; "
        f"rc = main(['merge', '--method', 'slerp', '--init', {str(tmp / 'init')!r}, '--models', "
        f"{str(tmp / 'a')!r}, {str(tmp / 'b')!r}, '--out', {str(tmp / 'x')!r}]); "
        "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp / "x" / "model.safetensors").is_file()
