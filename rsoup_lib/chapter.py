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
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

# The book's kernels have no ipywidgets, so tqdm.auto falls back to text progress bars and says so
# (TqdmWarning "IProgress not found") in the first cell of every page; the fallback is what the
# book wants, the warning only noise to a reader.
warnings.filterwarnings("ignore", message="IProgress not found")

from rsoup_lib.book import REPO_ROOT  # noqa: E402
from rsoup_lib.profiles import Profile, get_profile, set_threads  # noqa: E402



def setup(profile: str = "cpu", overrides: Mapping[str, Any] | None = None) -> Profile:
    """The profile ``profile`` with ``overrides`` applied (each checked against the profile's
    fields and types), with its torch thread count set for this kernel, and the kernel's tables
    showing whole cells."""
    import pandas as pd

    P = get_profile(profile).with_overrides(overrides or {})
    set_threads(P.threads)
    _quiet_libraries()
    # pandas cuts a table cell after 50 characters ("a gritty, gritty mo..."): the book's tables
    # hold completions and "estimate ± se, 95% interval [...]" texts that a reader needs whole.
    pd.set_option("display.max_colwidth", None)
    return P


def _quiet_libraries() -> None:
    """No per-file progress bars from transformers in the chapters' outputs (loading and saving
    a 5M-parameter model is instant; the bars were noise on the page)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()


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
    _show_code(Path(inspect.getsourcefile(obj)), obj.__qualname__, source(obj), note)


def _show_code(path: Path, name: str, code: str, note: str = "") -> None:
    """A code block headed by the file it comes from (relative to the repository) and its name."""
    path = path.resolve()
    try:
        where = path.relative_to(REPO_ROOT)
    except ValueError:
        where = path.name
    head = f"`{where}` · `{name}`" + (f" — {note}" if note else "")
    markdown(f"{head}\n\n```python\n{code.rstrip()}\n```")


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


# --- chapter 1 (and chapter 0, which only describes the set-up)


def machine_facts() -> dict[str, Any]:
    """What this build ran on: versions of rsoup, python, torch and transformers, CPU cores,
    torch's thread count in this kernel, and the GPU (or "none")."""
    import os
    import platform

    import torch
    import transformers

    import rsoup_lib

    return {
        "rsoup": rsoup_lib.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "CPU cores": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def key_values(mapping: Mapping[str, Any], key: str = "", value: str = "value"):
    """A mapping as a two-column table (one row per key), values shown as text."""
    return table([{key or "name": k, value: str(v)} for k, v in mapping.items()], index=key or "name")


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), seconds it took)``."""
    import time

    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def sampling_speed(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, seed: int = 0,
                   batch_size: int | None = None) -> tuple[list[str], float]:  # fmt: skip
    """Completions of ``prompts`` (``sampling.sample``, one batch of ``batch_size``) and the
    throughput in new tokens per second, counting ``max_new_tokens`` per prompt (an upper bound
    on the tokens actually drawn: a completion may end early)."""
    from rsoup_lib.sampling import sample

    outs, seconds = timed(sample, model, tokenizer, list(prompts), max_new_tokens=max_new_tokens, seed=seed,
                          batch_size=batch_size or len(prompts))  # fmt: skip
    return outs, len(prompts) * max_new_tokens / seconds


def show_constant(module, name: str, note: str = "") -> None:
    """Show the assignment of ``name`` in ``module`` (a table of thresholds, a word list), read
    from the library's source at build time like ``show_source``."""
    import ast

    path = Path(inspect.getsourcefile(module)).resolve()
    text = path.read_text()
    for node in ast.parse(text).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            code = ast.get_source_segment(text, node)
            break
    else:
        raise ValueError(f"{module.__name__} assigns no {name!r} at module level")
    _show_code(Path(path), name, code, note)


def results_table(results: Mapping[str, Any], rewards: Sequence[str]):
    """One row per policy: each reward's mean ± se, the KL to SFT ± se, distinct-2 and words."""
    rows = []
    for name, res in results.items():
        row = {"policy": name}
        row.update({r: f"{res.rewards[r]['mean']:+.3f} ± {res.rewards[r]['stderr']:.3f}" for r in rewards})
        kl = "—" if res.kl_to_sft is None else f"{res.kl_to_sft:.2f} ± {res.kl_to_sft_stderr:.2f}"
        row.update({"KL to SFT": kl, "distinct-2": f"{res.distinct_2:.2f}", "words": f"{res.mean_words:.1f}"})
        rows.append(row)
    return table(rows, index="policy")


