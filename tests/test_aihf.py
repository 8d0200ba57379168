"""Chapter 4 (AIHF): the special cases of the joint objective, a smoke run of every method, the
resume of the alternating loop, the preference labels and ``rsoup aihf``."""

from __future__ import annotations

import json

import pytest
import torch

from rsoup_lib import aihf, reward_model
from rsoup_lib.cli import main
from rsoup_lib.errors import UserError
from rsoup_lib.preferences import PreferenceData, bradley_terry_probability, cached_preference_data


def small(**kw) -> aihf.AIHFConfig:
    base = dict(policy="tiny-random", n_demos=4, n_pairs=4, pool_demos=8, pool_pairs=8, heldout_pairs=8, steps=4,
                iterations=2, batch_size=2, batch_prompts=2, k=2, max_new_tokens=6, rm_steps=3, rm_batch_size=2,
                lr=1e-2, rm_lr=1e-2)  # fmt: skip
    return aihf.AIHFConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> PreferenceData:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RSOUP_CACHE_DIR", str(tmp_path_factory.mktemp("prefs-cache")))
        return cached_preference_data(small().data_config())


def weights(folder):
    from rsoup_lib.checkpoints import load_state_dict

    return load_state_dict(folder)


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def init_folder(folder):
    from rsoup_lib.models import tiny_random

    if not folder.is_dir():
        model, tok = tiny_random(seed=0)
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------- the data
def test_bradley_terry_labels(data):
    assert bradley_terry_probability(1.0, 0.0, 0.0) == 1.0 and bradley_terry_probability(0.0, 0.0, 1.0) == 0.5
    assert data.label_accuracy(8, 1e-6) == 1.0  # T -> 0: the label is u*'s argmax
    assert data.pairs(4, 0.1) == data.pairs(8, 0.1)[:4]  # nested sets
    d = data.demonstrations(4)
    assert len(d) == 4 and all(x["completion"] for x in d)
    assert all(p["u_chosen"] > p["u_rejected"] for p in data.heldout)
    with pytest.raises(UserError, match="pool has 8"):
        data.pairs(9, 0.1)


def test_noisier_labels_agree_less_with_u_star():
    rows = [{"prompt": "x", "a": "a", "b": "b", "u_a": 0.3 * (i % 3), "u_b": 0.1, "z": (i + 0.5) / 60} for i in range(60)]
    d = PreferenceData([], rows, [])
    assert d.label_accuracy(60, 0.01) > d.label_accuracy(60, 1.0) > 0.4


