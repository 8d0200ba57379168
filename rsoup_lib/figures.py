"""Plotly figures with the book's conventions, so the chapters keep only what they plot.

Conventions: every figure has a title and axis titles; legends sit below the plot (they never
cover data or overlap subplot titles); error bars are one standard error over prompts; the KL
axis is always "KL to the SFT policy (nats)". Colours come from one palette, indexed by series.

    fig = figures.new("EMA vs SFT anchor", x="KL to the SFT policy (nats)", y="reward")
    figures.line(fig, xs, ys, "EMA anchor", err_y=ses, color=figures.color(0))
    fig.show()

``xy(results, "kl", "sentiment")`` turns a list of evaluations (``EvalResult``) into the four
series a front needs: x, y and their standard errors.
"""

from __future__ import annotations

from typing import Any, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

KL_AXIS = "KL to the SFT policy (nats)"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
LEGEND_BELOW = dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0.0)


def color(i: int) -> str:
    """The i-th colour of the book's palette (cycling)."""
    return PALETTE[i % len(PALETTE)]


def _style(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left"), height=height, legend=LEGEND_BELOW,
                      margin=dict(l=60, r=20, t=70, b=90), template="plotly_white")  # fmt: skip
    return fig


def new(title: str, x: str, y: str, height: int = 440) -> go.Figure:
    """An empty figure with the book's layout."""
    fig = go.Figure()
    fig.update_xaxes(title_text=x)
    fig.update_yaxes(title_text=y)
    return _style(fig, title, height)


def grid(title: str, subplot_titles: Sequence[str], height: int = 420, shared_yaxes: bool = False,
         specs: Any = None) -> go.Figure:  # fmt: skip
    """Side-by-side panels (one row) with the book's layout."""
    fig = make_subplots(rows=1, cols=len(subplot_titles), subplot_titles=list(subplot_titles),
                        shared_yaxes=shared_yaxes, specs=specs, horizontal_spacing=0.08)  # fmt: skip
    return _style(fig, title, height)


def line(
    fig: go.Figure, x, y, name: str, *, err_x=None, err_y=None, color: str | None = None, dash: str | None = None,
    mode: str = "lines+markers", text=None, symbol: str = "circle", size: int = 7, showlegend: bool = True,
    row: int | None = None, col: int | None = None, **scatter: Any,
) -> go.Figure:  # fmt: skip
    """Add one series (with optional error bars; ``text`` shows on hover)."""
    trace = go.Scatter(
        x=list(x), y=list(y), name=name, mode=mode, text=text, showlegend=showlegend, legendgroup=name,
        line=dict(color=color, dash=dash), marker=dict(color=color, symbol=symbol, size=size),
        error_x=dict(type="data", array=list(err_x), thickness=1) if err_x is not None else None,
        error_y=dict(type="data", array=list(err_y), thickness=1) if err_y is not None else None,
        **scatter,
    )  # fmt: skip
    fig.add_trace(trace, row=row, col=col)
    return fig


def xy(results: Sequence[Any], x: str, y: str) -> tuple[list, list, list, list]:
    """(x, y, x standard errors, y standard errors) of evaluations; a name is a reward or "kl"."""

    def mean_se(res, name):
        if name == "kl":
            return res.kl_to_sft, res.kl_to_sft_stderr
        return res.rewards[name]["mean"], res.rewards[name]["stderr"]

    xs = [mean_se(r, x) for r in results]
    ys = [mean_se(r, y) for r in results]
    return [m for m, _ in xs], [m for m, _ in ys], [s for _, s in xs], [s for _, s in ys]


def front(fig: go.Figure, results: Sequence[Any], x: str, y: str, name: str, labels: Sequence[str] | None = None,
          **style: Any) -> go.Figure:  # fmt: skip
    """Add a front (a list of evaluations, in order) with error bars in both directions."""
    xs, ys, ex, ey = xy(results, x, y)
    return line(fig, xs, ys, name, err_x=ex, err_y=ey, text=list(labels) if labels else None, **style)


