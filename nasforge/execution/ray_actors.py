"""Runs jobs on Ray actors (``executor: ray``): one machine's study, or a cluster's.

The driver owns the store and the checkpoints; actors only evaluate. The worker context (space,
data, evaluator) goes into Ray's object store once and each actor reads it once. Each ``poll``
cuts the queued jobs into shards as the batched pool does (jobs that can train together stay
together) and waits for all of them, returning the events in submission order: the study sees
the same events whatever the timing, the number of live actors or a fault. A shard's input
checkpoints travel with it and its new ones come back to the driver's cache, or, with
``checkpoint_dir`` (a directory every node reads and writes), stay there.

An actor lost mid-shard (its process killed, its node gone) is replaced, and the shard runs again
on a live actor: the same jobs together, so the same results. A shard lost twice runs job by
job; a job whose actor dies twice running it alone fails with the reason.
"""
from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from nasforge.errors import ConfigError
from nasforge.execution.base import ExecutorOptions, Job, JobEvent
from nasforge.execution.batch_pool import ShardPlan, pack, unpack
from nasforge.execution.batching import BatchRunner
from nasforge.execution.pool import ExecutorError
from nasforge.execution.worker import WorkerContext
from nasforge.store.checkpoints import CheckpointCache, CheckpointFiles, Payload, save_checkpoint

START_TIMEOUT = 300.0  # seconds to wait for a first actor before saying the cluster cannot hold one
MAX_FAILED_STARTS = 3  # actors in a row that died starting: the cause is not a lost node but the context


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor 'ray' needs Ray, which is not installed: pip install 'nasforge[ray]'") from None
    return ray


def check_settings(settings: dict[str, Any]) -> None:
    """What can be checked before any work: Ray is installed, and a ``host:port`` address answers
    (Ray itself waits a minute or more on one that does not)."""
    require_ray()
    address = settings.get("address")
    if address and "://" in address:
        raise ConfigError(f"ray.address {address!r}: Ray Client addresses are not supported; run nasforge on a node "
                          f"of the cluster with address auto (or the head's host:port)")
    folder = settings.get("checkpoint_dir")
    if folder and not Path(folder).is_dir():
        raise ConfigError(f"ray.checkpoint_dir {folder!r} is not a directory; give one that exists and that every "
                          f"node reads and writes (e.g. on NFS), or leave it out to send checkpoints back to the driver")
    if address and address != "auto":
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"ray.address {address!r} is not 'auto' or host:port (e.g. 10.0.0.5:6379)")
        try:
            socket.create_connection((host, int(port)), timeout=5.0).close()
        except OSError as exc:
            raise ConfigError(f"ray.address {address!r}: nothing answers there ({exc}); start the head node with "
                              f"`ray start --head --port {port}`, or leave ray.address out to start a local cluster") from None


JOB_LEVEL = ("working_dir", "py_modules")  # runtime_env fields Ray takes only from ray.init (uploaded once per job)


class RayWorker:
    """An actor's body: trains shards with the batched runner (the population trainer where the
    candidates allow it, one by one elsewhere). ``shared``: the directory every node reads and
    writes checkpoints in; None: they travel with the shards."""

    def __init__(self, context: WorkerContext, threads: int, shared: str | None):
        torch.set_num_threads(threads)
        context.directory = shared or tempfile.mkdtemp(prefix="nasforge-actor-")  # a scratch one: nothing is kept
        self.shared = shared
        self.runner = BatchRunner(context)

    def ready(self) -> tuple[int, str]:
        import ray
        return os.getpid(), ray.get_runtime_context().get_node_id()

    def run(self, jobs: list[Job], saved: dict[str, Payload]) -> Any:
        if self.shared is None:
            return pack(self.runner.run(jobs, unpack(saved).get))
        files = CheckpointFiles(self.shared)
        events, made = self.runner.run(jobs, files.get)
        for relative, payload in made.items():
            files.put(relative, payload)
        return pack((events, {}))


class SharedCheckpoints:
    """The driver's side of ``checkpoint_dir``: the actors write there; the study's best ones are
    copied into the study directory (``persist``), so its model is at hand without the cluster."""

    def __init__(self, shared: str, study_directory: str | None):
        self.shared, self.study = Path(shared), study_directory

    def get(self, relative: str) -> Payload | None:
        return None  # the actors read it from the shared directory themselves

    def put(self, relative: str, payload: Payload) -> None:
        pass

    def discard(self, relative: str) -> None:
        (self.shared / relative).unlink(missing_ok=True)

    def persist(self, relative: str) -> None:
        source = self.shared / relative
        if self.study and source.exists():
            save_checkpoint(Path(self.study) / relative, torch.load(source, map_location="cpu", weights_only=True))

    def maybe_flush(self) -> None:
        pass

    def flush(self) -> None:
        pass


