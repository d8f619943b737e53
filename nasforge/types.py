"""Plain data types shared by every layer. Everything stored is JSON-serialisable."""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Union

JSONValue = Union[None, bool, int, float, str, list[Any], dict[str, Any]]
ArchDict = dict[str, Any]
"""An architecture: decision label -> value (int, float, str, or list of str). JSON-serialisable."""
Metrics = dict[str, float]


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
class Objective:
    """Which metric the search optimises, and in which direction."""

    metric: str = "val_loss"
    mode: str = "min"

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"Invalid objective mode: {self.mode!r}; allowed: 'min', 'max'")

    def loss(self, metrics: Metrics) -> float | None:
        """The value to minimise, or None when the metric is missing or not finite."""
        value = metrics.get(self.metric)
        if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return float(value) if self.mode == "min" else -float(value)


@dataclass(frozen=True)
class Result:
    """What a strategy or scheduler is told about one evaluation of an architecture.

    ``loss`` is the objective turned into a value to minimise (``None`` when the trial failed),
    so strategies never need to know the metric's name or direction.
    """

    metrics: Metrics
    loss: float | None
    budget: float
    failed: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and self.loss is not None


@dataclass
class EvalResult:
    """What an evaluator returns: final metrics, the per-epoch curve, and a state to continue from."""

    metrics: Metrics
    curve: list[Metrics] = field(default_factory=list)
    state: dict[str, Any] | None = None
