"""Batched training in several worker processes (``workers: N`` with the built-in trainer).

Each ``poll`` splits the queued jobs into one shard per worker (fewer for a few jobs; none for a
poll estimated too short to gain from it) and waits for all of them, so the study sees the same
events in the same order whatever the timing (as with one process). The driver trains the first
shard itself: it would only wait otherwise. Jobs that can train together are kept in one shard: they
are sorted by budget, whether they continue from a checkpoint and the size of their architecture,
and cut into contiguous shards of about equal estimated time (:class:`SizedCost`). Workers hold no
state between polls: the driver keeps the checkpoints (in memory, written as
:class:`~nasforge.execution.batching.CheckpointCache` writes them), sends each job's input
checkpoint with its shard and gets the new ones back with the events.
"""
from __future__ import annotations

import concurrent.futures as cf
import math
import os
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

import numpy as np
import torch

from nasforge.errors import ConfigError
from nasforge.execution import pool
from nasforge.execution.base import Job, JobEvent
from nasforge.execution.batching import BatchingExecutor, BatchRunner
from nasforge.store.checkpoints import Payload
from nasforge.execution.worker import WorkerContext
from nasforge.engine.mlp_layout import ROW_LAYER_US, US_PER_MFLOP
from nasforge.train.state import map_leaves, torch_threads
from nasforge.types import arch_key

_RUNNER: BatchRunner | None = None