def findings_markdown(found: Sequence[Any], width: int = 200) -> str:
    """``rsoup_lib.hacking.detect``'s findings as a bullet list with the worst sample of each."""
    return "\n".join(
        f"- **`{f.policy}` policy: {f.label}** ({f.why}). Example: *{f.example['prompt']}* → "
        f"\"{f.example['completion'].strip().replace(chr(10), ' ')[:width] or '(empty)'}\""
        for f in found
    )  # fmt: skip


def count_phrase(n: int, total: int, noun: str) -> str:
    """``"all 4 rewards"``, ``"none of the 4 rewards"``, ``"3 of the 4 rewards"``."""
    if n == total:
        return f"all {total} {noun}" if total > 1 else f"the {noun}"
    if n == 0:
        return f"none of the {total} {noun}"
    return f"{n} of the {total} {noun}"


def _names(keys: Sequence[str]) -> str:
    return ", ".join(f"`{k}`" for k in keys)


def pairing_sentence(paired: Mapping[str, Any], unpaired: Mapping[str, Any], noun: str = "comparisons",
                     tolerance: float = 0.05) -> str:  # fmt: skip
    """Sentences on what pairing did to the standard errors of the same differences (name ->
    ``stats.Estimate``, paired and unpaired): the ratio unpaired se / paired se, the names for
    which it helped (ratio > 1 + tolerance), made no difference, or widened the error, and the
    verdicts (``verdicts.outcome``) the unpaired error would have changed."""
    from rsoup_lib.verdicts import outcome

    ratio = {k: unpaired[k].se / paired[k].se for k in paired if paired[k].se > 0}
    changed = [k for k in paired if outcome(paired[k]) != outcome(unpaired[k])]
    if ratio:
        lo, hi = min(ratio.values()), max(ratio.values())
        span = f"{lo:.1f}" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f} to {hi:.1f}"
        text = f"Here the unpaired standard error is {span} times the paired one. "
        helped = [k for k, x in ratio.items() if x > 1 + tolerance]
        same = [k for k, x in ratio.items() if abs(x - 1) <= tolerance]
        hurt = [k for k, x in ratio.items() if x < 1 - tolerance]
        if helped:
            text += (f"For {_names(helped)}, pairing removes the prompt-to-prompt variation the two policies share, "
                     "so the same data give a tighter verdict. ")  # fmt: skip
        if same:
            text += (f"For {_names(same)} it makes no difference: the two policies' per-prompt scores are nearly "
                     "uncorrelated. ")
        if hurt:
            text += f"For {_names(hurt)} pairing widens the error: the per-prompt scores are negatively correlated. "
    else:
        text = "Every paired difference has zero spread here, so no ratio of standard errors is defined. "
    which = f" ({_names(changed)})" if changed else ""
    counted = count_phrase(len(changed), len(paired), noun)
    return text + f"Judged with the unpaired error, the verdict on {counted} would change{which}."

# --- chapter 3 (WARP): front points, task-vector geometry, the paper's prediction beside a verdict


def eval_result(point: Mapping[str, Any]):
    """An ``EvalResult`` back from its ``to_dict()`` (extra keys, such as a front point's
    ``eta``, are ignored), so that ``per_prompt`` and ``figures.front`` take it."""
    import dataclasses

    from rsoup_lib.evaluate import EvalResult

    return EvalResult(**{f.name: point[f.name] for f in dataclasses.fields(EvalResult) if f.name in point})


