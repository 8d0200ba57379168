"""What a chapter of the book calls besides the methods themselves: its set-up from a profile,
the library's source shown next to the equation it implements, evaluation with the book's
conventions, samples, and the verdicts.

A chapter's ``parameters`` cell names a profile and, optionally, overrides of its fields::

    profile = "cpu"     # smoke | cpu | gpu (`rsoup profiles`)
    overrides = {}      # e.g. {"steps": 500, "policy": "/path/to/any/hf-causal-lm"}

and ``P = chapter.setup(profile, overrides)`` gives the ``Profile`` every run of the chapter is
sized from (``RLConfig.from_profile(P, reward=...)``), so two chapters with the same profile
build the same configurations and share their runs through the cache, whether they run in the
book build or directly in Jupyter.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from rsoup_lib.profiles import Profile, get_profile, set_threads

REPO_ROOT = Path(__file__).resolve().parent.parent


def setup(profile: str = "cpu", overrides: Mapping[str, Any] | None = None) -> Profile:
    """The profile ``profile`` with ``overrides`` applied (each checked against the profile's
    fields and types), with its torch thread count set for this kernel."""
    P = get_profile(profile).with_overrides(overrides or {})
    set_threads(P.threads)
    return P


def _display(obj) -> None:
    from IPython.display import display

    display(obj)


def markdown(text: str) -> None:
    """Show ``text`` as Markdown in the notebook (and the book)."""
    from IPython.display import Markdown

    _display(Markdown(text))


def show_parameters(P: Profile, **chapter_settings) -> None:
    """One line with the run sizes this build used: the profile's and the chapter's own."""
    keys = ("policy", "steps", "batch_prompts", "k", "max_new_tokens", "lr", "beta", "lora", "eval_prompts", "seed")
    parts = [f"`{k}` = {getattr(P, k)!r}" for k in keys]
    parts += [f"`{k}` = {v!r}" for k, v in chapter_settings.items()]
    markdown(f"**This build** (profile `{P.name}`): " + ", ".join(parts) + ".")


def source(obj) -> str:
    """The source of a library function or class, as it is in ``rsoup_lib``."""
    return inspect.getsource(obj)


def show_source(obj, note: str = "") -> None:
    """Show the library code that implements an equation, read from ``rsoup_lib`` at build time
    (never a copy), with the file it lives in."""
    path = Path(inspect.getsourcefile(obj)).resolve()
    try:
        where = path.relative_to(REPO_ROOT)
    except ValueError:
        where = path.name
    head = f"`{where}` · `{obj.__qualname__}`" + (f" — {note}" if note else "")
    markdown(f"{head}\n\n```python\n{source(obj).rstrip()}\n```")


def evaluator(P: Profile, rewards: Sequence[str], sft=None, n_samples: int = 8):
    """``evaluate`` with the book's conventions: the profile's held-out prompts and length, and
    one seed (``P.seed + 1``) for every policy, so that results pair prompt by prompt."""
    from rsoup_lib.evaluate import evaluate

    def run(policy):
        return evaluate(policy, list(rewards), n=P.eval_prompts, seed=P.seed + 1, sft=sft,
                        max_new_tokens=P.eval_max_new_tokens, n_samples=n_samples, device=P.device, dtype=P.dtype)  # fmt: skip

    return run


def per_prompt(result, names: Sequence[str]):
    """An evaluation's per-prompt values as an array [n, len(names)]; a name is a reward or
    ``"kl"``. Fronts of such arrays are what ``rsoup_lib.stats`` compares."""
    import numpy as np

    cols = [result.kls() if name == "kl" else result.scores(name) for name in names]
    return np.stack(cols, axis=1)


def samples_table(results: Mapping[str, Any], i: int, width: int = 220) -> None:
    """The completions of every policy for prompt ``i`` (same prompt, same sampling seed)."""
    first = next(iter(results.values()))
    rows = []
    for name, res in results.items():
        text = res.samples[i]["completion"].strip().replace("|", "/").replace("\n", " ")[:width]
        rows.append(f"| {name} | {text or '*(empty)*'} |")
    markdown(f"**Prompt:** {first.samples[i]['prompt']}\n\n| policy | completion |\n|---|---|\n" + "\n".join(rows))


def table(rows: Iterable[Mapping[str, Any]], index: str | None = None):
    """A list of dicts as a pandas table (shown by the notebook as the cell's value)."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    return df.set_index(index) if index else df


def show_verdicts(verdicts: Sequence) -> None:
    """Each verdict on its own line (``Verdict [id]: outcome — claim (value ± se ...)``), then
    the chapter's summary table."""
    from rsoup_lib.verdicts import verdict_table

    markdown("\n\n".join(str(v) for v in verdicts))
    markdown(verdict_table(verdicts))


def estimate_text(e) -> str:
    """``+0.042 ± 0.012`` (or ``n/a (why)`` for an undefined estimate)."""
    import math

    return f"n/a ({e.note})" if math.isnan(e.value) else str(e)


# --- chapter 2 (rewarded soups) ----------------------------------------------------------------


def hv_reference(fronts: Sequence, margin: float = 0.1, maximize: Sequence[bool] = (True, True)):
    """One reference point for every hypervolume of a comparison: per objective, the worst mean
    over every point of every front (fronts of [n_prompts, k] per-prompt arrays), moved away by
    ``margin`` times that objective's range (``margin`` itself when the range is 0), so that the
    extreme points of a front add area too. Computed once from the full data and then held fixed
    across bootstrap replicates and across the fronts compared."""
    import numpy as np

    from rsoup_lib.stats import positions

    pos = np.concatenate([positions(f) for f in fronts])
    signs = np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    oriented = pos * signs
    worst, spread = oriented.min(axis=0), np.ptp(oriented, axis=0)
    return tuple(float(x) for x in (worst - np.where(spread > 0, margin * spread, margin)) * signs)


def relative_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """||a - b|| / ||b|| over every tensor of ``b`` (Frobenius norms summed over tensors), e.g.
    how far the A/B-averaged LoRA delta is from the exact delta merge. 0 when both are zero."""
    import math

    num = sum(float(((a[k].float() - b[k].float()) ** 2).sum()) for k in b)
    den = sum(float((b[k].float() ** 2).sum()) for k in b)
    if den == 0:
        return 0.0 if num == 0 else float("inf")
    return math.sqrt(num / den)


def compare_with_paper(v, predicts: str, consistent: Sequence[str], readings: Mapping[str, str] | None = None) -> str:
    """A sentence computed from a ``Verdict``'s outcome: what the paper predicts, what this
    build's outcome means (``readings[outcome]``; by default the estimate against two standard
    errors) and whether the two agree (the outcome is one of ``consistent``). An untested
    verdict says that nothing can be compared, and why."""
    if v.outcome == "untested":
        return f"The paper predicts {predicts}. This build cannot say: {v.estimate.note or 'nothing was measured'}."
    e = v.estimate
    readings = readings or {
        "holds": f"the estimate {e} is above two standard errors",
        "not confirmed": f"the estimate {e} is within two standard errors of zero",
        "opposite": f"the estimate {e} is below minus two standard errors",
    }
    agrees = "agrees with" if v.outcome in consistent else "does not agree with"
    return f"The paper predicts {predicts}. Here {readings[v.outcome]}, so this build {agrees} it."


def results_table(results: Mapping[str, Any], rewards: Sequence[str]):
    """One row per evaluation (``{name: EvalResult}``): each reward's mean ± standard error over
    prompts, the KL to SFT (± se) and the mean length in words."""
    rows = []
    for name, res in results.items():
        row = {"policy": name}
        row.update({r: f"{res.rewards[r]['mean']:+.3f} ± {res.rewards[r]['stderr']:.3f}" for r in rewards})
        kl = res.kl_to_sft
        row["KL to SFT"] = "—" if kl is None else f"{kl:.2f} ± {res.kl_to_sft_stderr:.2f}"
        row["words"] = f"{res.mean_words:.1f}"
        rows.append(row)
    return table(rows, index="policy")
