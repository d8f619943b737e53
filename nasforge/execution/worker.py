"""What a worker does with a job: build the model, load its checkpoint, evaluate, save."""
from __future__ import annotations

import contextlib
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from nasforge.execution.base import Job, JobEvent
from nasforge.store.checkpoints import CheckpointFiles, CheckpointIO
from nasforge.space.space import Space
from nasforge.train.evaluator import call_evaluator, trial_parameters
from nasforge.train.state import seed_torch
from nasforge.types import ArchDict, arch_key


@dataclass
class HardwareSettings:
    """How every trained model is measured on this machine (see :mod:`nasforge.hardware`); the
    config's ``hardware`` section (:class:`nasforge.config.HardwareConfig`) holds the defaults."""

    input_shape: tuple[int, ...]
    batch_size: int
    threads: int
    device: str
    repeats: int
    min_seconds: float
    predictor: Any = None  # a LatencyPredictor bound to the space: latency_ms predicted, not measured
    measure_final: bool = False  # with a predictor: measure the trials trained to final_budget
    final_budget: float = float("inf")


@dataclass
class WorkerContext:
    """Everything a worker needs, sent to each worker process once."""

    space: Space
    data: Any
    evaluator: Callable[..., Any]
    directory: str | None  # study directory for checkpoints; None keeps no checkpoints
    threads: int | None = None
    hardware: HardwareSettings | None = None
    measured: dict[str, dict[str, float]] = field(default_factory=dict)  # per architecture, this process
    wants: tuple[str, ...] = ()  # the trial's parameters the evaluator names (arch, trial_id, seed)
    timeout: float | None = None  # seconds a trial may run before it is stopped and failed

    def __post_init__(self) -> None:
        self.wants = trial_parameters(self.evaluator)


HARDWARE_METRICS = ("latency_ms", "latency_median_ms", "latency_spread", "params", "flops")
MEASURED_ONLY = ("latency_median_ms", "latency_spread")  # what a predicted latency lacks
"""What ``hardware_metrics_for`` adds to every trial's metrics when the study measures models."""

LATENCY_CACHE = "latency_cache.json"
"""The study directory's file of latencies, shared by its worker processes and by a resume."""


def hardware_metrics_for(ctx: WorkerContext, arch: ArchDict, model: nn.Module, budget: float) -> dict[str, float]:
    """Latency, params and FLOPs of a trained model (the weights do not change the cost of a
    forward pass). The latency is measured once per architecture per study (the study's
    :class:`~nasforge.hardware.LatencyCache`), the rest once per architecture per process.
    With a predictor, ``latency_ms`` is its prediction (also ``latency_predicted_ms``), except for
    a trial trained to the final budget when ``measure_final`` is set."""
    hw = ctx.hardware
    if hw is None:
        return {}
    predicted: dict[str, float] = {}
    if hw.predictor is not None:
        predicted = {"latency_predicted_ms": hw.predictor.latency_ms(arch, model)}
        if not (hw.measure_final and budget >= hw.final_budget):
            from nasforge.hardware import count_flops, count_params
            flops = count_flops(model, hw.input_shape)
            return {"latency_ms": predicted["latency_predicted_ms"], **predicted, "params": float(count_params(model)),
                    **({"flops": float(flops)} if flops is not None else {})}
    key = arch_key(arch)
    if key not in ctx.measured:
        from nasforge.hardware import LatencyCache, hardware_metrics
        cache = LatencyCache(Path(ctx.directory) / LATENCY_CACHE if ctx.directory else None)
        latency = cache.get_or_measure(
            ctx.space.name, arch, lambda: model, hw.input_shape, batch_size=hw.batch_size, threads=hw.threads,
            device=hw.device, repeats=hw.repeats, min_seconds=hw.min_seconds)
        ctx.measured[key] = hardware_metrics(model, hw.input_shape, batch_size=hw.batch_size, threads=hw.threads,
                                             device=hw.device, latency=latency)
    return {**ctx.measured[key], **predicted}


def run_job(ctx: WorkerContext, job: Job, checkpoints: CheckpointIO | None = None) -> JobEvent:
    """Evaluate one job. Its input checkpoint comes from ``checkpoints`` and its new one goes
    there (default: files in the study directory, none without one)."""
    start = time.perf_counter()
    if checkpoints is None and ctx.directory:
        checkpoints = CheckpointFiles(ctx.directory)
    try:
        seed_torch(job.seed)  # the same weights wherever and whenever the job runs
        model = ctx.space.build(job.arch)
        state = None
        saved = checkpoints.get(job.checkpoint_in) if job.checkpoint_in and checkpoints is not None else None
        if saved is not None:  # a missing or damaged one (a crash) means: train from scratch
            state = saved["evaluator"]
            torch.set_rng_state(saved["torch_rng"])  # continue the random stream (dropout) where it stopped
        with time_limit(ctx.timeout):
            out = call_evaluator(ctx.evaluator, ctx.wants, model, ctx.data, job.budget, state, arch=job.arch,
                                 trial_id=job.trial_id, seed=job.seed)
        out.metrics.update(hardware_metrics_for(ctx, job.arch, model, job.budget))
        written = None
        if out.state is not None and job.checkpoint_out and checkpoints is not None:
            checkpoints.put(job.checkpoint_out, {"evaluator": out.state, "torch_rng": torch.get_rng_state()})
            written = job.checkpoint_out
        return JobEvent(job, out.metrics, list(out.curve), None, time.perf_counter() - start, written,
                        retrained=bool(job.checkpoint_in) and saved is None)
    except Exception as exc:  # noqa: BLE001 - any failure of a trial is recorded, never fatal
        return JobEvent(job, error=error_text(exc), duration=time.perf_counter() - start)


class TrialTimeout(Exception):
    """A trial ran past the study's ``trial_timeout``."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TrialTimeout` in the trial after ``seconds`` (a timer signal: only in the
    main thread, where workers and the driver run trials; code stuck in native calls is stopped
    by the pool executor instead)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TrialTimeout(f"the trial ran past the timeout of {seconds:g} s and was stopped")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def error_text(exc: BaseException) -> str:
    """A trial's error: the exception and the line that raised it."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"