class _Array:
    """A tensor on its way between processes, as a numpy array: pickled as plain bytes, where
    torch's own pickling would move every small tensor into a shared-memory segment of its own
    (~50 us each, hundreds per shard of states)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = array


def pack(obj: Any) -> Any:
    """``obj`` with its (CPU) tensors as :class:`_Array`; :func:`unpack` reverses it."""
    return map_leaves(obj, _to_array)


def unpack(obj: Any) -> Any:
    return map_leaves(obj, lambda v: torch.from_numpy(_writable(v.array)) if isinstance(v, _Array) else v)


def _writable(array: np.ndarray) -> np.ndarray:
    """Ray hands arrays over read-only (zero copy from its object store); a tensor needs its own."""
    return array if array.flags.writeable else array.copy()


def _to_array(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.device.type == "cpu" and value.dtype in _NUMPY_DTYPES:
        return _Array(value.detach().numpy())
    return value


_NUMPY_DTYPES = {torch.float64, torch.float32, torch.float16, torch.int64, torch.int32, torch.int16, torch.int8,
                 torch.uint8, torch.bool}


def _run_shard(jobs: list[Job], saved: dict[str, Payload]) -> Any:
    global _RUNNER
    if _RUNNER is None:
        assert pool._CONTEXT is not None, "worker not initialised"
        _RUNNER = BatchRunner(pool._CONTEXT)
    return pack(_RUNNER.run(jobs, unpack(saved).get))


def shards(jobs: list[Job], n: int, cost: Callable[[Job], float] | None = None, remote: float = 0.0) -> list[list[Job]]:
    """Up to ``n`` contiguous runs of the jobs, sorted so that jobs likely to share a training
    group are adjacent, with about equal estimated ``cost`` each (never an empty one): a job goes
    to the shard whose share of the total holds the middle of its own cost. Every shard but the
    first (the driver's) costs ``remote`` more than its jobs (a round trip to a worker), so the
    first takes that much more work."""
    order = sorted(jobs, key=lambda j: (j.budget, j.checkpoint_in is not None, len(j.arch), j.trial_id))
    costs = [(cost or _cost)(job) for job in order]
    total = sum(costs)
    first = min(total, (total + (n - 1) * remote) / n)  # the driver's share; each other shard gets (total - first) / (n - 1)
    rest = (total - first) / (n - 1) if n > 1 else 0.0
    out: list[list[Job]] = []
    done, index = 0.0, -1
    for job, job_cost in zip(order, costs):
        middle = done + job_cost / 2
        share = 0 if middle < first or rest <= 0 else min(n - 1, 1 + int((middle - first) / rest))
        if share > index:
            out.append([])
            index = share
        out[-1].append(job)
        done += job_cost
    return out


def _cost(job: Job) -> float:
    """A guess at a job's training time without building its model: its budget times the number
    of its architecture's choices (more layers, more choices)."""
    return max(job.budget, 1e-9) * (1 + len(job.arch))


JOB_US = 1200.0
"""A job's time outside its training steps: building its model, exporting its state, packing."""


class SizedCost:
    """A job's estimated time (µs): :data:`JOB_US`, plus its training steps (its budget in steps,
    from the data size and batch size) at the step-time model's price of one candidate in a group,
    a part per layer and one per parameter (:mod:`nasforge.engine.mlp_layout`), read off a dry
    build of its model (~0.3 ms for an MLP, remembered per architecture: promotions ask again).
    :func:`_cost`'s guess where the build fails. Shallow and deep MLPs differ 50x in parameters
    but 2x in number of choices, so the choice count left the worker the deep jobs and the
    driver waiting: with 2 workers, BO took 0.81-0.93x the time, SH and HB 0.98-1.04x
    (interleaved in one process)."""

    def __init__(self, context: WorkerContext, remember: int = 4096):
        self.space, self.remember = context.space, remember
        trainer = context.evaluator
        x_train = getattr(context.data, "x_train", None)  # your own evaluator's data may have none
        n = len(x_train) if x_train is not None else 1
        batch = getattr(trainer, "batch_size", None) or n
        if getattr(trainer, "budget_unit", "epochs") == "epochs":
            self.steps_per_unit = float(math.ceil(n / batch))
        else:  # data_fraction: a budget b trains on b n samples, for the trainer's epochs
            self.steps_per_unit = getattr(trainer, "epochs", 1) * n / batch
        self.param_us = US_PER_MFLOP * 6.0 * batch / 1e6
        self._step_us: dict[str, float] = {}

    def __call__(self, job: Job) -> float:
        key = arch_key(job.arch)
        step_us = self._step_us.get(key)
        if step_us is None:
            try:
                model = self.space.dry_build(job.arch)
            except Exception:  # noqa: BLE001 - the trial fails where it trains; here it only needs a guess
                return _cost(job)
            layers = sum(1 for m in model.modules() if next(m.parameters(recurse=False), None) is not None)
            step_us = ROW_LAYER_US * layers + self.param_us * sum(p.numel() for p in model.parameters())
            if len(self._step_us) >= self.remember:
                self._step_us.clear()
            self._step_us[key] = step_us
        return JOB_US + max(job.budget, 0.0) * self.steps_per_unit * step_us


class ShardPlan:
    """How a poll's jobs are cut into shards for ``workers`` processes (or Ray actors), the first
    for the driver. The shards depend on the jobs alone (never on timing or on which workers
    live), and the population trainer's arithmetic on which jobs train together, so executors
    that plan alike give the same results to the last bit."""

    min_shard = 4  # jobs: a smaller shard is not worth a round trip to a worker
    remote_us = 100_000.0
    """What a worker's shard costs beyond its jobs' estimates (moving states both ways, a process
    of its own): the driver's shard takes that much more. With 2 workers the driver finished BO's
    first poll 0.14-0.29 s before the worker with equal shares; with this, BO took 0.95x the time
    (median of 8 interleaved runs; 200 ms: the same within noise)."""
    min_split_us = 300_000.0
    """A poll estimated (:class:`SizedCost`) to take less trains in this process alone: starting the
    pool (~50 ms), a worker's first shard and moving states both ways cost more than half of it
    would save. With 2 workers the chapter's SH polls (38-65 ms estimated) took 1.3x the time of
    one process when split, BO's first (1.4 s) 0.75x."""

    def __init__(self, context: WorkerContext, workers: int):
        self.workers = workers
        self._cost = SizedCost(context)

    def __call__(self, jobs: list[Job]) -> list[list[Job]]:
        costs = {job.trial_id: self._cost(job) for job in jobs}
        worth = sum(costs.values()) >= self.min_split_us
        n = min(self.workers, max(1, len(jobs) // self.min_shard)) if worth else 1
        return shards(jobs, n, lambda job: costs[job.trial_id], self.remote_us)


class BatchingPoolExecutor(BatchingExecutor):
    """``workers`` shards of every poll (:class:`ShardPlan`) trained at once as
    :class:`BatchingExecutor` trains all of it: one in this process, which would otherwise only
    wait, the others in ``workers - 1`` worker processes."""

    def __init__(self, context: WorkerContext, workers: int, capacity: int = 128, flush_seconds: float = 30.0):
        if workers < 1:
            raise ConfigError(f"Invalid workers: {workers} (must be >= 1)")
        if context.threads is None:
            context.threads = max(1, (os.cpu_count() or 1) // workers)
        super().__init__(context, max(capacity, workers), flush_seconds)
        self.parallelism = workers
        self.plan = ShardPlan(context, workers)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._finished = 0  # jobs finished by any worker process of this executor

    def poll(self, timeout: float | None = None) -> list[JobEvent]:
        jobs, self._queue = self._queue, []
        if not jobs:
            return []
        events: dict[int, JobEvent] = {}
        local, *remote = self.plan(jobs)
        futures = self._send(remote)
        with torch_threads(self.context.threads or torch.get_num_threads()):  # beside the workers, not over them
            self._keep(*self.runner.run(local, self.checkpoints.get), events)
        failed = []
        for shard in self._collect(futures, events):  # a dead worker takes every running shard down with it:
            if self._collect(self._send([shard]), events):  # each runs again on its own; one that dies again failed
                failed.append(shard)
        if failed and not self._finished:
            raise pool.ExecutorError(pool.DIED_AT_START)
        for shard in failed:
            for job in shard:
                events[job.trial_id] = JobEvent(job, error="worker process died twice running this job (killed, or out of memory)")
        self.checkpoints.maybe_flush()
        return [events[job.trial_id] for job in jobs]  # submission order: the study stays deterministic

    def _send(self, remote: list[list[Job]]) -> dict[cf.Future[Any], list[Job]]:
        if not remote:
            return {}
        if self._pool is None:
            self._pool = pool.new_pool(self.context, self.parallelism - 1)
        futures = {}
        for shard in remote:
            saved = {j.checkpoint_in: p for j in shard if j.checkpoint_in and (p := self.checkpoints.get(j.checkpoint_in)) is not None}
            futures[self._pool.submit(_run_shard, shard, pack(saved))] = shard
        return futures

    def _collect(self, futures: dict[cf.Future[Any], list[Job]], events: dict[int, JobEvent]) -> list[list[Job]]:
        """Wait for the shards; the ones lost with a dead worker are returned."""
        lost = []
        for future, shard in futures.items():
            try:
                shard_events, made = unpack(future.result())
            except BrokenProcessPool:
                lost.append(shard)
                continue
            except Exception as exc:  # noqa: BLE001 - e.g. the shard could not be sent to the worker
                shard_events, made = [JobEvent(job, error=f"{type(exc).__name__}: {exc}") for job in shard], {}
            self._finished += len(shard_events)
            self._keep(shard_events, made, events)
        if lost:
            self._stop_pool(cancel=True)
        return lost

    def _keep(self, shard_events: list[JobEvent], made: dict[str, Payload], events: dict[int, JobEvent]) -> None:
        for event in shard_events:
            events[event.job.trial_id] = event
        for relative, payload in made.items():
            self.checkpoints.put(relative, payload)

    def shutdown(self, cancel: bool = False) -> None:
        self._stop_pool(cancel)
        super().shutdown(cancel)

    def _stop_pool(self, cancel: bool) -> None:
        executor, self._pool = self._pool, None
        if executor is not None:
            pool.stop_pool(executor, cancel)
