"""Runs jobs in the driver process, training compatible MLP candidates together.

At each ``poll`` every queued job runs: jobs whose models the population trainer takes (MLPs
under the built-in trainer) train in batched groups; everything else runs one by one, exactly as
the serial executor would. :mod:`nasforge.execution.batch_pool` runs the same on shards in
worker processes.

Checkpoints are a cache, not the record: training is deterministic, so a checkpoint that is
missing is rebuilt by training from scratch to the budget (5 epochs and then 5 more equal 10 at
once). So they stay in memory within a run, and are written in the background of the search at
most every ``flush_seconds`` and when it ends; a crash loses at most that much of them, and a
promotion or export that needs a lost one trains it again.
"""
from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from typing import Any, Callable

import torch
from torch import nn

from nasforge.execution.base import ExecutorOptions, Job, JobEvent
from nasforge.execution.worker import WorkerContext, error_text, hardware_metrics_for, run_job
from nasforge.store.checkpoints import CheckpointCache, Collected, Payload
from nasforge.train.state import seed_torch
from nasforge.train.evaluator import batch_trainer_of
from nasforge.types import arch_key

_MODELS_KEPT_BYTES = 64 << 20


class BatchRunner:
    """Runs a list of jobs at once in this process: batched groups where it can, one by one
    elsewhere. Holds no checkpoints: ``saved`` gives a job's input checkpoint (None if lost), and
    ``run`` returns the checkpoints its jobs made beside their events."""

    def __init__(self, context: WorkerContext):
        self.context = context
        self.population = batch_trainer_of(context.evaluator)
        # A promoted trial loads its whole state into its last job's model object instead of
        # building its model again (so what the object held is irrelevant).
        self.models = KeptModels(_MODELS_KEPT_BYTES)

    def run(self, jobs: list[Job], saved: Callable[[str], Payload | None]) -> tuple[list[JobEvent], dict[str, Payload]]:
        """Events in the order of ``jobs`` and the new checkpoints by relative path (not written:
        the caller keeps them)."""
        events: dict[int, JobEvent] = {}
        checkpoints = Collected(saved) if self.context.directory else None  # none without a study directory
        groups: dict[tuple[Any, ...], list[tuple[int, Job, Any, torch.Tensor, float]]] = {}
        for n, job in enumerate(jobs):
            start = time.perf_counter()
            prepared = self._prepare(job, saved)
            if prepared is None:
                events[n] = run_job(self.context, job, checkpoints)
                continue
            cand, rng = prepared
            key = self.population.key(cand, self.context.data)  # type: ignore[union-attr]
            groups.setdefault(key, []).append((n, job, cand, rng, time.perf_counter() - start))
        for key, members in groups.items():
            if not self.population.pays(key, len(members)):  # type: ignore[union-attr]
                n, job = members[0][0], members[0][1]
                events[n] = run_job(self.context, job, checkpoints)
                continue
            events.update(self._train(members, checkpoints))
        made = checkpoints.made if checkpoints is not None else {}
        return [events[n] for n in sorted(events)], made  # submission order: the study stays deterministic

    def _prepare(self, job: Job, saved: Callable[[str], Payload | None]) -> tuple[Any, torch.Tensor] | None:
        """Build the job's model as a worker would; None if the population trainer cannot take it."""
        if self.population is None:
            return None
        try:
            payload = saved(job.checkpoint_in) if job.checkpoint_in and self.context.directory else None
            seed_torch(job.seed)
            model = self.models.take(job.trial_id) if payload is not None else None
            if model is None:
                # A model that continues from a checkpoint gets all its weights from it: skip initialising them.
                model = (self.context.space.dry_build if payload is not None else self.context.space.build)(job.arch)
            if not self.population.supports(model):
                return None
            self.models.keep(job.trial_id, model)
            state = None
            if payload is not None:  # else: lost in a crash; training from scratch to the budget is the same
                state = payload["evaluator"]
                torch.set_rng_state(payload["torch_rng"])
            cand = self.population.candidate(model, job.budget, state, arch_key(job.arch))
            return cand, torch.get_rng_state()  # training draws nothing more from this stream (no dropout)
        except Exception:  # noqa: BLE001 - let the one-by-one path run it and report the error
            return None

    def _train(self, members: list[tuple[int, Job, Any, torch.Tensor, float]],
               checkpoints: Collected | None) -> dict[int, JobEvent]:
        start = time.perf_counter()
        try:
            self.population.train([m[2] for m in members], self.context.data)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - a group that cannot train runs one by one instead
            return {n: run_job(self.context, job, checkpoints) for n, job, *_ in members}
        share = (time.perf_counter() - start) / len(members)
        out = {}
        for n, job, cand, rng, prep in members:
            if cand.error is not None or cand.result is None:
                out[n] = JobEvent(job, error=cand.error or "candidate was not trained", duration=share + prep)
                continue
            try:
                metrics = {**cand.result.metrics, **hardware_metrics_for(self.context, job.arch, cand.model, job.budget)}
            except Exception as exc:  # noqa: BLE001 - as in run_job: the trial fails, the study goes on
                out[n] = JobEvent(job, error=error_text(exc), duration=share + prep)
                continue
            written = None
            if cand.result.state is not None and job.checkpoint_out and checkpoints is not None:
                checkpoints.put(job.checkpoint_out, {"evaluator": cand.result.state, "torch_rng": rng})
                written = job.checkpoint_out
            out[n] = JobEvent(job, metrics, list(cand.result.curve), None, share + prep, written,
                              retrained=bool(job.checkpoint_in) and cand.state is None)
        return out