def liti_front(config, slerp_policy: str, etas: Sequence[float], at_zero=None) -> list:
    """The LITI front (1 - eta) theta_sft + eta theta_slerp (``warp.evaluate_front``) as one
    ``EvalResult`` per eta, in the order of ``etas``. At eta = 0 the point is the SFT policy
    itself, bit for bit: ``at_zero``, its evaluation on the same prompts and seed, is reused there
    instead of being computed again (None: evaluate it like the other points)."""
    from rsoup_lib.warp import evaluate_front

    if at_zero is not None and (at_zero.n != config.eval_prompts or at_zero.seed != config.eval_seed):
        raise ValueError(
            f"at_zero was evaluated on n={at_zero.n}, seed={at_zero.seed}; the front uses "
            f"n={config.eval_prompts}, seed={config.eval_seed}: the points would not pair by prompt"
        )
    reuse = at_zero is not None
    todo = tuple(e for e in etas if not (reuse and e == 0))
    done = {p["eta"]: eval_result(p) for p in evaluate_front(config, slerp_policy, todo)} if todo else {}
    return [at_zero if reuse and e == 0 else done[e] for e in etas]


def task_vectors(init: Mapping[str, Any], models: Sequence[Mapping[str, Any]]) -> list[dict]:
    """delta_m = theta_m - theta_init in float32, over the floating-point tensors of ``init``."""
    keys = [k for k, t in init.items() if t.is_floating_point()]
    return [{k: m[k].float() - init[k].float() for k in keys} for m in models]


def _flat(d: Mapping[str, Any]):
    import torch

    return torch.cat([t.reshape(-1).float() for t in d.values()])


def task_vector_norm(d: Mapping[str, Any]) -> float:
    """The norm of a task vector flattened over all its tensors."""
    return float(_flat(d).norm())


