"""The store protocol: the study's single record of trials, curves and search state.

Contract:

* Only the driver (the process running the study loop) writes to a store; workers never touch it.
* ``create_trial`` returns a new id, ascending from 0. A trial moves
  queued -> running -> (paused -> running ->)* complete | pruned | failed.
* A finished trial (complete, pruned, failed) is never modified again, except that a study
  extended later may mark a paused trial pruned.
* Everything stored is plain JSON: architectures, metrics, curves, search state in ``meta``.
* ``atomic()`` groups writes into one transaction, so a crash at any moment leaves the store as
  it was before the group or after it, never in between. Writes outside ``atomic()`` are each
  their own transaction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ContextManager, Iterable, Protocol

from nasforge.types import ArchDict, JSONValue, Metrics, TrialState


@dataclass(frozen=True)
class Trial:
    id: int
    state: TrialState
    arch: ArchDict
    budget: float  # the budget of the trial's latest job
    budget_used: float  # the budget its latest finished job reached
    metrics: Metrics
    loss: float | None  # the objective as a value to minimise, at budget_used
    seed: int
    error: str | None = None
    parent: int | None = None
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration: float = 0.0  # seconds spent evaluating, all jobs together
    checkpoint: str | None = None  # path relative to the study directory
    rungs: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "state": self.state.value, "arch": self.arch, "budget": self.budget_used or self.budget,
            "metrics": self.metrics, "loss": self.loss, "seed": self.seed, "error": self.error, "parent": self.parent,
            "duration": round(self.duration, 4), "rungs": self.rungs, "checkpoint": self.checkpoint,
        }


class Store(Protocol):
    """``location``: where the store keeps the study, for messages (a file path, or ``memory``).
    ``create_trial`` gives ids in order; ``requeue_running`` (after a crash) puts the trials left
    running back in the queue and returns their ids; ``count`` is the number of trials.
    ``set_meta_raw`` stores a value already encoded as JSON text (the search state, which the
    study encodes anyway to see whether it changed)."""

    location: str

    def atomic(self) -> ContextManager[None]: ...
    def create_trial(self, arch: ArchDict, budget: float, *, seed: int, parent: int | None = None) -> int: ...
    def start(self, trial_id: int, budget: float) -> None: ...
    def append_curve(self, trial_id: int, step: float, metrics: Metrics) -> None: ...
    def append_curves(self, trial_id: int, points: list[tuple[float, Metrics]], replace: bool = True) -> None: ...
    def finish(self, trial_id: int, state: TrialState, *, metrics: Metrics | None = None, loss: float | None = None,
               budget: float | None = None, duration: float = 0.0, checkpoint: str | None = None,
               error: str | None = None) -> None: ...
    def set_state(self, trial_id: int, state: TrialState) -> None: ...
    def requeue_running(self) -> list[int]: ...
    def trial(self, trial_id: int) -> Trial: ...
    def trials(self, states: Iterable[TrialState] | None = None) -> list[Trial]: ...
    def count(self) -> int: ...
    def curve(self, trial_id: int) -> list[Metrics]: ...
    def get_meta(self, key: str, default: JSONValue = None) -> JSONValue: ...
    def set_meta(self, key: str, value: JSONValue) -> None: ...
    def set_meta_raw(self, key: str, encoded: str) -> None: ...
    def close(self) -> None: ...
