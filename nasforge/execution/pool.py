"""Runs jobs in a pool of local worker processes (``--workers N``)."""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import torch

from nasforge.errors import ConfigError, NasforgeError
from nasforge.execution.base import ExecutorOptions, Job, JobEvent, WorkersWriteCheckpoints
from nasforge.execution.worker import WorkerContext, run_job
from nasforge.heap import frozen_heap, reuse_freed_memory
from nasforge.private_api import pool_processes

_CONTEXT: WorkerContext | None = None
_GRACE = 10.0  # seconds past the timeout before a job that did not stop itself is stopped with its pool


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
    # cannot survive a fork, so once CUDA is initialised workers are spawned instead; nor can Ray's
    # threads and sockets (a forked worker's exit took the whole driver down in a process where
    # Ray was initialised).
    if (os.name == "posix" and "fork" in multiprocessing.get_all_start_methods() and not torch.cuda.is_initialized()
            and not _ray_initialised()):
        return "fork"
    return "spawn"


def _ray_initialised() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())


class ExecutorError(NasforgeError, RuntimeError):
    """The workers cannot run jobs at all (the command line prints it as one line)."""


DIED_AT_START = ("worker processes died before finishing any job. If you started the search from a script with "
                 "workers > 1, put the call under `if __name__ == \"__main__\":`; else check memory.")


class ProcessPoolExecutor(WorkersWriteCheckpoints):
    """``workers`` local processes; each gets the worker context once.

    A worker that dies (a segfault, the OOM killer) breaks the whole pool, and which job killed
    it is unknown: a fresh pool is started and the jobs it held run again, one at a time, so a
    job that breaks a pool when it runs alone is the culprit; it is run once more, alone, and
    fails with the reason if it breaks it again; the search goes on. A job past ``timeout``
    seconds stops itself in its worker (see ``run_job``); one that does not (stuck in native
    code) is stopped with its pool ``_GRACE`` seconds later and fails.
    """

    isolated = True  # every trial runs in a worker process

    def __init__(self, context: WorkerContext, workers: int, timeout: float | None = None):
        if workers < 1:
            raise ConfigError(f"Invalid workers: {workers} (must be >= 1)")
        self.capacity = self.parallelism = workers
        if context.threads is None:
            context.threads = max(1, (os.cpu_count() or 1) // workers)
        self.context = context
        self.timeout = timeout
        self._futures: dict[cf.Future[JobEvent], Job] = {}
        self._started: dict[cf.Future[JobEvent], float] = {}
        self._pool: cf.ProcessPoolExecutor | None = None
        self._suspects: list[Job] = []  # were running when a pool broke: run alone, one by one
        self._strikes: dict[int, int] = {}  # pools a trial broke running alone
        self._waiting: list[Job] = []  # new jobs held back while suspects run
        self._broken = False  # a submit found the pool dead

    @classmethod
    def from_options(cls, context: WorkerContext, options: ExecutorOptions) -> "ProcessPoolExecutor":
        return cls(context, options.workers, timeout=options.timeout)

    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = new_pool(self.context, self.capacity)
        return self._pool

    def submit(self, job: Job) -> None:
        if self._suspects or self._broken:
            self._waiting.append(job)
        else:
            self._send(job)

    def _send(self, job: Job) -> None:
        try:
            future = self._ensure_pool().submit(_run, job)
        except BrokenProcessPool:  # it died since the last poll: its jobs come back broken, then this one runs
            self._broken = True
            self._waiting.insert(0, job)
            return
        self._futures[future] = job
        self._started[future] = time.monotonic()

    def poll(self, timeout: float | None = None) -> list[JobEvent]:
        self._feed()
        if not self._futures:
            return []
        wait = timeout if self.timeout is None else min(timeout if timeout is not None else self.timeout, self.timeout)
        done, _ = cf.wait(list(self._futures), timeout=wait, return_when=cf.FIRST_COMPLETED)
        events: list[JobEvent] = []
        broken = False
        for future in done:
            job = self._futures.pop(future)
            self._started.pop(future, None)
            try:
                events.append(future.result())
            except BrokenProcessPool:
                broken = True
                self._futures[future] = job  # handled with the others below
            except Exception as exc:  # noqa: BLE001 - e.g. the job could not be sent to the worker
                events.append(JobEvent(job, error=f"{type(exc).__name__}: {exc}"))
        hung = self._hung()
        if broken or hung:
            events.extend(self._recover(hung))
        self._feed()
        return events

    def _hung(self) -> list[Job]:
        if self.timeout is None:
            return []
        now = time.monotonic()
        return [self._futures[f] for f, t in self._started.items()
                if f in self._futures and now - t > self.timeout + _GRACE]

    def _feed(self) -> None:
        """Suspects run alone; when none is left, the held-back jobs go."""
        if self._futures:
            return
        if self._broken:  # broken with nothing in flight: a fresh pool
            self._drop_pool()
        if self._suspects:
            self._send(self._suspects.pop(0))
        elif self._waiting:
            waiting, self._waiting = self._waiting, []
            for job in waiting:
                self._send(job)

    def _recover(self, hung: list[Job]) -> list[JobEvent]:
        """Stop the pool; fail the hung jobs, and the job that broke a pool running alone; the
        others become suspects."""
        jobs = list(self._futures.values())
        alone = len(jobs) == 1 and not hung
        self._drop_pool()
        failed = [JobEvent(job, error=f"the trial ran past the timeout of {self.timeout:g} s and was stopped")
                  for job in hung]
        for job in jobs:
            if job in hung:
                continue
            strikes = self._strikes[job.trial_id] = self._strikes.get(job.trial_id, 0) + alone
            if strikes >= 2:
                failed.append(JobEvent(job, error="the worker process died twice running this trial alone (a crash "
                                                  "in native code, or killed: out of memory?)"))
            else:
                self._suspects.append(job)
        return failed

    def _drop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            stop_pool(pool, cancel=True)
        self._futures.clear()
        self._started.clear()
        self._broken = False

    def running(self) -> int:
        return len(self._futures) + len(self._suspects) + len(self._waiting)

    def shutdown(self, cancel: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            stop_pool(pool, cancel)
        if cancel:
            self._futures.clear()
            self._started.clear()
            self._suspects.clear()
            self._waiting.clear()


def stop_pool(pool: cf.ProcessPoolExecutor, cancel: bool) -> None:
    """Wait for the pool's work to end, or with ``cancel`` stop it now (the trials it was
    running are re-run on resume)."""
    if not cancel:
        pool.shutdown(wait=True)
        return
    processes = pool_processes(pool)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