def histogram(fig: go.Figure, values, name: str, nbins: int = 30, color: str | None = None) -> go.Figure:
    """Add an overlaid, semi-transparent histogram."""
    fig.add_histogram(x=list(values), name=name, nbinsx=nbins, opacity=0.65, marker_color=color)
    fig.update_layout(barmode="overlay")
    return fig


# --- chapter 1 (and chapter 0)


def smoothed(x, y, window: int = 10) -> tuple[list, list]:
    """``(x, verdicts.smooth(y, window))`` with x cut to match: the moving average over the
    ``window`` values ending at x[i] is plotted at x[i] (the first window - 1 points have none)."""
    from rsoup_lib.verdicts import smooth

    ys = list(smooth(list(y), window))
    xs = list(x)
    return xs[len(xs) - len(ys) :], ys


def bars(fig: go.Figure, x, y, name: str, color: str | None = None, **bar: Any) -> go.Figure:
    """Add one bar series (stack them with ``fig.update_layout(barmode="stack")``)."""
    fig.add_bar(x=list(x), y=list(y), name=name, marker_color=color, **bar)
    return fig


def learning_curves(metrics: dict, window: int = 10,
                    title: str = "One RL run per reward, same init and hyperparameters") -> go.Figure:  # fmt: skip
    """Two panels over training steps for runs ``{reward: metrics}`` (a run's ``read_metrics``
    as a table or a dict of columns): the trained reward and the KL to SFT, both on the
    training samples and smoothed over ``window`` steps."""
    fig = grid(title, ["trained reward (training samples)", "KL to SFT (nats, training samples)"])
    for i, (r, m) in enumerate(metrics.items()):
        line(fig, *smoothed(m["step"], m[f"reward/{r}"], window), r, color=color(i), mode="lines", row=1, col=1)
        line(fig, *smoothed(m["step"], m["kl_sft"], window), r, color=color(i), mode="lines", showlegend=False,
             row=1, col=2)  # fmt: skip
    fig.update_xaxes(title_text="step")
    return fig


def kl_reward_trajectories(metrics: dict, window: int = 10) -> go.Figure:
    """Each run ``{reward: metrics}`` in the (KL to SFT, trained reward) plane, the reward
    rescaled to [0, 1] by its documented range so that runs on different rewards share an axis;
    both coordinates smoothed over ``window`` steps, the step on hover."""
    from rsoup_lib.rewards import get_reward

    fig = new("KL-reward trajectories", x="KL to SFT (nats, training samples)",
              y="trained reward, rescaled to [0, 1]", height=460)  # fmt: skip
    for i, (r, m) in enumerate(metrics.items()):
        reward = get_reward(r)
        steps, kl = smoothed(m["step"], m["kl_sft"], window)
        _, y = smoothed(m["step"], m[f"reward/{r}"], window)
        scaled = [(v - reward.low) / (reward.high - reward.low) for v in y]
        line(fig, kl, scaled, r, color=color(i), size=4, text=[f"step {s}" for s in steps])
    return fig

# --- chapter 3


def training_path(fig: go.Figure, metrics: Sequence[dict], name: str, x: str = "kl_sft", y: str = "reward",
                  window: int = 10, **style: Any) -> go.Figure:  # fmt: skip
    """A run's training-batch estimates (``metrics.jsonl`` rows) in the (x, y) plane, each a
    moving average over ``window`` steps (``verdicts.smooth``); drawn as a line without markers."""
    from rsoup_lib.verdicts import smooth

    xs, ys = smooth([r[x] for r in metrics], window), smooth([r[y] for r in metrics], window)
    return line(fig, xs, ys, name, mode="lines", **style)


