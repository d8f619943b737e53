"""A store that keeps the study in this process only: for tests and quick runs.

It keeps what SQLite keeps, as the same JSON text (so what comes back is a copy, NaN becomes
null, a tuple a list), and its ``atomic`` groups roll back as SQLite's do. Nothing survives the
process: a study kept here cannot be resumed, reported on later or read by ``status``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from typing import Any, Iterable, Iterator

from nasforge.errors import StoreError
from nasforge.store.base import Trial
from nasforge.store.encoding import dumps
from nasforge.types import ArchDict, JSONValue, Metrics, TrialState


@dataclasses.dataclass(frozen=True)
class _Row:
    """A trial as kept: replaced whole on every change, so a transaction's snapshot is a shallow copy."""

    state: TrialState
    arch: str
    budget: float
    seed: int
    parent: int | None
    created_at: float
    budget_used: float = 0.0
    metrics: str = "{}"
    loss: float | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration: float = 0.0
    checkpoint: str | None = None


class MemoryStore:
    """See :mod:`nasforge.store.base` for the contract."""

    location = "memory"

    def __init__(self, directory: Any = None):
        self.directory = directory  # where checkpoints go, as with SQLite; nothing of the store is written there
        self._trials: dict[int, _Row] = {}
        self._curves: dict[int, dict[float, str]] = {}
        self._rungs: dict[int, dict[float, dict[str, Any]]] = {}
        self._meta: dict[str, str] = {}
        self._depth = 0

    # --- transactions ------------------------------------------------------------------------
    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        snapshot = (dict(self._trials), dict(self._curves), dict(self._rungs), dict(self._meta))
        self._depth = 1
        try:
            yield
        except BaseException:
            self._trials, self._curves, self._rungs, self._meta = snapshot
            raise
        finally:
            self._depth = 0

    # --- trials ------------------------------------------------------------------------------
    def _row(self, trial_id: int) -> _Row:
        row = self._trials.get(trial_id)
        if row is None:
            raise StoreError(f"No trial {trial_id} in {self.location}")
        return row

    def _update(self, trial_id: int, **changes: Any) -> None:
        self._trials[trial_id] = dataclasses.replace(self._row(trial_id), **changes)

    def create_trial(self, arch: ArchDict, budget: float, *, seed: int, parent: int | None = None) -> int:
        next_id = len(self._trials)
        self._trials[next_id] = _Row(TrialState.QUEUED, dumps(arch), float(budget), int(seed),
                                     None if parent is None else int(parent), time.time())
        return next_id

    def start(self, trial_id: int, budget: float) -> None:
        row = self._row(trial_id)
        self._update(trial_id, state=TrialState.RUNNING, budget=float(budget), started_at=row.started_at or time.time())

    def append_curve(self, trial_id: int, step: float, metrics: Metrics) -> None:
        self.append_curves(trial_id, [(step, metrics)])

    def append_curves(self, trial_id: int, points: list[tuple[float, Metrics]], replace: bool = True) -> None:
        if not points:
            return
        self._row(trial_id)
        curve = dict(self._curves.get(trial_id, {}))  # a new dict: the snapshot keeps the old one
        for step, metrics in points:
            if replace or float(step) not in curve:
                curve[float(step)] = dumps(metrics)
        self._curves[trial_id] = curve

    def finish(self, trial_id: int, state: TrialState, *, metrics: Metrics | None = None, loss: float | None = None,
               budget: float | None = None, duration: float = 0.0, checkpoint: str | None = None,
               error: str | None = None) -> None:
        row, now = self._row(trial_id), time.time()
        loss = None if loss is None or not math.isfinite(float(loss)) else float(loss)  # as SQLite stores NaN: null
        changes: dict[str, Any] = {}
        if metrics is not None:
            budget = row.budget if budget is None else float(budget)
            rungs = dict(self._rungs.get(trial_id, {}))
            rungs[budget] = {"budget": budget, "loss": loss, "metrics": json.loads(dumps(metrics)), "finished_at": now}
            self._rungs[trial_id] = rungs
            changes = {"metrics": dumps(metrics), "loss": loss, "budget_used": budget,
                       "checkpoint": checkpoint if checkpoint is not None else row.checkpoint}
        self._update(trial_id, **changes, state=state, error=error, duration=row.duration + float(duration),
                     finished_at=now if state.finished else None)

    def set_state(self, trial_id: int, state: TrialState) -> None:
        row = self._row(trial_id)
        self._update(trial_id, state=state, finished_at=time.time() if state.finished else row.finished_at)

    def requeue_running(self) -> list[int]:
        ids = [tid for tid, row in sorted(self._trials.items()) if row.state is TrialState.RUNNING]
        for tid in ids:
            self._update(tid, state=TrialState.QUEUED)
        return ids

    def _trial(self, trial_id: int, row: _Row) -> Trial:
        rungs = [json.loads(json.dumps(r)) for _, r in sorted(self._rungs.get(trial_id, {}).items())]
        return Trial(trial_id, row.state, json.loads(row.arch), row.budget, row.budget_used, json.loads(row.metrics),
                     row.loss, row.seed, row.error, row.parent, row.created_at, row.started_at, row.finished_at,
                     row.duration, row.checkpoint, rungs)

    def trial(self, trial_id: int) -> Trial:
        return self._trial(trial_id, self._row(trial_id))

    def trials(self, states: Iterable[TrialState] | None = None) -> list[Trial]:
        wanted = None if states is None else {TrialState(s) for s in states}
        return [self._trial(tid, row) for tid, row in sorted(self._trials.items()) if wanted is None or row.state in wanted]

    def count(self) -> int:
        return len(self._trials)

    def curve(self, trial_id: int) -> list[Metrics]:
        return [json.loads(m) for _, m in sorted(self._curves.get(trial_id, {}).items())]

    # --- meta --------------------------------------------------------------------------------
    def get_meta(self, key: str, default: JSONValue = None) -> JSONValue:
        encoded = self._meta.get(key)
        return default if encoded is None else json.loads(encoded)

    def set_meta(self, key: str, value: JSONValue) -> None:
        self.set_meta_raw(key, dumps(value))

    def set_meta_raw(self, key: str, encoded: str) -> None:
        self._meta[key] = encoded

    def close(self) -> None:
        pass
