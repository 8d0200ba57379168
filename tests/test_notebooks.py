"""Every notebook of the book runs through papermill in the smoke profile, and prints one verdict
line per claim it tests (``Verdict [claim-id]: outcome — ...``, see ``rsoup_lib.verdicts``)."""

import re

import pytest

from rsoup_lib import book
from rsoup_lib.profiles import get_profile
from rsoup_lib.verdicts import OUTCOMES

# The claims each chapter judges (the outcome depends on the numbers; the line must be there).
CLAIMS = {
    "00_setup": [],
    "01_rlhf_per_reward": ["raises-sentiment", "raises-readability", "raises-conciseness", "raises-specificity"],
    "02_rewarded_soups": ["lmc-sentiment", "lmc-conciseness", "soup-vs-morl", "morl-beyond-soup", "lora-delta-vs-ab"],
    "03_warp": ["ema-anchor", "slerp-vs-lerp-lambda", "slerp-vs-lerp-kl", "liti-above-run", "iterations-improve"],
    "04_aihf": ["aihf-beats-rlhf-scarce", "aihf-beats-dpo-scarce", "advantage-shrinks", "joint-rm-more-accurate"],
    "05_group_robust": ["gi-worst-group", "gi-mean-reward", "gi-held-out", "gi-seed-stability"],
    "06_locomotion": ["loco-lmc", "loco-collapse", "loco-soup-vs-morl"],
}
VERDICT_LINE = re.compile(r"^Verdict \[([a-z0-9-]+)\]: (" + "|".join(map(re.escape, OUTCOMES)) + r")\b", re.M)


def _outputs_text(nb) -> str:
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                texts.append(out.text)
            elif "data" in out:
                texts.append(out.data.get("text/markdown") or out.data.get("text/plain") or "")
    return "\n".join(texts)


def verdict_ids(nb) -> list[str]:
    """The claim ids of the verdict lines in an executed notebook's outputs, in order."""
    return [m.group(1) for m in VERDICT_LINE.finditer(_outputs_text(nb))]


@pytest.mark.slow
@pytest.mark.parametrize("entry", book.notebooks())
def test_notebook_runs_in_smoke_profile(entry, tmp_path):
    import nbformat

    out = book.execute_notebook(entry, get_profile("smoke"), tmp_path, progress=False)
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    params = [c for c in nb.cells if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
    assert params and any('profile = "smoke"' in c.source for c in params)
    name = entry.split("/")[-1]
    ids = verdict_ids(nb)
    assert sorted(ids) == sorted(CLAIMS[name]), f"{name}: verdict lines {ids}, expected one per claim {CLAIMS[name]}"