def axis_titles(fig: go.Figure, titles: Sequence[tuple[str, str]]) -> go.Figure:
    """(x title, y title) for each panel of a one-row grid, left to right."""
    for col, (x, y) in enumerate(titles, 1):
        fig.update_xaxes(title_text=x, row=1, col=col)
        fig.update_yaxes(title_text=y, row=1, col=col)
    return fig


def merges_by_lambda(title: str, lams: Sequence[float], curves: dict[str, Sequence[Any]], reward: str) -> go.Figure:
    """Merges of two policies over lambda (``curves``: method name -> one evaluation per lambda):
    reward by lambda, KL to SFT by lambda, and reward against KL, one colour per method."""
    fig = grid(title, ["reward by λ", "KL to the SFT policy by λ", "reward against KL"])
    for i, (method, results) in enumerate(curves.items()):
        kl, r, kl_se, r_se = xy(results, "kl", reward)
        c, name = color(len(curves) - 1 - i), method.upper()
        line(fig, lams, r, name, err_y=r_se, color=c, row=1, col=1)
        line(fig, lams, kl, name, err_y=kl_se, color=c, showlegend=False, row=1, col=2)
        line(fig, kl, r, name, err_x=kl_se, err_y=r_se, color=c, showlegend=False, row=1, col=3,
             text=[f"λ = {x:.2f}" for x in lams])  # fmt: skip
    return axis_titles(fig, [("λ", f"{reward} reward"), ("λ", KL_AXIS), (KL_AXIS, f"{reward} reward")])


def task_vector_geometry(lams: Sequence[float], norms: dict[str, Sequence[float]], formula: Sequence[float],
                         angles: dict[str, Sequence[float]]) -> go.Figure:  # fmt: skip
    """Left: the norm of the merged task vector over lambda (measured for SLERP and LERP, and the
    LERP formula); right: histograms of the angles per tensor (``angles``: label -> degrees)."""
    fig = grid("The two runs' task vectors", ["norm of the merged task vector / ‖δ₁‖", "angles per tensor"])
    line(fig, lams, norms["slerp"], "SLERP (measured)", color=color(1), row=1, col=1)
    line(fig, lams, norms["lerp"], "LERP (measured)", color=color(0), row=1, col=1)
    line(fig, lams, formula, "LERP (formula, equal norms)", color=color(0), dash="dot", mode="lines", row=1, col=1)
    for i, (label, values) in enumerate(angles.items()):
        fig.add_histogram(x=list(values), name=f"{label} ({len(values)} tensors)", nbinsx=30, opacity=0.65,
                          marker_color=color(2 + i), row=1, col=2)  # fmt: skip
    fig.update_layout(barmode="overlay")
    return axis_titles(fig, [("λ", "relative norm"), ("angle (degrees)", "tensors")])


# --- chapter 2 (rewarded soups) ----------------------------------------------------------------


def lmc(title: str, lambdas: Sequence[float], panels: dict, height: int = 440) -> go.Figure:
    """The linear-mode-connectivity check, one panel per reward: the soup's reward over lambda
    (± one standard error), the straight line between its endpoints' rewards, and the LMC gap
    per lambda as bars with their paired standard errors. ``panels``:
    ``{reward: (means, standard errors, gaps)}``, one value per lambda, ``gaps`` as
    ``rsoup_lib.stats.Estimate``."""
    fig = grid(title, [f"{r}: soup vs straight line" for r in panels], height=height)
    for c, (means, ses, gaps) in enumerate(panels.values(), 1):
        first = c == 1
        chord = [(1 - lam) * means[0] + lam * means[-1] for lam in lambdas]
        line(fig, lambdas, means, "soup θ(λ)", err_y=ses, color=color(0), showlegend=first, row=1, col=c)
        line(fig, lambdas, chord, "straight line", color=color(7), dash="dash", mode="lines", showlegend=first, row=1, col=c)
        bars(fig, lambdas, [g.value for g in gaps], "gap (paired ± se)", color=color(1), opacity=0.45,
             error_y=dict(type="data", array=[g.se for g in gaps], thickness=1), legendgroup="gap",
             showlegend=first, row=1, col=c)  # fmt: skip
    fig.update_xaxes(title_text="λ")
    fig.update_yaxes(title_text="held-out reward", col=1)
    return fig


