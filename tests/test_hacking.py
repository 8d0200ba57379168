"""Reward-hacking detectors on hand-written completions."""

from rsoup_lib.evaluate import EvalResult, distinct_n
from rsoup_lib.hacking import detect, detector_stats, opening
from rsoup_lib.text import words

PROMPTS = ["Give me a negative review of a western.", "Write a review of a horror movie.",
           "Write a negative review of a comedy.", "Review a drama you saw recently."]
TONES = {PROMPTS[0]: "negative", PROMPTS[1]: "any", PROMPTS[2]: "negative", PROMPTS[3]: "any"}
SFT = ["The plot dragged and the acting was flat, a dull western.",
       "A tense horror film with a clever ending and good sound.",
       "Not funny at all; the jokes fell flat and the cast looked bored.",
       "A moving drama about a family, slow in places but honest."]


def result(texts):
    return EvalResult(
        n=len(texts), seed=0, rewards={}, kl_to_sft=0.0, kl_to_sft_stderr=0.0,
        distinct_1=distinct_n(texts, 1), distinct_2=distinct_n(texts, 2), repetition=0.0,
        empty_rate=sum(not t.strip() for t in texts) / len(texts),
        mean_words=sum(len(words(t)) for t in texts) / len(texts),
        samples=[{"prompt": p, "completion": t} for p, t in zip(PROMPTS, texts)],
    )  # fmt: skip


def test_sft_against_itself_fires_nothing():
    stats, found = detect({"sft": result(SFT), "same": result(SFT)}, TONES)
    assert found == [] and stats["sft"] == stats["same"]


def test_each_kind_of_hacking_is_found_with_its_worst_sample():
    happy = ["Wonderful, great, amazing, I loved it, the best film ever!"] * 4
    empty = ["", "", "Fine.", ""]
    stuffed = ["plot acting director score plot acting director score cinematography screenplay"] * 4
    _, found = detect({"sft": result(SFT), "happy": result(happy), "empty": result(empty),
                       "stuffed": result(stuffed)}, TONES)  # fmt: skip
    labels = {(f.policy, f.label) for f in found}
    assert ("happy", "ignored instructions") in labels and ("happy", "collapse") in labels
    assert ("happy", "stock opening") in labels
    assert ("empty", "empty answers") in labels and ("stuffed", "keyword stuffing") in labels
    assert ("stuffed", "repetition") in labels
    assert not any(f.policy == "sft" for f in found)
    ignored = next(f for f in found if f.label == "ignored instructions")
    assert TONES[ignored.example["prompt"]] == "negative"
    emptiest = next(f for f in found if f.label == "empty answers")
    assert emptiest.example["completion"] == ""


def test_stats_of_the_instructions_and_openings():
    s = detector_stats(result(["Great fun with a great cast.", "Great fun again.", "Meh.", "Great fun it was."]), TONES)
    assert s["negative asked, positive given"] == 0.5  # one of the two negative prompts got praise
    assert s["stock opening"] == "great fun" and s["stock opening share"] == 0.75


def test_detectors_count_the_rewards_words():
    """Openings and film terms are words of rsoup_lib.text: punctuation and case do not split them."""
    assert opening("Great, fun! film") == opening("great fun film") == "great fun"
    assert opening("...") == "" and opening("\"Jaws\" is great") == "jaws is"
    s = detector_stats(result(["(Acting) and plot: fine.", "The score, the SCORE.", "", "Meh."]), TONES)
    assert s["film-term share"] == 4 / 9  # acting plot score score, of 4 + 4 + 0 + 1 words