class RayExecutor:
    """``workers`` Ray actors, each asking for ``num_cpus`` and ``num_gpus``. ``address``: None
    starts a local cluster (sized to hold them), ``auto`` or ``host:port`` joins one."""

    isolated = True  # trials run in actors: a crash there ends only the actor, which is replaced
    clock = None

    def __init__(self, context: WorkerContext, workers: int, *, address: str | None = None, num_cpus: float = 1,
                 num_gpus: float = 0, checkpoint_dir: str | None = None, capacity: int = 128,
                 runtime_env: dict[str, Any] | None = None):
        if workers < 1:
            raise ConfigError(f"Invalid workers: {workers} (must be >= 1)")
        self.ray = require_ray()
        self.context, self.workers = context, workers
        self.capacity, self.parallelism = max(capacity, workers), workers
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.checkpoints: CheckpointCache | SharedCheckpoints = (
            SharedCheckpoints(checkpoint_dir, context.directory) if checkpoint_dir else CheckpointCache(context.directory))
        self._shared = checkpoint_dir
        self._owns_ray = not self.ray.is_initialized()
        if self._owns_ray:
            self._connect(address, runtime_env)
        elif any(key in (runtime_env or {}) for key in JOB_LEVEL):
            raise ConfigError(f"ray.runtime_env's {', '.join(JOB_LEVEL)} take effect where nasforge starts or joins the "
                              f"cluster, not in a process that called ray.init itself: pass them to your ray.init")
        self._check_resources()
        self.plan = ShardPlan(context, workers)  # as the local batched pool: the same shards, the same results
        self._context_ref = self.ray.put(context)  # once: every actor reads the data from the object store
        self._actor_class = self.ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0)(RayWorker).options(
            runtime_env=_with_import_path(runtime_env))  # the job's runtime_env too, with the driver's import path
        self._live: list[Any] = []
        self._starting: dict[Any, Any] = {}  # actor -> its ready() ref
        for _ in range(workers):
            self._start_actor()
        self._queue: list[Job] = []
        self._strikes: dict[int, int] = {}  # per trial: actors lost running it alone
        self._failed_starts = 0
        self.nodes: set[str] = set()  # the Ray nodes its actors ran on
        self.actors_lost = 0

    @classmethod
    def from_options(cls, context: WorkerContext, options: ExecutorOptions) -> "RayExecutor":
        return cls(context, options.workers, **options.settings)

    def _connect(self, address: str | None, runtime_env: dict[str, Any] | None) -> None:
        import logging
        # ERROR: Ray's start-up warnings (its token authentication, on by default) would break the progress bar
        kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "include_dashboard": False,
                                  "runtime_env": runtime_env or None}
        if address is None:  # a new local cluster ("local": never one found running here) with room for every
            # actor (logical CPUs: two cores may host four actors)
            kwargs["num_cpus"] = max(os.cpu_count() or 1, int(self.workers * self.num_cpus + 0.999))
        try:
            self.ray.init(address=address or "local", **kwargs)
        except ConnectionError as exc:
            raise ConfigError(f"executor 'ray': cannot join the Ray cluster at {address!r} ({_first_line(exc)}); start "
                              f"one with `ray start --head`, or, if it uses token authentication (Ray 2.52+), set "
                              f"RAY_AUTH_MODE=token here with its token; or leave ray.address out to start a local one "
                              f"(`nasforge resume DIR --address local`)") from None

    def _check_resources(self) -> None:
        """A cluster that cannot hold even one actor is said now (Ray would wait for one forever)."""
        total = self.ray.cluster_resources()
        for name, needed in (("CPU", self.num_cpus), ("GPU", self.num_gpus)):
            if needed > total.get(name, 0.0):
                if self._owns_ray:
                    self.ray.shutdown()
                raise ConfigError(f"ray.num_{name.lower()}s {needed:g}: no node of the Ray cluster has that many "
                                  f"{name}s (it has {total.get(name, 0.0):g} in all); lower it, or add a node that has them")

    def _start_actor(self) -> None:
        threads = self.context.threads or max(1, int(self.num_cpus))
        actor = self._actor_class.remote(self._context_ref, threads, self._shared)
        self._starting[actor] = actor.ready.remote()

    # --- the executor protocol ---------------------------------------------------------------
    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def running(self) -> int:
        return len(self._queue)

    def poll(self, timeout: float | None = None) -> list[JobEvent]:
        jobs, self._queue = self._queue, []
        if not jobs:
            return []
        events: dict[int, JobEvent] = {}
        self._run_shards(self.plan(jobs), events)
        self.checkpoints.maybe_flush()
        return [events[job.trial_id] for job in jobs]  # submission order: the study stays deterministic

    def discard(self, relative: str) -> None:
        self.checkpoints.discard(relative)

    def persist(self, relative: str) -> None:
        self.checkpoints.persist(relative)

    def shutdown(self, cancel: bool = False) -> None:
        self._queue.clear()
        for actor in self._live + list(self._starting):
            self.ray.kill(actor)
        self._live, self._starting = [], {}
        self.checkpoints.flush()
        if self._owns_ray:
            self.ray.shutdown()

    # --- shards on actors --------------------------------------------------------------------
    def _run_shards(self, todo: list[list[Job]], events: dict[int, JobEvent]) -> None:
        """Run every shard on a live actor, one at a time per actor; a shard whose actor is
        lost runs again (split into single jobs the second time)."""
        todo = [list(shard) for shard in todo]
        losses: dict[tuple[int, ...], int] = {}
        running: dict[Any, tuple[Any, list[Job]]] = {}  # result ref -> (actor, shard)
        while todo or running:
            self._admit_started(wait=not self._live and not running)
            idle = [a for a in self._live if all(a is not busy for busy, _ in running.values())]
            while todo and idle:
                actor, shard = idle.pop(0), todo.pop(0)
                running[actor.run.remote(shard, pack(self._inputs(shard)))] = (actor, shard)
            if not running:
                continue
            done, _ = self.ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in done:
                actor, shard = running.pop(ref)
                try:
                    shard_events, made = unpack(self.ray.get(ref))
                except self.ray.exceptions.RayTaskError as exc:  # the shard's code raised: its jobs fail, the actor lives
                    shard_events, made = [JobEvent(job, error=f"{type(exc.cause).__name__}: {exc.cause}") for job in shard], {}
                except self.ray.exceptions.RayError:  # the actor is gone (killed, its node lost)
                    todo.extend(self._lost(actor, shard, losses, events))
                    continue
                for event in shard_events:
                    events[event.job.trial_id] = event
                for relative, payload in made.items():
                    self.checkpoints.put(relative, payload)

    def _inputs(self, shard: list[Job]) -> dict[str, Payload]:
        return {j.checkpoint_in: p for j in shard if j.checkpoint_in and (p := self.checkpoints.get(j.checkpoint_in)) is not None}

    def _lost(self, actor: Any, shard: list[Job], losses: dict[tuple[int, ...], int],
              events: dict[int, JobEvent]) -> list[list[Job]]:
        """Replace the lost actor; what of its shard runs again (the rest fails)."""
        self.actors_lost += 1
        if actor in self._live:
            self._live.remove(actor)
            self.ray.kill(actor)
            self._start_actor()
        key = tuple(job.trial_id for job in shard)
        losses[key] = losses.get(key, 0) + 1
        if len(shard) > 1:
            return [shard] if losses[key] < 2 else [[job] for job in shard]
        job = shard[0]
        self._strikes[job.trial_id] = self._strikes.get(job.trial_id, 0) + 1
        if self._strikes[job.trial_id] >= 2:
            events[job.trial_id] = JobEvent(job, error="the Ray actor died twice running this trial alone (a crash in "
                                                       "native code, or killed: out of memory?)")
            return []
        return [shard]

    def _admit_started(self, wait: bool) -> None:
        """Actors whose start finished join the live ones; ``wait``: none is live, so wait for one."""
        deadline = time.monotonic() + START_TIMEOUT
        while self._starting:
            refs = list(self._starting.values())
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0 if not wait else 1.0)
            for actor, ref in list(self._starting.items()):
                if ref not in ready:
                    continue
                del self._starting[actor]
                try:
                    self.nodes.add(self.ray.get(ref)[1])
                    self._live.append(actor)
                    self._failed_starts = 0
                except self.ray.exceptions.RayError as exc:  # it died starting (its node went?): start another
                    self._failed_starts += 1
                    if self._failed_starts >= MAX_FAILED_STARTS:
                        raise ExecutorError(
                            f"Ray actors could not start ({_first_line(exc)}); every node must import the space, "
                            f"evaluator and data: install your modules there or give ray.runtime_env") from None
                    self.actors_lost += 1
                    self._start_actor()
            if self._live or not wait:
                return
            if time.monotonic() > deadline:
                raise ExecutorError(f"no Ray actor started in {START_TIMEOUT:g} s: does the cluster have "
                                    f"{self.num_cpus:g} CPU(s) and {self.num_gpus:g} GPU(s) free for one?")
        if wait and not self._live:
            raise ExecutorError("no Ray actor is running or starting")


