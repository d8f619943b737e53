"""Runs jobs in a pool of local worker processes (``--workers N``)."""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import torch

from nasforge.errors import ConfigError, NasforgeError
from nasforge.execution.base import Job, JobEvent
from nasforge.execution.worker import WorkerContext, run_job
from nasforge.heap import frozen_heap, reuse_freed_memory

_CONTEXT: WorkerContext | None = None


def _exit_with_parent(parent: int) -> None:
    """A worker whose driver was killed (kill -9) has nobody to report to: end it."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _init_worker(context: WorkerContext, parent: int) -> None:
    global _CONTEXT
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    if context.threads:
        torch.set_num_threads(context.threads)
    reuse_freed_memory()  # inherited when forked; spawned workers set it here
    _CONTEXT = context


def _run(job: Job) -> JobEvent:
    assert _CONTEXT is not None, "worker not initialised"
    return run_job(_CONTEXT, job)


def new_pool(context: WorkerContext, workers: int) -> cf.ProcessPoolExecutor:
    """A pool of ``workers`` processes, each given ``context`` once."""
    method = _start_method()
    if method == "fork":
        # Forked workers inherit what the driver has loaded; the first torch.optim optimiser imports
        # torch._dynamo (1.5-3.5 s here), which every worker would otherwise pay for again.
        param_group = getattr(context.evaluator, "param_group", None)
        if callable(param_group):
            param_group()
    pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                  initializer=_init_worker, initargs=(context, os.getpid()))
    # Start the workers now with the driver's objects frozen out of the garbage collector: a
    # worker's collections would otherwise visit every object it inherited, copying each page
    # they sit on (~0.3 s after a shard of 40 jobs here).
    with frozen_heap():
        try:
            pool.submit(int).result()
        except BrokenProcessPool as exc:  # they died doing nothing: no job will run there
            raise ExecutorError(DIED_AT_START) from exc
    return pool


def _start_method() -> str:
    # fork starts workers in milliseconds and shares the context without pickling it; CUDA
    # cannot survive a fork, so once CUDA is initialised workers are spawned instead.
    if os.name == "posix" and "fork" in multiprocessing.get_all_start_methods() and not torch.cuda.is_initialized():
        return "fork"
    return "spawn"


class ExecutorError(NasforgeError, RuntimeError):
    """The workers cannot run jobs at all (the command line prints it as one line)."""


DIED_AT_START = ("worker processes died before finishing any job. If you started the search from a script with "
                 "workers > 1, put the call under `if __name__ == \"__main__\":`; else check memory.")


class ProcessPoolExecutor:
    """``workers`` local processes; each gets the worker context once."""

    def __init__(self, context: WorkerContext, workers: int):
        if workers < 1:
            raise ConfigError(f"Invalid workers: {workers} (must be >= 1)")
        self.capacity = workers
        if context.threads is None:
            context.threads = max(1, (os.cpu_count() or 1) // workers)
        self.context = context
        self._futures: dict[cf.Future[JobEvent], Job] = {}
        self._pool: cf.ProcessPoolExecutor | None = None
        self._retries: dict[int, int] = {}
        self._finished_by_pool = 0

    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = new_pool(self.context, self.capacity)
            self._finished_by_pool = 0
        return self._pool

    def submit(self, job: Job) -> None:
        self._futures[self._ensure_pool().submit(_run, job)] = job

    def poll(self, timeout: float | None = None) -> list[JobEvent]:
        if not self._futures:
            return []
        done, _ = cf.wait(list(self._futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        events: list[JobEvent] = []
        broken = False
        for future in done:
            job = self._futures.pop(future)
            try:
                events.append(future.result())
                self._finished_by_pool += 1
            except BrokenProcessPool:
                broken = True
                self._futures[future] = job  # handled with the others below
            except Exception as exc:  # noqa: BLE001 - e.g. the job could not be sent to the worker
                events.append(JobEvent(job, error=f"{type(exc).__name__}: {exc}"))
        if broken:
            events.extend(self._recover())
        return events

    def _recover(self) -> list[JobEvent]:
        """A dead worker breaks the whole pool and we cannot tell whose job killed it: start a
        fresh pool and run each job it held once more; a job that breaks a pool twice fails."""
        jobs = list(self._futures.values())
        self.shutdown(cancel=True)
        if not self._finished_by_pool:
            raise ExecutorError(DIED_AT_START)
        failed = []
        for job in jobs:
            if self._retries.get(job.trial_id, 0) >= 1:
                failed.append(JobEvent(job, error="worker process died twice running this job (killed, or out of memory)"))
            else:
                self._retries[job.trial_id] = self._retries.get(job.trial_id, 0) + 1
                self.submit(job)
        return failed

    def running(self) -> int:
        return len(self._futures)

    def shutdown(self, cancel: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            stop_pool(pool, cancel)
        if cancel:
            self._futures.clear()


def stop_pool(pool: cf.ProcessPoolExecutor, cancel: bool) -> None:
    """Wait for the pool's work to end, or with ``cancel`` stop it now (the trials it was
    running are re-run on resume)."""
    if not cancel:
        pool.shutdown(wait=True)
        return
    processes = list(getattr(pool, "_processes", {}).values() or [])
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
