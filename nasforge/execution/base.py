"""The executor protocol: where jobs run. The driver owns the store; workers only evaluate.

Contract: the study ``submit``s at most ``capacity`` jobs at a time and collects their ends with
``poll``; every submitted job produces exactly one :class:`JobEvent` (a failure is an event with
``error`` set, never an exception out of ``poll``). ``shutdown(cancel=True)`` abandons running
jobs (their trials are re-run on resume).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

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
    """``capacity``: jobs it runs at once. ``isolated``: True when every trial runs in a worker
    process (a hard crash there, a segfault or the OOM killer, ends only that worker, which is
    replaced); False when trials run in the driver's process (such a crash ends the driver; on
    resume the study runs the trials it left running in a worker process of their own, so a
    crash of their own fails only them instead of being replayed)."""

    capacity: int
    isolated: bool

    def submit(self, job: Job) -> None: ...
    def poll(self, timeout: float | None = None) -> list[JobEvent]: ...
    def running(self) -> int: ...
    def shutdown(self, cancel: bool = False) -> None: ...
