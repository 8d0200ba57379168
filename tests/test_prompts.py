
import pytest

from rsoup_lib.errors import UserError
from rsoup_lib.prompts import GENRES, LENGTHS, TONES, build_prompt_set, load_prompts


def test_committed_prompt_files_match_the_generator():
    built = build_prompt_set()
    for split in ("train", "test"):
        assert load_prompts(split) == built[split]


def test_splits_share_cells_but_no_prompt_text():
    train, test = load_prompts("train"), load_prompts("test")
    assert len(train) >= 300 and len(test) >= 150
    assert not {p["prompt"] for p in train} & {p["prompt"] for p in test}
    cells = lambda ps: {(p["genre"], p["tone"], p["length"]) for p in ps}  # noqa: E731
    assert cells(train) == cells(test) == {(g, t, n) for g in GENRES for t in TONES for n in LENGTHS}
    assert len({p["id"] for p in train + test}) == len(train) + len(test)


def test_prompt_text_and_metadata_agree():
    for p in load_prompts("test"):
        assert p["genre"] in p["prompt"]
        assert p["group"] == p["tone"]
        if p["tone"] != "any":
            assert p["tone"] in p["prompt"] or "liked" in p["prompt"] or "strengths" in p["prompt"]
        assert " a a" not in p["prompt"] and " a animated" not in p["prompt"] and " a action" not in p["prompt"]


def test_unknown_split_and_missing_file_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="unknown prompt split"):
        load_prompts("validation")
    with pytest.raises(UserError, match="missing"):
        load_prompts("train", data_dir=tmp_path)
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "train.jsonl").write_text("{not json\n")
    with pytest.raises(UserError, match="corrupt"):
        load_prompts("train", data_dir=tmp_path)