def ternary(title: str, weights: Sequence[Sequence[float]], results: Sequence[Any], rewards: Sequence[str],
            ring: Sequence[bool] | None = None, panel_height: int = 340) -> go.Figure:  # fmt: skip
    """Evaluations of points of the simplex (``weights``: one (a, b, c) per evaluation in
    ``results``), one ternary panel per reward, one panel per row (three side by side are too
    small to read in the book's column), each coloured by the reward's held-out mean with the
    value written beside each point (hover: the weights and mean ± se). Each corner is labelled
    with its reward (the corner is that reward's specialist); ``ring`` circles points in red (e.g. the
    Pareto-optimal ones)."""
    n = len(rewards)
    fig = make_subplots(rows=n, cols=1, specs=[[{"type": "ternary"}] for _ in range(n)],
                        subplot_titles=[f"coloured by {r}" for r in rewards], vertical_spacing=0.12 / max(n - 1, 1) * 2)  # fmt: skip
    ring = list(ring) if ring is not None else [False] * len(weights)
    where = [f"λ = ({', '.join(f'{x:.2f}' for x in w)})" for w in weights]
    for c, r in enumerate(rewards, 1):
        values = [res.rewards[r]["mean"] for res in results]
        hover = [f"{w}<br>{r} = {res.rewards[r]['mean']:+.3f} ± {res.rewards[r]['stderr']:.3f}" for w, res in zip(where, results)]
        fig.add_trace(go.Scatterternary(
            a=[w[0] for w in weights], b=[w[1] for w in weights], c=[w[2] for w in weights],
            mode="markers+text", text=[f"{v:+.2f}" for v in values], textposition="middle right",
            textfont=dict(size=10), hovertext=hover, hoverinfo="text", showlegend=False, cliponaxis=False,
            marker=dict(size=12, color=values, colorscale="Viridis", showscale=False,
                        line=dict(width=[2.5 if x else 0 for x in ring], color="red")),
        ), c, 1)  # fmt: skip
    for i in range(1, n + 1):  # invisible tick labels keep each corner's name clear of its marker
        axis = dict(showticklabels=True, tickfont=dict(color="rgba(0,0,0,0)"), ticks="", linecolor="#888")
        fig.layout[f"ternary{'' if i == 1 else i}"].update(
            sum=1, **{f"{k}axis": dict(title=dict(text=t, font=dict(size=12)), **axis) for k, t in zip("abc", rewards)}
        )  # fmt: skip
    for annotation in fig.layout.annotations:  # subplot titles above the top corner's label
        annotation.update(yshift=30, font=dict(size=13))
    _style(fig, title, panel_height * n + 100)
    fig.update_layout(margin=dict(l=60, r=60, t=110, b=50))
    return fig


# --- chapter 5 (group-invariant RLHF)


def log_panels(title: str, panels: dict[str, dict[str, tuple[Sequence, Sequence]]], window: int = 10,
               x: str = "step") -> go.Figure:  # fmt: skip
    """One panel per key of ``panels``, each a ``{series: (steps, values)}`` of per-step logs,
    smoothed over ``window`` steps; a series keeps its colour (and one legend entry) across panels."""
    names = list(dict.fromkeys(name for series in panels.values() for name in series))
    fig, shown = grid(title, list(panels)), set()
    for j, series in enumerate(panels.values()):
        for name, (xs, ys) in series.items():
            line(fig, *smoothed(xs, ys, window), name, color=color(names.index(name)), mode="lines",
                 showlegend=name not in shown, row=1, col=j + 1)  # fmt: skip
            shown.add(name)
    fig.update_xaxes(title_text=x)
    return fig