def _with_import_path(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """The actors' runtime environment: the user's, less what only the job takes (given to
    ``ray.init``), with the folders this driver imports user modules from (a config's
    ``mymodule:space``, a test's module) on their PYTHONPATH unless the user ships code or sets
    one: on this machine's nodes they then import what the driver imports; on other machines a
    folder that is not there is skipped (install the modules there, or ship them with
    ``runtime_env: {working_dir: ...}``)."""
    env = {key: value for key, value in (runtime_env or {}).items() if key not in JOB_LEVEL}
    env_vars = dict(env.get("env_vars") or {})
    if "PYTHONPATH" not in env_vars and not any(key in (runtime_env or {}) for key in JOB_LEVEL):
        installed = {os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}}
        own = [os.path.realpath(p or os.getcwd()) for p in sys.path]
        folders = [p for p in dict.fromkeys(own)
                   if os.path.isdir(p) and not any(p == i or p.startswith(i + os.sep) for i in installed)]
        env_vars["PYTHONPATH"] = os.pathsep.join(folders)
    if env_vars:
        env["env_vars"] = env_vars
    return env


def _first_line(exc: BaseException) -> str:
    """The error behind a Ray exception, in one line (Ray's own text is a page with tracebacks)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [line for line in lines if "Error:" in line and not line.startswith("ray.exceptions")]
    return (causes[-1] if causes else lines[0] if lines else type(exc).__name__)[:200]
