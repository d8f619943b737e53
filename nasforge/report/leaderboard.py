"""Leaderboard and status summaries read from a study's store."""
from __future__ import annotations

from collections import Counter
from typing import Any

from nasforge.errors import visible
from nasforge.report.pareto import pareto_metrics, pareto_trials
from nasforge.store.base import Trial
from nasforge.results import best_trial
from nasforge.types import TrialState


def ranked(trials: list[Trial]) -> list[Trial]:
    """Trials with a result, best first: complete ones by loss, then the rest by budget and loss."""
    scored = [t for t in trials if t.loss is not None and t.state is not TrialState.FAILED]
    return sorted(scored, key=lambda t: (t.state is not TrialState.COMPLETE, -t.budget_used, t.loss, t.id))


def terminal_safe(value: Any) -> str:
    """:func:`visible`, with rich's markup escaped too, for text printed through rich."""
    from rich.markup import escape
    return escape(visible(value))


def arch_summary(arch: dict[str, Any], limit: int = 60) -> str:
    """Compact text: numbered labels fold into lists (width_0, width_1 -> width=[.., ..])."""
    parts: dict[str, Any] = {}
    for label, value in arch.items():
        stem, _, index = label.rpartition("_")
        if stem and index.isdigit():
            parts.setdefault(stem, []).append(value)
        else:
            parts[label] = value
    text = " ".join(f"{k}={'[' + ','.join(map(str, v)) + ']' if isinstance(v, list) else v}" for k, v in parts.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_json(trials: list[Trial], objective: dict[str, Any] | None, meta: dict[str, Any],
                pareto_spec: Any = None) -> dict[str, Any]:
    """The study as JSON. ``pareto`` (the ids of the Pareto-optimal trials) and ``pareto_metrics``
    are there when two metrics are (choice: :mod:`nasforge.report.pareto`; ``pareto_spec`` is the
    study's meta ``"pareto"``)."""
    best = best_trial(trials)
    out = {
        "objective": objective,
        "counts": dict(Counter(t.state.value for t in trials)),
        "trials": [t.to_json() for t in trials],
        "best": best.to_json() if best else None,
        **meta,
    }
    choice = pareto_metrics(trials, objective, pareto_spec)
    if choice is not None:
        out["pareto"] = [t.id for t in pareto_trials(trials, *choice)]
        out["pareto_metrics"] = {"metrics": list(choice[0]), "directions": list(choice[1])}
    return out


_PREFERRED = ("val_accuracy", "val_loss", "latency_ms", "params", "flops")
_HIDDEN = ("epoch", "train_seconds", "train_loss", "best_val_loss", "latency_median_ms", "latency_spread")


def metric_columns(trials: list[Trial], metric: str, limit: int = 3) -> list[str]:
    """The metrics worth a column beside the objective: the well-known ones first, then the
    evaluator's own, those the trials have."""
    present = {k for t in trials for k in t.metrics}
    others = sorted(present - set(_PREFERRED) - set(_HIDDEN))
    return [m for m in (*_PREFERRED, *others) if m in present and m != metric][:limit]


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.4g}"


def leaderboard_table(trials: list[Trial], metric: str, top: int = 10) -> Any:
    from rich.table import Table
    best = ranked(trials)[:top]
    columns = metric_columns(best, metric)
    table = Table(title=f"Leaderboard (top {len(best)} of {len(trials)} trials)")
    for col in ("trial", "state", metric, *columns, "epochs"):
        table.add_column(terminal_safe(col), justify="left" if col == "state" else "right", no_wrap=True)
    table.add_column("architecture", overflow="fold", min_width=24)
    for t in best:
        table.add_row(str(t.id), t.state.value, f"{t.metrics.get(metric, float('nan')):.4f}",
                      *(_cell(t.metrics.get(c)) for c in columns), f"{t.budget_used:g}", terminal_safe(arch_summary(t.arch)))
    return table
