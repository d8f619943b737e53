"""Runs jobs one at a time in the driver process."""
from __future__ import annotations

from collections import deque

from nasforge.execution.base import ExecutorOptions, Job, JobEvent, WorkersWriteCheckpoints
from nasforge.execution.worker import WorkerContext, run_job


class SerialExecutor(WorkersWriteCheckpoints):
    """One job at a time, in this process."""

    capacity = parallelism = 1
    isolated = False  # trials run in the driver's process

    def __init__(self, context: WorkerContext):
        self.context = context
        self._queue: deque[Job] = deque()

    @classmethod
    def from_options(cls, context: WorkerContext, options: ExecutorOptions) -> "SerialExecutor":
        return cls(context)

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def poll(self, timeout: float | None = None) -> list[JobEvent]:
        return [run_job(self.context, self._queue.popleft())] if self._queue else []

    def running(self) -> int:
        return len(self._queue)

    def shutdown(self, cancel: bool = False) -> None:
        self._queue.clear()
