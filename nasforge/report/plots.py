"""The report's plots, each drawn from stored trials and returned as PNG bytes.

matplotlib is imported inside the functions (plotting stays a light, lazy dependency) and draws
with the Agg canvas on its own ``Figure``: no pyplot, no global figure state, no display needed.
A function returns ``None`` when the study holds nothing for its plot.
"""
from __future__ import annotations

import io
from typing import Any, Callable, Mapping, Sequence

from nasforge.report.pareto import candidates
from nasforge.store.base import Trial
from nasforge.types import Metrics, TrialState, finite

_BLUE, _RED, _GREY, _ORANGE = "#1f77b4", "#d62728", "#9a9a9a", "#ff7f0e"


def _figure(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7.0, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _value(metrics: Mapping[str, Any], metric: str) -> float | None:
    return finite(metrics.get(metric))


def _log_if_wide(ax: Any, axis: str, values: Sequence[float], ratio: float = 100.0) -> None:
    """A log scale for positive values whose largest is more than ``ratio`` times the smallest."""
    if values and min(values) > 0 and max(values) / min(values) > ratio:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def _better(direction: str) -> str:
    return "lower is better" if direction == "min" else "higher is better"


def trajectory_png(trials: list[Trial], metric: str, mode: str = "min",
                   value: Callable[[Trial], float | None] | None = None) -> bytes | None:
    """The objective of each evaluated trial in creation order, and the best so far among
    complete trials (among all evaluated trials when none is complete). ``value`` reads a
    trial's objective (default: its ``metric``); ``metric`` names it on the axis."""
    read = value or (lambda t: _value(t.metrics, metric))
    order = sorted(trials, key=lambda t: (t.created_at or 0.0, t.id))
    values = {t.id: read(t) for t in order if t.state is not TrialState.FAILED}
    scored = [t for t in order if values.get(t.id) is not None]
    if not scored:
        return None
    fig, ax = _figure(f"Search trajectory ({len(scored)} of {len(trials)} trials evaluated)",
                      "trial (creation order)", f"{metric} ({_better(mode)})")
    complete = [t for t in scored if t.state is TrialState.COMPLETE]
    rest = [t for t in scored if t.state is not TrialState.COMPLETE]
    if rest:
        ax.scatter([t.id for t in rest], [values[t.id] for t in rest], s=16, c=_GREY,
                   label="stopped at a lower budget")
    ax.scatter([t.id for t in complete], [values[t.id] for t in complete], s=22, c=_BLUE, label="complete trial")
    line = complete or scored
    pick = min if mode == "min" else max
    best, best_so_far = [], None
    for t in line:
        best_so_far = values[t.id] if best_so_far is None else pick(best_so_far, values[t.id])
        best.append(best_so_far)
    ax.step([t.id for t in line], best, where="post", c=_RED, lw=1.8, label="best so far")
    window = max(5, len(line) // 10)
    if len(line) >= 2 * window:  # shows whether the search samples better on the whole (e.g. RL controllers)
        ys = [values[t.id] for t in line]
        means = [sum(ys[i - window:i]) / window for i in range(window, len(ys) + 1)]
        ax.plot([t.id for t in line[window - 1:]], means, c=_ORANGE, lw=1.5, label=f"mean of the last {window}")
    ax.legend(loc="best")
    return _png(fig)


def learning_curves_png(curves: Mapping[int, list[Metrics]], metric: str = "val_loss") -> bytes | None:
    """``metric`` per epoch for each trial in ``curves`` (trial id -> the store's curve), in the
    given order (best first)."""
    drawn = {tid: [(p.get("epoch", i + 1), _value(p, metric)) for i, p in enumerate(c)] for tid, c in curves.items()}
    drawn = {tid: [(x, y) for x, y in pts if y is not None] for tid, pts in drawn.items()}
    drawn = {tid: pts for tid, pts in drawn.items() if pts}
    if not drawn:
        return None
    fig, ax = _figure(f"Learning curves (top {len(drawn)} trials)", "epoch", metric)
    for tid, pts in drawn.items():
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", ms=3, lw=1.4, label=f"trial {tid}")
    ax.legend(loc="best", fontsize="small", ncol=2 if len(drawn) > 5 else 1)
    return _png(fig)


def pareto_png(trials: list[Trial], metrics: tuple[str, str], directions: Sequence[str],
               front: Sequence[Trial]) -> bytes | None:
    """Every trial with both metrics, the Pareto-optimal ones highlighted and joined by the
    boundary of the region they dominate."""
    pool = candidates(trials, metrics)
    if not pool:
        return None
    (mx, my), front_ids = metrics, {t.id for t in front}
    pool_ids = {t.id for t in pool}
    lower = [t for t in trials if t.id not in pool_ids and t.state is not TrialState.FAILED
             and _value(t.metrics, mx) is not None and _value(t.metrics, my) is not None]
    fig, ax = _figure(f"Pareto front: {mx} vs {my}", f"{mx} ({_better(directions[0])})",
                      f"{my} ({_better(directions[1])})")
    if lower:
        ax.scatter([t.metrics[mx] for t in lower], [t.metrics[my] for t in lower], s=14, c=_GREY, alpha=0.6,
                   label="stopped at a lower budget")
    others = [t for t in pool if t.id not in front_ids]
    ax.scatter([t.metrics[mx] for t in others], [t.metrics[my] for t in others], s=22, c=_BLUE, label="dominated")
    best = sorted(front, key=lambda t: (t.metrics[mx], t.metrics[my]))
    xs, ys = [t.metrics[mx] for t in best], [t.metrics[my] for t in best]
    ax.step(xs, ys, where="post" if directions[0] == "min" else "pre", c=_RED, lw=1.2, alpha=0.7)
    ax.scatter(xs, ys, s=46, c=_RED, edgecolors="black", linewidths=0.6, zorder=3, label="Pareto-optimal")
    if len(best) <= 15:
        for i, t in enumerate(best):  # labels alternate above and below: neighbours on the front sit close
            ax.annotate(f"#{t.id}", (t.metrics[mx], t.metrics[my]), textcoords="offset points",
                        xytext=(5, 4 if i % 2 == 0 else -11), fontsize="x-small")
    _log_if_wide(ax, "x", [t.metrics[mx] for t in pool])
    _log_if_wide(ax, "y", [t.metrics[my] for t in pool])
    ax.legend(loc="best")
    return _png(fig)


def rungs_png(trials: list[Trial], metric: str) -> bytes | None:
    """Multi-fidelity studies: ``metric`` at each rung (budget) a trial reached, a trial's rungs
    joined; coloured by how the trial ended. None when every result is at one budget."""
    runs = [(t, [(r["budget"], _value(r["metrics"], metric)) for r in t.rungs]) for t in trials]
    runs = [(t, [(b, y) for b, y in pts if y is not None]) for t, pts in runs]
    runs = [(t, pts) for t, pts in runs if pts]
    budgets = sorted({b for _, pts in runs for b, _ in pts})
    if len(budgets) < 2:
        return None
    fig, ax = _figure(f"Rungs: {metric} by budget ({len(runs)} trials)", "budget (epochs)", metric)
    colours = {TrialState.COMPLETE: _BLUE, TrialState.PRUNED: _GREY, TrialState.PAUSED: _ORANGE}
    for t, pts in runs:
        if len(pts) > 1:
            ax.plot([b for b, _ in pts], [y for _, y in pts], c=colours.get(t.state, _ORANGE), lw=0.7, alpha=0.5)
    for state in sorted({t.state for t, _ in runs}, key=lambda s: list(TrialState).index(s)):
        pts = [p for t, ps in runs if t.state is state for p in ps]
        ax.scatter([b for b, _ in pts], [y for _, y in pts], s=18, c=colours.get(state, _ORANGE), label=state.value,
                   zorder=3)
    _log_if_wide(ax, "x", budgets, ratio=10.0)
    ax.legend(loc="best", title="trial ended")
    return _png(fig)