# ----------------------------------------------------------------------------- special cases
def _trl_dpo_trainer(tmp_path, beta):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from rsoup_lib.models import render_prompt, tiny_random

    model, tok = tiny_random(seed=0)
    ref, _ = tiny_random(seed=0)
    with torch.no_grad():  # a policy different from its reference, so that the log-ratios are not 0
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pairs = [{"prompt": f"Write a review of film {i}.", "chosen": f"great film {i} with fine acting",
              "rejected": f"bad {i}"} for i in range(4)]  # fmt: skip
    rows = [{"prompt": render_prompt(tok, p["prompt"]), "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
    args = DPOConfig(output_dir=str(tmp_path), beta=beta, loss_type=["sigmoid"], per_device_train_batch_size=4,
                     report_to="none", use_cpu=True, max_length=None, precompute_ref_log_probs=False)  # fmt: skip
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    return trainer, tok, pairs


def test_dpo_form_with_lambda_d_zero_is_trl_dpo_loss(tmp_path):
    beta = 0.3
    trainer, tok, pairs = _trl_dpo_trainer(tmp_path, beta)
    for i, p in enumerate(pairs):  # the same tokens as TRL's own preprocessing
        ours = aihf.dpo_example(tok, p["prompt"], p["chosen"], p["rejected"])
        assert ours == {k: trainer.train_dataset[i][k] for k in ours}
    batch = aihf.collate(tok, pairs)
    trainer.model.eval()
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, dict(batch))
        ours = aihf.aihf_dpo_loss(trainer.model, trainer.ref_model, batch, batch, 1.0, 0.0, beta)
    assert float(trl_loss) > 0
    torch.testing.assert_close(ours, trl_loss, rtol=1e-6, atol=1e-6)


def test_reward_loss_with_lambda_d_zero_is_trl_reward_loss(tmp_path):
    from trl import RewardTrainer

    rm, tok = reward_model.from_policy("tiny-random", seed=0)
    pairs = [{"prompt": f"Review film {i}.", "chosen": f"good film {i} plot", "rejected": "bad"} for i in range(4)]
    config = reward_model.RMConfig(steps=1, batch_size=4)
    trainer = RewardTrainer(model=rm, args=reward_model.trl_config(config, tmp_path),
                            train_dataset=reward_model.trl_dataset(tok, pairs), processing_class=tok)  # fmt: skip
    ids = reward_model.pair_ids(tok, pairs)
    batch = trainer.data_collator([{"chosen_ids": c, "rejected_ids": r} for c, r in ids])
    with torch.no_grad():
        trl_loss = trainer.compute_loss(rm, dict(batch))
        ours = reward_model.weighted_loss(rm, tok, ids, ids, 1.0, 0.0)
    torch.testing.assert_close(ours, trl_loss, rtol=1e-6, atol=1e-6)


def test_explicit_with_lambda_d_zero_is_rlhf(tmp_path, data):
    """lambda_D = 0: every round fits the same reward model on P, and the RL run continued over
    the rounds ends where one uninterrupted RL run on that model ends."""
    from rsoup_lib import rl

    config = small(method="aihf-explicit", lam_d=0.0)
    out = aihf.train(config, tmp_path / "aihf", data)
    assert same_weights(out / "rm-0", out / "rm-1")
    reward_model.fit_joint(config.policy, data.pairs(config.n_pairs, config.label_temperature), [], 1.0, 0.0,
                           config.rm_config(), tmp_path / "rm")  # fmt: skip
    assert same_weights(out / "rm-0", tmp_path / "rm")
    rm, tok = reward_model.load(tmp_path / "rm")
    with torch.random.fork_rng(devices=[]):
        rl.train(config.rl_config(), tmp_path / "rlhf", reward_fn=reward_model.Scorer(rm, tok), progress=False)
    assert same_weights(out / "policy", tmp_path / "rlhf" / "policy")


def test_lambda_p_zero_learns_from_demonstrations_alone(tmp_path, data):
    """lambda_P = 0: the preferences (their number, their labels) change nothing."""
    for method in ("aihf-dpo", "aihf-explicit"):
        a = aihf.train(small(method=method, lam_p=0.0, n_pairs=2, label_temperature=0.1), tmp_path / f"{method}-a", data)
        b = aihf.train(small(method=method, lam_p=0.0, n_pairs=8, label_temperature=5.0), tmp_path / f"{method}-b", data)
        assert same_weights(a / "policy", b / "policy")
        assert not same_weights(a / "policy", init_folder(tmp_path / "init"))


def test_lambda_d_zero_dpo_form_ignores_demonstrations(tmp_path, data):
    a = aihf.train(small(method="aihf-dpo", lam_d=0.0, n_demos=2), tmp_path / "a", data)
    b = aihf.train(small(method="aihf-dpo", lam_d=0.0, n_demos=8), tmp_path / "b", data)
    assert same_weights(a / "policy", b / "policy")


# ----------------------------------------------------------------------------- runs
@pytest.mark.parametrize("method", aihf.METHODS)
def test_every_method_trains_a_policy(method, data):
    run = aihf.cached(small(method=method), data)
    assert (run / "policy" / "model.safetensors").is_file()
    if method in ("rlhf", "aihf-explicit"):
        acc = aihf.reward_model_accuracy(run, data)
        assert len(acc) == len(data.heldout) and set(acc.tolist()) <= {0.0, 0.5, 1.0}
    assert aihf.cached(small(method=method), data) == run  # the second call is a cache hit


def test_same_seed_same_policy(tmp_path, data):
    a = aihf.train(small(method="aihf-dpo"), tmp_path / "a", data)
    b = aihf.train(small(method="aihf-dpo"), tmp_path / "b", data)
    assert same_weights(a / "policy", b / "policy")


def test_alternating_loop_resumes_after_a_kill(tmp_path, data):
    """Killed after round 1 (its reward model and RL checkpoint written), the run resumes to the
    weights of an uninterrupted one."""
    config = small(method="aihf-explicit", iterations=2, steps=4)
    whole = aihf.train(config, tmp_path / "whole", data)
    aihf.train_explicit(config, data, tmp_path / "killed", stop_after_iteration=1)
    assert (tmp_path / "killed" / "rm-0").is_dir() and not (tmp_path / "killed" / "rm-1").exists()
    assert not (tmp_path / "killed" / "policy").exists()
    resumed = aihf.train(config, tmp_path / "killed", data)
    assert same_weights(resumed / "policy", whole / "policy")
    assert same_weights(resumed / "rm-1", whole / "rm-1")


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match="method 'ppo' is not one of"):
        small(method="ppo").validate()
    with pytest.raises(UserError, match="both 0"):
        small(lam_d=0.0, lam_p=0.0).validate()
    with pytest.raises(UserError, match="multiple of iterations"):
        small(method="aihf-explicit", steps=5, iterations=2).validate()
    with pytest.raises(UserError, match="must not exceed"):
        small(n_pairs=9).validate()
    (tmp_path / "c.yaml").write_text("methods: [dpo, nope]\n")
    with pytest.raises(UserError, match="must be a list of"):
        aihf.read_config(tmp_path / "c.yaml")


def test_the_shipped_configs_read():
    for name in ("aihf_tiny", "aihf_smollm2_gpu"):
        config, methods = aihf.read_config(f"configs/{name}.yaml")
        assert methods == list(aihf.METHODS)


@pytest.mark.slow
def test_rsoup_aihf_command(tmp_path, data):
    (tmp_path / "c.yaml").write_text(
        "methods: [dpo, aihf-dpo]\npolicy: tiny-random\nn_demos: 4\nn_pairs: 4\npool_demos: 8\npool_pairs: 8\n"
        "heldout_pairs: 8\nsteps: 2\niterations: 2\nbatch_size: 2\nmax_new_tokens: 6\n"
    )
    assert main(["aihf", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out"), "--eval-prompts", "4"]) == 0
    rows = json.loads((tmp_path / "out" / "aihf.json").read_text())
    assert [r["method"] for r in rows[1:]] == ["dpo", "aihf-dpo"]
    assert (tmp_path / "out" / "aihf-dpo" / "model.safetensors").is_file()
