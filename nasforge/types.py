"""Plain data types shared by every layer. Everything stored is JSON-serialisable."""
from __future__ import annotations

import enum
import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Union

JSONValue = Union[None, bool, int, float, str, list[Any], dict[str, Any]]
ArchDict = dict[str, Any]
"""An architecture: decision label -> value (int, float, str, or list of str). JSON-serialisable."""
Metrics = dict[str, float]


def arch_key(arch: ArchDict) -> str:
    """One string per architecture (JSON, sorted keys): for sets and dicts of architectures, and
    in saved strategy states."""
    return json.dumps(arch, sort_keys=True)


class TrialState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"  # finished a rung; the scheduler may resume it with more budget
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED)


@dataclass(frozen=True)
class Constraint:
    """A hardware (or any metric) target folded into the objective as MnasNet folds latency:
    ``objective x (value / target) ** w``, with ``w = soft_weight`` on both sides of the target
    (``kind="soft"``, the paper's w = -0.07), or ``w = 0`` under the target and ``hard_weight`` over
    it (``kind="hard"``, the paper's alpha = 0, beta = -1)."""

    metric: str = "latency_ms"
    target: float = 1.0
    kind: str = "soft"
    soft_weight: float = -0.07
    hard_weight: float = -1.0

    def __post_init__(self) -> None:
        if self.kind not in ("soft", "hard"):
            raise ValueError(f"Invalid constraint kind: {self.kind!r}; allowed: 'soft', 'hard'")
        if not self.target > 0:
            raise ValueError(f"Invalid constraint target: {self.target} (must be > 0)")

    def factor(self, value: float) -> float:
        w = self.soft_weight if self.kind == "soft" else (0.0 if value <= self.target else self.hard_weight)
        return (value / self.target) ** w


KNOWN_MODES = {"val_loss": "min", "best_val_loss": "min", "train_loss": "min", "val_rmse": "min", "val_accuracy": "max",
               "latency_ms": "min", "latency_median_ms": "min", "params": "min", "flops": "min"}
"""The metrics whose direction nasforge knows; any other objective needs an explicit mode."""


@dataclass(frozen=True)
class Objective:
    """Which metric the search optimises, in which direction, and an optional constraint (which
    needs a metric to maximise, e.g. accuracy: MnasNet's reward is accuracy x (latency/T)^w)."""

    metric: str = "val_loss"
    mode: str = "min"
    constraint: Constraint | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"Invalid objective mode: {self.mode!r}; allowed: 'min', 'max'")
        if self.constraint is not None and self.mode != "max":
            raise ValueError("an objective with a constraint must be maximised (e.g. val_accuracy, mode max)")

    def loss(self, metrics: Metrics) -> float | None:
        """The value to minimise, or None when a metric it needs is missing or not finite."""
        value = finite(metrics.get(self.metric))
        if value is None:
            return None
        if self.constraint is not None:
            measured = finite(metrics.get(self.constraint.metric))
            if measured is None or measured <= 0:
                return None
            value *= self.constraint.factor(measured)
        return value if self.mode == "min" else -value


def finite(value: Any) -> float | None:
    """A metric as a float, or None when it is missing, not a real number (a bool is not one), or
    not finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class Result:
    """What a strategy or scheduler is told about one evaluation of an architecture.

    ``loss`` is the objective turned into a value to minimise (``None`` when the trial failed),
    so strategies never need to know the metric's name or direction. ``resumed`` marks a later
    rung of an evaluation already told (a promoted trial continued): the same evaluation at a
    larger budget, not a new one.
    """

    metrics: Metrics
    loss: float | None
    budget: float
    failed: bool = False
    resumed: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and self.loss is not None


@dataclass
class EvalResult:
    """What an evaluator returns: final metrics, the per-epoch curve, and a state to continue from."""

    metrics: Metrics
    curve: list[Metrics] = field(default_factory=list)
    state: dict[str, Any] | None = None
