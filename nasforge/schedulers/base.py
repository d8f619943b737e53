"""The scheduler protocol: how budget is spent across trials.

A scheduler holds a strategy and decides, each time a worker is free, what to run next and with
how much budget; and, each time a job ends, what becomes of the trial. Decisions are data.

Contract (the study is the only caller):

1. ``setup(strategy, max_budget, max_trials, rng)`` once, before anything else. The strategy
   is already set up; ``max_budget`` is the most budget one trial may get (epochs), and
   ``max_trials`` caps how many trials the scheduler starts (None: its own natural end).
2. ``suggest(trial_id)`` when a worker is free. Returns :class:`Start` (a new trial, which gets
   ``trial_id``), :class:`Resume` (continue a paused trial up to a larger budget, from its
   checkpoint), :data:`WAIT` (nothing to start until a running job ends) or ``None`` (done).
3. ``on_result(trial_id, arch, result)`` when a job ends (``result.failed`` for a failure).
   Returns :class:`Decision`: COMPLETE (the trial is done), PAUSE (it may be resumed later) or
   PRUNE (stopped early). Telling the strategy is the scheduler's job.
4. ``pop_stopped()`` after each ``suggest``/``on_result``: paused trials the scheduler has now
   stopped for good (not promoted); the study marks them pruned.
5. ``state_dict()`` / ``load_state_dict()``: plain JSON, including the strategy's state; the
   study saves it after every ``suggest`` and ``on_result``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol, Union

import numpy as np

from nasforge.strategies.base import Strategy
from nasforge.types import ArchDict, Result


@dataclass(frozen=True)
class Start:
    arch: ArchDict
    budget: float


@dataclass(frozen=True)
class Resume:
    trial_id: int
    budget: float


class _Wait:
    def __repr__(self) -> str:
        return "WAIT"


WAIT = _Wait()
Suggestion = Union[Start, Resume, _Wait, None]


class Decision(str, enum.Enum):
    COMPLETE = "complete"
    PAUSE = "pause"
    PRUNE = "prune"


class Scheduler(Protocol):
    def setup(self, strategy: Strategy, max_budget: float, max_trials: int | None, rng: np.random.Generator) -> None: ...
    def suggest(self, trial_id: int) -> Suggestion: ...
    def on_result(self, trial_id: int, arch: ArchDict, result: Result) -> Decision: ...
    def pop_stopped(self) -> list[int]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
