"""Runs jobs at once in the driver process but releases them on a fake clock, as ``workers``
parallel workers would: a study of hundreds of tabular lookups takes seconds, yet asynchronous
schedulers see the completion order that real training times would give.
"""
from __future__ import annotations

import heapq
import math
from typing import Callable

from nasforge.errors import ConfigError
from nasforge.execution.base import ExecutorOptions, Job, JobEvent, WorkersWriteCheckpoints
from nasforge.execution.worker import WorkerContext, run_job

Duration = Callable[[Job, JobEvent], float]


def default_duration(job: Job, event: JobEvent) -> float:
    """The simulated seconds the evaluator reported (metric ``sim_seconds``), else the job's budget."""
    if event.metrics and "sim_seconds" in event.metrics:
        return float(event.metrics["sim_seconds"])
    return float(job.budget)


class SimulatedExecutor(WorkersWriteCheckpoints):
    """The executor protocol (see :mod:`nasforge.execution.base`) on a simulated clock.

    ``submit`` runs the job immediately (``run_job``, in this process) and schedules its event to
    finish at ``start + duration(job, event)``. ``start`` is ``clock``, the simulated time of
    submission, whenever fewer than ``capacity`` (= ``workers``) jobs are in flight, which the
    study guarantees; jobs submitted beyond that (the queued trials a resumed study re-submits)
    wait for the first simulated worker to free up, as they would in a real pool.
    ``poll`` never waits: it advances ``clock`` to the earliest pending finish time and returns
    every event finishing then (ties in submission order).
    An event's ``duration`` is replaced by its simulated seconds, so the store records those.
    A ``duration`` callable that raises or returns a negative or non-finite number turns the
    job's event into a failure (``error`` set, finishing at once), as the protocol requires.
    """

    isolated = False  # jobs run in this process

    def __init__(self, context: WorkerContext, workers: int = 1, duration: Duration | None = None):
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"Invalid workers: {workers!r} (must be an int >= 1)")
        if duration is not None and not callable(duration):
            raise ConfigError(f"duration must be a callable (job, event) -> seconds, got {type(duration).__name__}")
        self.context = context
        self.capacity = self.parallelism = workers
        self.duration: Duration = duration or default_duration
        self.clock = 0.0
        self._pending: list[tuple[float, int, JobEvent]] = []  # (finish time, submission number, event)
        self._submitted = 0
        self._free = [0.0] * workers  # a heap: when each simulated worker is next free

    @classmethod
    def from_options(cls, context: WorkerContext, options: ExecutorOptions) -> "SimulatedExecutor":
        return cls(context, options.workers)

    def submit(self, job: Job) -> None:
        event = run_job(self.context, job)
        try:
            seconds = float(self.duration(job, event))
            if not math.isfinite(seconds) or seconds < 0:
                raise ValueError(f"simulated duration must be a finite number >= 0, got {seconds!r}")
        except Exception as exc:  # noqa: BLE001 - a bad duration fails this job, never the study
            event = JobEvent(job, error=f"simulated duration: {type(exc).__name__}: {exc}")
            seconds = 0.0
        event.duration = seconds
        start = max(self.clock, heapq.heappop(self._free))
        heapq.heappush(self._free, start + seconds)
        heapq.heappush(self._pending, (start + seconds, self._submitted, event))
        self._submitted += 1

    def poll(self, timeout: float | None = None) -> list[JobEvent]:
        if not self._pending:
            return []
        finish = self._pending[0][0]
        self.clock = max(self.clock, finish)
        events = []
        while self._pending and self._pending[0][0] == finish:
            events.append(heapq.heappop(self._pending)[2])
        return events

    def running(self) -> int:
        return len(self._pending)

    def shutdown(self, cancel: bool = False) -> None:
        """Without ``cancel`` pending events are simply dropped too: their jobs already ran, but
        the study that shuts down without cancelling has collected every event first."""
        self._pending.clear()
        self._free = [self.clock] * self.capacity
