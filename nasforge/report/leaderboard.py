"""Leaderboard and status summaries read from a study's store."""
from __future__ import annotations

from collections import Counter
from typing import Any

from nasforge.report.pareto import pareto_metrics, pareto_trials
from nasforge.store.base import Trial
from nasforge.study import best_trial
from nasforge.types import TrialState


def ranked(trials: list[Trial]) -> list[Trial]:
    """Trials with a result, best first: complete ones by loss, then the rest by budget and loss."""
    scored = [t for t in trials if t.loss is not None and t.state is not TrialState.FAILED]
    return sorted(scored, key=lambda t: (t.state is not TrialState.COMPLETE, -t.budget_used, t.loss, t.id))


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


def leaderboard_table(trials: list[Trial], metric: str, top: int = 10) -> Any:
    from rich.table import Table
    table = Table(title=f"Leaderboard (top {min(top, len(ranked(trials)))} of {len(trials)} trials)")
    for col in ("trial", "state", metric, "val_acc", "epochs", "params"):
        table.add_column(col, justify="left" if col == "state" else "right", no_wrap=True)
    table.add_column("architecture", overflow="fold", min_width=24)
    for t in ranked(trials)[:top]:
        acc = t.metrics.get("val_accuracy")
        params = t.metrics.get("params")
        table.add_row(str(t.id), t.state.value, f"{t.metrics.get(metric, float('nan')):.4f}",
                      f"{acc:.3f}" if acc is not None else "-", f"{t.budget_used:g}",
                      f"{int(params):,}" if params is not None else "-", arch_summary(t.arch))
    return table