def whole_model_cosine(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """cos of the angle between two task vectors flattened over all their tensors (NaN when one
    of them is zero: no angle exists)."""
    fa, fb = _flat(a), _flat({k: b[k] for k in a})
    na, nb = float(fa.norm()), float(fb.norm())
    return float(fa @ fb) / (na * nb) if na > 0 and nb > 0 else float("nan")


def angles_per_tensor(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[float]:
    """The angle in degrees between a[k] and b[k] for every tensor k that is non-zero in both."""
    import math

    out = []
    for k, x in a.items():
        x, y = x.reshape(-1).double(), b[k].reshape(-1).double()
        nx, ny = float(x.norm()), float(y.norm())
        if nx > 0 and ny > 0:
            out.append(math.degrees(math.acos(max(-1.0, min(1.0, float(x @ y) / (nx * ny))))))
    return out


def tensor_angles(init: Mapping[str, Any], models: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Per tensor, in degrees, the angle between the task vectors of two models (``"task
    vectors"``) and between their full weights (``"weights"``), over the tensors that both runs
    moved (a tensor no run changed would show a full-weight angle of 0 for no reason)."""
    d1, d2 = task_vectors(init, models[:2])
    moved = [k for k in d1 if float(d1[k].norm()) > 0 and float(d2[k].norm()) > 0]
    weights = [{k: m[k].float() for k in moved} for m in models[:2]]
    return {"task vectors": angles_per_tensor({k: d1[k] for k in moved}, d2), "weights": angles_per_tensor(*weights)}


def lerp_norm_ratio(cos: float, lam: float) -> float:
    """|(1 - lam) delta_1 + lam delta_2| / |delta_1| for two task vectors of equal norm at angle
    Omega, cos Omega = ``cos``: sqrt(1 - 2 (1 - cos Omega)(lam - lam^2)) (chapter 3, stage b)."""
    import math

    if math.isnan(cos):
        return float("nan")
    return math.sqrt(max(0.0, 1.0 - 2.0 * (1.0 - cos) * (lam - lam * lam)))


def merged_norms(init: Mapping[str, Any], models: Sequence[Mapping[str, Any]], lams: Sequence[float]) -> dict:
    """For each lambda, |merge(lambda) - theta_init| / |delta_1| for ``merge.slerp`` and
    ``merge.lerp`` of two models: ``{"slerp": [...], "lerp": [...]}`` (NaN if delta_1 = 0)."""
    from rsoup_lib.merge import lerp, slerp

    (d1,) = task_vectors(init, models[:1])
    n1 = task_vector_norm(d1)
    out = {"slerp": [], "lerp": []}
    for lam in lams:
        merged = {"slerp": slerp(init, models, lam=float(lam)), "lerp": lerp(models, [1 - float(lam), float(lam)])}
        for method, state in merged.items():
            (d,) = task_vectors(init, [state])
            out[method].append(task_vector_norm(d) / n1 if n1 > 0 else float("nan"))
    return out


AGREEMENT = {
    "holds": "this build agrees: the difference is more than two standard errors in the paper's direction",
    "opposite": "this build disagrees: it measures the opposite, by more than two standard errors",
    "not confirmed": "this build can neither confirm nor contradict it: the difference is within two standard "
                     "errors of zero, so at this scale the measurement cannot tell",
    "untested": "this build could not test it",
}  # fmt: skip


def agreement(v, paper: str) -> str:
    """The sentence that follows a verdict: what the paper reports (``paper``) and whether this
    build agrees, worded from ``v.outcome`` (never fixed text)."""
    said = AGREEMENT[v.outcome]
    if v.outcome == "untested":
        said += f" ({v.estimate.note or 'nothing was measured'})"
    return f"{paper}; {said}."


def show_verdict(v, paper: str) -> None:
    """One verdict line (``Verdict [id]: outcome — ...``), then ``agreement(v, paper)``."""
    markdown(f"{v}\n\n*The paper.* {agreement(v, paper)}")


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
        "holds": f"the estimate {e} is more than two standard errors above zero",
        "not confirmed": f"the estimate {e} is within two standard errors of zero",
        "opposite": f"the estimate {e} is more than two standard errors below zero",
    }
    agrees = "agrees with" if v.outcome in consistent else "does not agree with"
    return f"The paper predicts {predicts}. Here {readings[v.outcome]}, so this build {agrees} it."



# --- chapter 5 (group-invariant RLHF)


def group_table(results: Mapping[str, Any], labels: Sequence[str], reward: str, holdout: str,
                train_groups: Sequence[str]):  # fmt: skip
    """One row per policy: its mean reward ± se on each hidden group's prompts (the held-out
    group marked), its worst training group, and its KL to SFT."""
    from rsoup_lib.evaluate import by_label
    from rsoup_lib.group_robust import worst_group

    rows = []
    for name, res in results.items():
        per = by_label(res, labels)[reward]
        row = {"policy": name}
        for g, r in per.items():
            row[g + (" (held out)" if g == holdout else "")] = f"{r['mean']:+.3f} ± {r['stderr']:.3f}"
        row["worst training group"] = f"{worst_group(res.scores(reward), labels, train_groups):+.3f}"
        row["KL to SFT"] = f"{res.kl_to_sft:.2f}" if res.kl_to_sft is not None else "—"
        rows.append(row)
    return table(rows, index="policy")


def shortcut_sentence(changes: Mapping[str, Any], before: str) -> str:
    """What plain RL did to each group (``changes``: group -> paired Estimate against SFT),
    worded from the estimates: which groups gained and lost by more than two standard errors."""
    up = [g for g, e in changes.items() if e.value > 2 * e.se]
    down = [g for g, e in changes.items() if e.value < -2 * e.se]
    text = "Plain RLOO changed the groups' rewards by " + ", ".join(f"{g} {e.value:+.3f}" for g, e in changes.items()) + ". "
    if up and down:
        text += (f"It gained on {', '.join(up)} and lost on {', '.join(down)} by more than two standard errors: "
                 "the shortcut the paper describes is visible before any fix.")  # fmt: skip
    elif down:
        text += f"It lost on {', '.join(down)} and gained nowhere by more than two standard errors."
    elif up:
        text += (f"It gained on {', '.join(up)} and lost nowhere by more than two standard errors: no group was "
                 "clearly sacrificed, so the shortcut is at most a difference in how much each group gained.")
    else:
        rising = [g for g, e in changes.items() if e.value > 0]
        falling = [g for g, e in changes.items() if e.value < 0]
        text += ("No group moved by more than two standard errors at this budget, so the shortcut is not demonstrated "
                 "here; the point estimates " + (f"rise on {', '.join(rising)}" if rising else "rise nowhere")
                 + (f" and fall on {', '.join(falling)}." if falling else " and fall nowhere."))  # fmt: skip
    return text + f" At the start the hardest training group was `{before}`."
