"""The study: the driver loop that joins space, strategy, scheduler, executor, evaluator and store.

    space -> strategy.ask -> scheduler (budget) -> executor -> evaluator -> store -> strategy.tell

The study owns the store: it records the trials it starts, and the results of each poll of the
executor, together with the scheduler's (and so the strategy's) state after them, in one
transaction each. A study killed at any moment
resumes from its store: finished trials are kept, trials that were running are run again, and
the search continues exactly as it would have.
"""
from __future__ import annotations

import bisect
import dataclasses
import contextlib
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from nasforge.errors import ConfigError, StoreError
from nasforge.execution.base import Executor, Job, JobEvent
from nasforge.execution.worker import HARDWARE_METRICS
from nasforge.heap import frozen_heap, reuse_freed_memory
from nasforge.results import best_trial, load_trained_model
from nasforge.schedulers.base import Decision, Resume, Scheduler, Start
from nasforge.space.space import Space
from nasforge.store.base import Store, Trial
from nasforge.store.encoding import dumps
from nasforge.store.lock import StudyLock
from nasforge.store.sqlite import SQLiteStore
from nasforge.strategies.base import Strategy
from nasforge.strategies.middleware import Canonical
from nasforge.types import Objective, Result, TrialState

TrialCallback = Callable[["Study", Trial], None]
_STATE_KEY = "scheduler_state"
SEARCH_LOG_KEY = "search_log"  # a strategy's own record per step (a surrogate's rank correlations), for the report
ONESHOT_KEY = "oneshot"  # a one-shot search's record: per epoch, its figures, distributions and derived architecture
STOPPED_KEY = "stopped_by_config"  # the config mistake a result revealed: resuming would repeat it
_CRASHES_KEY = "crashed_while_running"  # trial id -> [crashes of the driver while it ran there, alone the last time]
_ALIVE_KEY = "driver_alive"  # set while a driver runs the study: found set, the last one died without a word


def trial_seed(seed: int, trial_id: int) -> int:
    return int(np.random.SeedSequence([seed, trial_id]).generate_state(1)[0])