class KeptModels:
    """Model objects by trial id, the oldest first out once they hold more than ``max_bytes`` of
    parameters and buffers together."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._models: OrderedDict[int, tuple[nn.Module, int]] = OrderedDict()
        self._bytes = 0

    def take(self, trial_id: int) -> nn.Module | None:
        """The trial's model, no longer kept (None if it was not)."""
        entry = self._models.pop(trial_id, None)
        if entry is None:
            return None
        self._bytes -= entry[1]
        return entry[0]

    def keep(self, trial_id: int, model: nn.Module) -> None:
        self.take(trial_id)
        size = sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()))
        if size > self.max_bytes:
            return
        self._models[trial_id] = (model, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, dropped) = self._models.popitem(last=False)
            self._bytes -= dropped


class BatchingExecutor:
    """Every queued job at each poll, in this process: compatible MLPs train together."""

    isolated = False  # trials run in the driver's process (with workers, one shard of them)
    parallelism = 1  # one process: strategies that want results before asking again get them
    clock = None

    def __init__(self, context: WorkerContext, capacity: int = 128, flush_seconds: float = 30.0):
        self.context = context
        self.capacity = capacity
        self.runner = BatchRunner(context)
        self.checkpoints = CheckpointCache(context.directory, flush_seconds)
        self._queue: list[Job] = []

    @classmethod
    def from_options(cls, context: WorkerContext, options: ExecutorOptions) -> "BatchingExecutor":
        """With more than one worker, :class:`~nasforge.execution.batch_pool.BatchingPoolExecutor`."""
        if options.workers > 1:
            from nasforge.execution.batch_pool import BatchingPoolExecutor
            return BatchingPoolExecutor(context, options.workers)
        return cls(context)

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def running(self) -> int:
        return len(self._queue)

    def shutdown(self, cancel: bool = False) -> None:
        self._queue.clear()
        self.flush()

    def discard(self, relative: str) -> None:
        """A checkpoint the study no longer needs (the trial has a newer one)."""
        self.checkpoints.discard(relative)

    def flush(self) -> None:
        self.checkpoints.flush()

    def persist(self, relative: str) -> None:
        """Make a checkpoint durable now: the study's best trials' weights survive a kill."""
        self.checkpoints.persist(relative)

    def poll(self, timeout: float | None = None) -> list[JobEvent]:
        jobs, self._queue = self._queue, []
        events, made = self.runner.run(jobs, self.checkpoints.get)
        for relative, payload in made.items():
            self.checkpoints.put(relative, payload)
        self.checkpoints.maybe_flush()
        return events
