"""The executor protocol: where jobs run. The driver owns the store; workers only evaluate.

Contract (the study is the only caller):

* ``submit`` at most ``capacity`` jobs at a time (a resumed study may re-submit its queued trials
  beyond it: they wait); ``poll`` collects their ends. Every submitted job produces exactly one
  :class:`JobEvent`, whatever happens to the process or machine running it (a failure is an
  event with ``error`` set, never an exception out of ``poll``; a job lost with its worker runs
  again). ``running`` counts the jobs submitted and not yet returned by ``poll``.
* A job's results depend only on the job (its seed, architecture, budget and input
  checkpoint), never on where or beside what it ran: the same study gives the same trials on
  every executor.
* Checkpoints: a worker writes a job's new checkpoint under ``job.checkpoint_out``; an
  executor that holds them in memory instead writes the ones the study calls ``persist`` on at
  once and the rest by ``shutdown``; ``discard`` tells it one is no longer needed.
* ``shutdown(cancel=True)`` abandons running jobs (their trials are re-run on resume).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from nasforge.types import ArchDict, Metrics


@dataclass(frozen=True)
class Job:
    trial_id: int
    arch: ArchDict
    budget: float
    seed: int
    checkpoint_in: str | None = None  # relative to the study directory; None: start from scratch
    checkpoint_out: str | None = None
    resumed: bool = False  # the trial has a result already: this job continues it to a larger budget


@dataclass
class JobEvent:
    job: Job
    metrics: Metrics | None = None
    curve: list[Metrics] = field(default_factory=list)
    error: str | None = None
    duration: float = 0.0
    checkpoint: str | None = None  # written by the worker, relative to the study directory
    retrained: bool = False  # its input checkpoint was lost (a crash): it trained again from scratch


class Executor(Protocol):
    """``capacity``: jobs it accepts at once. ``parallelism``: jobs it really trains at once (a
    batching executor accepts many but trains them in one process): strategies that want results
    before asking again hold back no further. ``isolated``: True when every trial runs in a
    worker process (a hard crash there, a segfault or the OOM killer, ends only that worker,
    which is replaced); False when trials run in the driver's process (such a crash ends the
    driver; on resume the study runs the trials it left running in a worker process of their
    own, so a crash of their own fails only them instead of being replayed). ``clock``: the
    simulated seconds elapsed, or None when jobs run in real time."""

    capacity: int
    parallelism: int
    isolated: bool
    clock: float | None

    def submit(self, job: Job) -> None: ...
    def poll(self, timeout: float | None = None) -> list[JobEvent]: ...
    def running(self) -> int: ...
    def discard(self, relative: str) -> None: ...
    def persist(self, relative: str) -> None: ...
    def shutdown(self, cancel: bool = False) -> None: ...


@dataclass(frozen=True)
class ExecutorOptions:
    """What the config says of execution, for every executor's ``from_options``: ``workers``
    processes (or actors), ``timeout`` seconds per trial, and the executor's own settings
    (``settings``: Ray's address and resources)."""

    workers: int = 1
    timeout: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)


class WorkersWriteCheckpoints:
    """For executors whose workers write every checkpoint to the study directory themselves:
    nothing is held back, so there is nothing to persist or forget; real time."""

    clock: float | None = None

    def discard(self, relative: str) -> None:
        pass

    def persist(self, relative: str) -> None:
        pass
