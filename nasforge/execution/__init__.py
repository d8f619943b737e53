"""Executors by name: where a study's jobs run (see ``base`` for the protocol).

Every entry is a factory ``(WorkerContext, ExecutorOptions) -> Executor``; a name with ':' is a
user's import path to one.
"""
from __future__ import annotations

from nasforge.execution.base import Executor, ExecutorOptions, Job, JobEvent
from nasforge.registry import Registry

EXECUTORS: Registry = Registry("executor", {
    "serial": "nasforge.execution.serial:SerialExecutor.from_options",
    "pool": "nasforge.execution.pool:ProcessPoolExecutor.from_options",
    "batched": "nasforge.execution.batching:BatchingExecutor.from_options",
    "simulated": "nasforge.execution.simulated:SimulatedExecutor.from_options",
    "ray": "nasforge.execution.ray_actors:RayExecutor.from_options",
}, {
    "serial": "one trial at a time in this process",
    "pool": "one trial per local worker process (--workers N), any evaluator",
    "batched": "the built-in trainer: compatible MLPs train together, in this process and N-1 workers",
    "simulated": "in this process on a simulated clock (tabular benchmarks)",
    "ray": "Ray actors, on this machine or a cluster (pip install 'nasforge[ray]'); the driver keeps the store",
})

__all__ = ["EXECUTORS", "Executor", "ExecutorOptions", "Job", "JobEvent"]