class Study:
    def __init__(self, *, directory: str | Path, space: Space, data: Any, evaluator: Callable[..., Any],
                 strategy: Strategy, scheduler: Scheduler, executor_factory: Callable[[], Executor],
                 objective: Objective = Objective(), seed: int = 0, max_budget: float = 30,
                 max_trials: int | None = None, keep_checkpoints: int = 5, repeats: bool = False,
                 lock: StudyLock | None = None, store: Store | None = None,
                 alone_factory: Callable[[], Executor] | None = None):
        """``store``: where trials are recorded (default: SQLite in ``directory``, where
        checkpoints go in any case). ``alone_factory``: an executor that runs one trial in a
        worker process of its own, for trials suspected of having crashed the driver (see
        ``_run_isolated``); without it they run again as before."""
        self.directory = Path(directory)
        self._lock = lock  # held already when the study was created (see api.create_study)
        self.store: Store = store if store is not None else SQLiteStore(self.directory)
        self.alone_factory = alone_factory
        self.space, self.data, self.evaluator = space, data, evaluator
        self.objective, self.seed = objective, int(seed)
        self.max_budget, self.max_trials = max_budget, max_trials
        self.strategy = Canonical(strategy, space.fill, walk=space.walk, repeats=repeats)
        self._search_first = getattr(strategy, "search_first", None)  # a one-shot search runs before the trials
        self.on_oneshot_epoch: Callable[[dict[str, Any]], None] | None = None  # told each epoch's record (the CLI)
        self.on_search_log: Callable[[list[dict[str, Any]]], None] | None = None  # told the strategy's record as it changes
        self.scheduler = scheduler
        self.executor_factory = executor_factory
        self.where = ""  # how trials run, said on the progress line (set by whoever built the executor)
        self._set_up = False
        self._saved_state: str | None = None
        self._saved_log: list[dict[str, Any]] | None = None
        self._executor: Executor | None = None
        self.keep_checkpoints = keep_checkpoints
        self._kept: list[tuple[float, int, str]] | None = None  # the best complete trials' checkpoints
        self.jobs_started = 0
        self._misconfigured: ConfigError | None = None  # set by a result that shows the config is wrong
        self._durable: list[str] = []  # checkpoints of the best complete trials, to be made durable

    # --- set-up and state --------------------------------------------------------------------
    def prepare(self) -> None:
        """Record the schema and restore the search state (``run`` does this itself)."""
        if self._set_up:
            return
        stopped = self.store.get_meta(STOPPED_KEY)
        if stopped:
            raise ConfigError(f"this study was stopped by a mistake in its config, which resuming would repeat: "
                              f"{stopped}; fix the config and start a new search")
        stored = self.store.get_meta("schema")
        if stored is not None:
            from nasforge.space.schema import Schema
            self.space.set_schema(Schema.from_json(stored))  # type: ignore[arg-type]
        else:
            self.store.set_meta("schema", self.space.schema.to_json())
        strategy_rng, scheduler_rng = np.random.default_rng(np.random.SeedSequence(self.seed)).spawn(2)
        self.strategy.setup(self.space.schema, strategy_rng)
        self.scheduler.setup(self.strategy, self.max_budget, self.max_trials, scheduler_rng)
        state = self.store.get_meta(_STATE_KEY)
        if state is not None:
            try:
                self.scheduler.load_state_dict(state)  # type: ignore[arg-type]
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
                raise StoreError(f"the study's search state ({_STATE_KEY} in {self.store.location}) is damaged "
                                 f"({type(exc).__name__}: {str(exc)[:80]}); it cannot be resumed") from None
            self.strategy.remember((t.arch, _latest_result(t)) for t in self.store.trials())
        self.store.set_meta("seed", self.seed)
        constraint = self.objective.constraint
        self.store.set_meta("objective", {"metric": self.objective.metric, "mode": self.objective.mode,
                                          "constraint": dataclasses.asdict(constraint) if constraint else None})
        self._set_up = True

    @property
    def one_shot(self) -> bool:
        """Whether a supernet search comes first (its derived architecture is then the one trial)."""
        return self._search_first is not None

    def _record_oneshot(self, history: list[dict[str, Any]]) -> None:
        self.store.set_meta(ONESHOT_KEY, history)
        if self.on_oneshot_epoch is not None and history:
            self.on_oneshot_epoch(history[-1])

    def expected_jobs(self) -> int:
        """How many jobs the scheduler plans to run in all (for progress bars)."""
        if self.one_shot:
            return 1
        self.prepare()
        expected = getattr(self.scheduler, "expected_jobs", None)
        return int(expected()) if callable(expected) else int(self.max_trials or 0)

    def _save_state(self) -> None:
        for trial_id in self.scheduler.pop_stopped():  # in the same transaction as the state that stopped them
            self.store.set_state(trial_id, TrialState.PRUNED)
            self._drop_checkpoint(self.store.trial(trial_id).checkpoint)
        state = dumps(self.scheduler.state_dict())
        if state != self._saved_state:  # the loop asks often while waiting; write only changes
            self.store.set_meta_raw(_STATE_KEY, state)
            self._saved_state = state
            search_log = getattr(self.strategy.inner, "search_log", None)
            log = search_log() if callable(search_log) else None
            if log is not None and log != self._saved_log:  # most asks and tells leave a step's record as it was
                self.store.set_meta(SEARCH_LOG_KEY, log)
                self._saved_log = log
                if self.on_search_log is not None:
                    self.on_search_log(log)

    # --- the loop ----------------------------------------------------------------------------
    def run(self, on_trial_end: TrialCallback | None = None) -> "Study":
        reuse_freed_memory()
        lock = self._lock if self._lock is not None and self._lock.held else StudyLock(self.directory).acquire()
        self._lock = None
        with contextlib.ExitStack() as stack, frozen_heap():
            stack.callback(lock.release)
            self.prepare()
            if self._search_first is not None:
                self._search_first(self.space, self.data, self.directory, self.seed, self._record_oneshot)
            executor = self._executor = self.executor_factory()
            # Strategies may hold asks back until results arrive, but never below real parallelism.
            self.strategy.min_pending = executor.parallelism
            try:
                self._loop(executor, on_trial_end)
            except BaseException:
                executor.shutdown(cancel=True)
                with contextlib.suppress(Exception):
                    self.store.set_meta(_ALIVE_KEY, False)
                raise
            self.store.set_meta(_ALIVE_KEY, False)
            executor.shutdown()
            if executor.clock is not None:  # a simulated executor: keep the simulated wall time of the search
                previous = self.store.get_meta("simulated_seconds") or 0.0
                self.store.set_meta("simulated_seconds", float(previous) + float(executor.clock))  # type: ignore[arg-type]
            self._finalise()
        return self

    def _loop(self, executor: Executor, on_trial_end: TrialCallback | None) -> None:
        crashes = self._count_crash(executor)
        queued = self.store.trials([TrialState.QUEUED])  # left over from a crash: run them again
        suspects = [t for t in queued if _suspect(*crashes.get(t.id, (0, False)))] if self.alone_factory else []
        if suspects:
            self._run_isolated(suspects, on_trial_end)
        rest = [t for t in queued if t not in suspects]  # as before the crash: the same results
        with self.store.atomic():
            jobs = [self._job_of(trial, trial.budget) for trial in rest]
        self._submit(executor, jobs)
        while True:
            self._start_jobs(executor)
            if executor.running() == 0:
                return
            events = executor.poll(timeout=0.2)
            if events:
                self._record_all(events, on_trial_end)

    def _run_isolated(self, suspects: list[Trial], on_trial_end: TrialCallback | None) -> None:
        """Run trials that were running when the driver died in a worker process of their own,
        one at a time: a death there is the trial's own (the pool runs it once more, then fails
        it with the reason), and the driver lives to record it; a kill of the driver meanwhile
        fails nothing. The same code runs the trial, so it gives the same results."""
        isolated = self.alone_factory()  # type: ignore[misc]
        try:
            for trial in suspects:
                with self.store.atomic():
                    job = self._job_of(trial, trial.budget)
                isolated.submit(job)
                self.jobs_started += 1
                while isolated.running():
                    events = isolated.poll(timeout=0.2)
                    if events:
                        self._record_all(events, on_trial_end)
        finally:
            isolated.shutdown(cancel=True)

    def _count_crash(self, executor: Executor) -> dict[int, tuple[int, bool]]:
        """Trials left running by a driver that died go back to the queue. Where trials run inside
        the driver (``executor.isolated`` False) a hard death may be a trial's own (a segfault,
        the OOM killer) or not (a kill -9): it is counted against the trials that were running,
        with whether each ran alone. A trial that ran alone, or in two such deaths, then runs in a
        worker process of its own (``_run_isolated``), which tells the two apart; a group that
        died once runs again as it was (a kill -9 resumes to the same results). A driver that
        stopped on an exception (Ctrl-C) did not die."""
        with self.store.atomic():
            running = self.store.requeue_running()
            crashed = self.store.get_meta(_ALIVE_KEY) and not executor.isolated
            crashes = {int(k): (int(n), bool(a)) for k, (n, a) in (self.store.get_meta(_CRASHES_KEY) or {}).items()}  # type: ignore[union-attr]
            if running and crashed:
                for trial_id in running:
                    crashes[trial_id] = (crashes.get(trial_id, (0, False))[0] + 1, len(running) == 1)
                self.store.set_meta(_CRASHES_KEY, {str(k): list(v) for k, v in crashes.items()})
            self.store.set_meta(_ALIVE_KEY, True)  # cleared when this driver stops, by any exit it lives through
        return {t: c for t, c in crashes.items() if t in running}

    def _start_jobs(self, executor: Executor) -> None:
        """Start every job the scheduler has now (up to the executor's capacity): the trials and
        the scheduler's state in one transaction, then the jobs to the executor."""
        jobs: list[Job] = []
        with self.store.atomic():
            while executor.running() + len(jobs) < executor.capacity:
                job = self._next_job()
                if job is None:  # WAIT or done
                    break
                jobs.append(job)
            self._save_state()
        self._submit(executor, jobs)

    def _next_job(self) -> Job | None:
        next_id = self.store.count()
        suggestion = self.scheduler.suggest(next_id)
        if isinstance(suggestion, Start):
            seed = trial_seed(self.seed, next_id)
            trial_id = self.store.create_trial(suggestion.arch, suggestion.budget, seed=seed)
            assert trial_id == next_id, "trial ids must be assigned in order"
            return self._job(trial_id, suggestion.budget, suggestion.arch, seed, None, resumed=False)
        if isinstance(suggestion, Resume):
            return self._job_of(self.store.trial(suggestion.trial_id), suggestion.budget)
        return None

    def _job(self, trial_id: int, budget: float, arch: Any, seed: int, checkpoint: str | None, resumed: bool) -> Job:
        """The job that trains trial ``trial_id`` (of ``arch`` and ``seed``, continuing from
        ``checkpoint``) to ``budget``, marked as started in the store."""
        self.store.start(trial_id, budget)
        out = f"checkpoints/trial_{trial_id:05d}_b{budget:g}.pt"
        return Job(trial_id, arch, budget, seed, checkpoint, out, resumed)

    def _job_of(self, trial: Trial, budget: float) -> Job:
        return self._job(trial.id, budget, trial.arch, trial.seed, trial.checkpoint, resumed=trial.budget_used > 0)

    def _submit(self, executor: Executor, jobs: list[Job]) -> None:
        for job in jobs:
            executor.submit(job)
        self.jobs_started += len(jobs)

    def _record_all(self, events: list[JobEvent], on_trial_end: TrialCallback | None) -> None:
        """Record a poll's results and the scheduler's state after them in one transaction; drop
        the checkpoints they replace once it is committed."""
        dropped: list[str | None] = []
        with self.store.atomic():
            for event in events:
                self._record(event, dropped)
            # what the callback sees: each trial as its job left it (read only when someone looks)
            trials = [self.store.trial(event.job.trial_id) for event in events] if on_trial_end is not None else []
            self._save_state()
        for relative in dropped:
            self._drop_checkpoint(relative)
        for relative in self._durable:  # the best trials' weights survive a kill
            self._executor.persist(relative)  # type: ignore[union-attr]
        self._durable.clear()
        if self._misconfigured is not None:
            self.store.set_meta(STOPPED_KEY, str(self._misconfigured))
            raise self._misconfigured
        for trial in trials:
            on_trial_end(self, trial)  # type: ignore[misc]

    def _record(self, event: JobEvent, dropped: list[str | None]) -> None:
        job = event.job
        error = event.error
        loss = None
        if error is None:
            missing = missing_metric(self.objective, event.metrics or {})
            if missing is not None:  # a mistake in the config, not in this trial: stop (after recording it)
                error = missing
                self._misconfigured = ConfigError(missing)
            loss = self.objective.loss(event.metrics or {})
            if loss is None and error is None:
                error = f"objective metric {self.objective.metric!r} is not finite: {event.metrics}"
        result = Result(event.metrics or {}, loss, job.budget, failed=error is not None, resumed=job.resumed)
        decision = self.scheduler.on_result(job.trial_id, job.arch, result)
        state = TrialState.FAILED if error else {
            Decision.COMPLETE: TrialState.COMPLETE, Decision.PAUSE: TrialState.PAUSED, Decision.PRUNE: TrialState.PRUNED,
        }[decision]
        previous = job.checkpoint_in  # the trial's checkpoint when the job started: only the job changes it
        self.store.append_curves(job.trial_id, [(point.get("epoch", i + 1), point) for i, point in enumerate(event.curve)],
                                 replace=not event.retrained)
        if error:
            self.store.finish(job.trial_id, state, error=error, duration=event.duration)
        else:
            self.store.finish(job.trial_id, state, metrics=event.metrics, loss=loss, budget=job.budget,
                              duration=event.duration, checkpoint=event.checkpoint)
        if previous != event.checkpoint:  # only the latest checkpoint of a trial is needed
            dropped.append(previous)
        if state is TrialState.COMPLETE and event.checkpoint:
            dropped.extend(self._keep_best_checkpoints(job.trial_id, loss, event.checkpoint))  # type: ignore[arg-type]
            if event.checkpoint not in dropped:
                self._durable.append(event.checkpoint)

    def _drop_checkpoint(self, relative: str | None) -> None:
        """Checkpoints are a cache: a dropped one is trained again if it is ever needed."""
        if not relative:
            return
        if self._executor is not None:
            self._executor.discard(relative)
        with contextlib.suppress(OSError):
            (self.directory / relative).unlink()

    def _keep_best_checkpoints(self, trial_id: int, loss: float, checkpoint: str) -> list[str]:
        """Complete trials keep their weights only while among the best ``keep_checkpoints``
        (pruned ones never do): the best model is always at hand and the disk stays small.
        Returns the checkpoints to drop."""
        if self._kept is None:  # first use, or after a resume: the complete trials so far
            done = [t for t in self.store.trials([TrialState.COMPLETE]) if t.loss is not None and t.checkpoint]
            self._kept = sorted(((t.loss, t.id, t.checkpoint) for t in done if t.id != trial_id), key=lambda k: k[:2])  # type: ignore[misc]
        bisect.insort(self._kept, (loss, trial_id, checkpoint), key=lambda k: k[:2])
        dropped = []
        while len(self._kept) > self.keep_checkpoints:
            dropped.append(self._kept.pop()[2])
        return dropped

    def _finalise(self) -> None:
        """The search is over: trials still waiting for a promotion will not get one."""
        for trial in self.store.trials([TrialState.PAUSED]):
            self.store.set_state(trial.id, TrialState.PRUNED)
        self.store.set_meta("finished_at", time.time())

    # --- results -----------------------------------------------------------------------------
    @property
    def trials(self) -> list[Trial]:
        return self.store.trials()

    @property
    def best(self) -> Trial | None:
        return best_trial(self.store.trials())

    def best_model(self) -> nn.Module:
        best = self.best
        if best is None:
            raise StoreError("The study has no successful trial yet")
        return load_trained_model(self.space, self.directory, best, self.evaluator, self.data)


def _suspect(crashes: int, alone: bool) -> bool:
    """Whether a trial that was running when the driver died runs in a process of its own next:
    it was alone then (the death may be its own), or it was in two deaths."""
    return crashes >= 2 or (crashes >= 1 and alone)


def missing_metric(objective: Objective, metrics: dict[str, float]) -> str | None:
    """What is wrong when an evaluator's result lacks a metric the objective needs, else None."""
    needed = [objective.metric] + ([objective.constraint.metric] if objective.constraint else [])
    for name in needed:
        if name not in metrics:
            role = "objective" if name == objective.metric else "constraint"
            hint = " or add a hardware section, which measures it" if name in HARDWARE_METRICS else ""
            return (f"the evaluator returned no {name!r} metric, which the {role} needs; it returned: "
                    f"{', '.join(sorted(metrics)) or 'no metrics'} (set the {role}'s metric to one of them{hint})")
    return None


def _latest_result(trial: Trial) -> Result | None:
    """What the strategy was last told of a trial (None while it has no result yet)."""
    if trial.state is TrialState.FAILED:
        return Result(trial.metrics, None, trial.budget_used, failed=True)
    if trial.budget_used <= 0:
        return None
    return Result(trial.metrics, trial.loss, trial.budget_used)
