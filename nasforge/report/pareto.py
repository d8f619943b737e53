"""Pareto fronts over two (or more) metrics of a study's trials.

Which two metrics a report or ``nasforge status --json`` puts on the front (:func:`pareto_metrics`):

1. the study's meta key ``"pareto"`` when present, e.g.
   ``{"metrics": ["val_accuracy", "latency_ms"], "directions": ["max", "min"]}``;
2. else, when trials report ``latency_ms``: (the objective metric, ``latency_ms``), latency minimised;
3. else (the objective metric, ``params``), parameters minimised.

The objective keeps its own direction. There is no front when no trial has both metrics.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

from nasforge.errors import ConfigError
from nasforge.store.base import Trial
from nasforge.types import TrialState, finite

DIRECTIONS = ("min", "max")
PARETO_META_KEY = "pareto"


def _check_directions(directions: Sequence[str], n: int) -> None:
    if len(directions) != n:
        raise ValueError(f"Invalid directions {list(directions)!r}: need one per objective ({n})")
    for d in directions:
        if d not in DIRECTIONS:
            raise ValueError(f"Invalid direction {d!r}; allowed: 'min', 'max'")


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """The indices (ascending) of the points no other point dominates.

    ``a`` dominates ``b`` when it is at least as good in every objective and strictly better in
    one; ``directions`` says per objective whether lower (``"min"``) or higher (``"max"``) is
    better. Equal points do not dominate each other, so duplicates on the front are all kept.
    Values must be finite numbers.
    """
    _check_directions(directions, len(directions))
    signs = [1.0 if d == "min" else -1.0 for d in directions]
    keys: list[tuple[float, ...]] = []
    for i, p in enumerate(points):
        if len(p) != len(signs):
            raise ValueError(f"Invalid point {i}: {tuple(p)!r} has {len(p)} values, directions has {len(signs)}")
        if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in p):
            raise ValueError(f"Invalid point {i}: {tuple(p)!r}; values must be finite numbers")
        keys.append(tuple(s * float(v) for s, v in zip(signs, p)))
    # In lexicographic order a point can only be dominated by one before it, and then (by
    # transitivity) by a point already on the front: compare each point with the front only.
    front: list[int] = []
    for i in sorted(range(len(keys)), key=lambda j: keys[j]):
        if not any(_dominates(keys[j], keys[i]) for j in front):
            front.append(i)
    return sorted(front)


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Both minimised: ``a`` is no worse anywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and a != b


def _value(trial: Trial, metric: str) -> float | None:
    return finite(trial.metrics.get(metric))


def candidates(trials: list[Trial], metrics: Sequence[str]) -> list[Trial]:
    """The trials a front compares: complete ones with every metric (if none is complete, any
    trial evaluated, as :func:`nasforge.results.best_trial` does). Pruned trials stopped at lower
    budgets, so their metrics are not comparable with finished ones."""
    def usable(t: Trial) -> bool:
        return t.state is not TrialState.FAILED and all(_value(t, m) is not None for m in metrics)
    complete = [t for t in trials if t.state is TrialState.COMPLETE and usable(t)]
    return complete or [t for t in trials if usable(t)]


def pareto_trials(trials: list[Trial], metrics: tuple[str, str], directions: Sequence[str]) -> list[Trial]:
    """The Pareto-optimal trials (by id) among :func:`candidates` on the two ``metrics``."""
    _check_directions(directions, len(metrics))
    pool = candidates(trials, metrics)
    points = [tuple(_value(t, m) for m in metrics) for t in pool]
    return [pool[i] for i in pareto_front(points, directions)]  # type: ignore[arg-type]


def pareto_metrics(trials: list[Trial], objective: dict[str, Any] | None,
                   spec: Any = None) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """The (metrics, directions) of the study's front by the rule in this module's docstring,
    or None when no trial has both metrics. ``spec`` is the study's meta ``"pareto"`` value."""
    objective = objective or {"metric": "val_loss", "mode": "min"}
    if spec is not None:
        metrics, directions = _parse_spec(spec)
    else:
        second = "latency_ms" if any("latency_ms" in t.metrics for t in trials) else "params"
        metrics, directions = (objective["metric"], second), (objective["mode"], "min")
    if metrics[0] == metrics[1] or not candidates(trials, metrics):
        return None
    return metrics, directions


def _parse_spec(spec: Any) -> tuple[tuple[str, str], tuple[str, str]]:
    where = f"the study's meta {PARETO_META_KEY!r}"
    if not isinstance(spec, dict) or set(spec) - {"metrics", "directions"}:
        raise ConfigError(f"invalid {where}: {spec!r}; expected {{'metrics': [a, b], 'directions': ['min'|'max', ...]}}")
    metrics = spec.get("metrics")
    directions = spec.get("directions", ["min", "min"])
    if not (isinstance(metrics, list) and len(metrics) == 2 and all(isinstance(m, str) for m in metrics)):
        raise ConfigError(f"invalid {where}.metrics: {metrics!r}; expected two metric names")
    if not (isinstance(directions, list) and len(directions) == 2 and all(d in DIRECTIONS for d in directions)):
        raise ConfigError(f"invalid {where}.directions: {directions!r}; expected two of 'min', 'max'")
    return (metrics[0], metrics[1]), (directions[0], directions[1])
