"""The reward registry: ranges, weighted sums, clear errors for unknown names and NaN."""

import math

import pytest

from rsoup_lib.errors import UserError
from rsoup_lib.rewards import REWARDS, NonFiniteRewardError, Reward, count_syllables, get_reward

TEXTS = [
    "",
    "Great movie!",
    "A dull, predictable script; the director wasted a talented cast and the plot went nowhere.",
    "I loved the acting, the score and the cinematography. The story is simple. " * 3,
    "bad bad bad bad bad bad",
]


@pytest.mark.parametrize("name", list(REWARDS))
def test_rewards_stay_in_their_documented_range(name):
    r = REWARDS[name]
    scores = r(["Write a review."] * len(TEXTS), TEXTS)
    assert len(scores) == len(TEXTS)
    assert all(r.low <= s <= r.high for s in scores), scores


def test_rewards_order_texts_sensibly():
    p = ["x", "x"]
    pos, neg = get_reward("sentiment")(p, ["A wonderful, moving film.", "A terrible, boring film."])
    assert pos > 0.5 and neg < -0.5
    short, long = get_reward("conciseness")(p, ["Great.", "word " * 60])
    assert short > 0.9 and long == 0.0
    easy, hard = get_reward("readability")(p, ["The cat sat. It was fun.", "Incomprehensible cinematographic experimentation notwithstanding."])
    assert easy > hard
    spec, vague = get_reward("specificity")(p, ["The plot, acting, director and score all work.", "I liked it."])
    assert spec == 1.0 and vague == 0.0


def test_syllables_heuristic():
    assert [count_syllables(w) for w in ["cat", "movie", "cinematography", "the", "simple"]] == [1, 2, 6, 1, 2]


def test_weighted_sum():
    p, c = ["x"] * 2, ["A wonderful film.", "word " * 60]
    mix = get_reward("sentiment:0.5,conciseness:0.5")
    s, k = get_reward("sentiment")(p, c), get_reward("conciseness")(p, c)
    assert mix(p, c) == pytest.approx([0.5 * a + 0.5 * b for a, b in zip(s, k)])
    assert (mix.low, mix.high) == (-0.5, 1.0)


@pytest.mark.parametrize("spec", ["helpfulness", "sentiment:0.5,nope:0.5", "sentiment:abc", "sentiment,,", "sentiment,sentiment"])
def test_bad_specs_are_clear_errors(spec):
    with pytest.raises(UserError) as err:
        get_reward(spec)
    if "nope" in spec or spec == "helpfulness":
        assert "sentiment, readability, conciseness, specificity" in str(err.value)


def test_nonfinite_reward_names_reward_and_input():
    broken = Reward("broken", lambda p, c: [1.0, math.nan], 0, 1)
    with pytest.raises(NonFiniteRewardError, match=r"'broken'.*nan.*'second'"):
        broken(["a", "b"], ["first", "second"])
    inf = Reward("inf", lambda p, c: [math.inf], 0, 1)
    with pytest.raises(NonFiniteRewardError, match="inf"):
        inf(["a"], ["x"])


def test_requested_tone_reads_every_grid_prompt_and_free_text():
    from rsoup_lib.prompts import load_prompts, requested_tone

    for split in ("train", "test"):
        for rec in load_prompts(split):
            assert requested_tone(rec["prompt"]) == rec["tone"], rec
    assert requested_tone("Please write a negative review of Jaws.") == "negative"
    assert requested_tone("Tell me about Jaws, its strengths and weaknesses.") == "mixed"
    assert requested_tone("Tell me about Jaws.") == "any"


def test_tone_fidelity_follows_the_requested_tone():
    r = get_reward("tone_fidelity")
    good, bad = "A wonderful, brilliant film. I loved it.", "A terrible, awful film. I hated it."
    pos, neg = "Write a positive review of a horror movie.", "Write a negative review of a horror movie."
    mixed, any_ = "Write a mixed review of a horror movie.", "Write a review of a horror movie."
    assert r([pos, pos], [good, bad])[0] > 0.5 > -0.5 > r([pos], [bad])[0]
    assert r([neg], [bad])[0] > 0.5 and r([neg], [good])[0] < -0.5
    assert r([mixed], ["The film."])[0] == 1.0 and r([mixed], [good])[0] < 0
    assert min(r([any_, any_], [good, bad])) > 0.5  # either side, taken clearly
