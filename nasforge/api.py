"""Assemble and run studies from a config or from Python objects.

``search`` is the Python front door; the CLI goes through ``create_study`` and ``open_study``.
"""
from __future__ import annotations

import datetime as dt
import inspect
import os
from pathlib import Path
from typing import Any, Callable

from nasforge.config import StudyConfig, instantiate, parse_config
from nasforge.yaml_files import dump_yaml
from nasforge.datasets import load_dataset
from nasforge.errors import ConfigError, StoreError
from nasforge.execution import EXECUTORS, ExecutorOptions
from nasforge.execution.pool import ProcessPoolExecutor
from nasforge.execution.worker import HARDWARE_METRICS, MEASURED_ONLY, HardwareSettings, WorkerContext
from nasforge.oneshot.base import is_one_shot
from nasforge.oneshot.strategy import OneShotStrategy
from nasforge.registry import add_module_dirs, import_object, module_dir
from nasforge.space.space import Space
from nasforge.spaces import SPACES
from nasforge.store import STORES
from nasforge.store.sqlite import DB_NAME, SQLiteStore
from nasforge.store.lock import StudyLock
from nasforge.study import Study
from nasforge.train.data import Data
from nasforge.train.evaluator import TrainsTogether, trial_parameters
from nasforge.train.trainer import SupervisedTrainer
from nasforge.types import Constraint, Objective


def default_out_dir(cfg: StudyConfig) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.space.name.replace(':', '_').replace('.', '_')}-{cfg.dataset.name}-{stamp}"


class Objects:
    """Python objects that replace config entries (from the API); None means: build from the config."""

    def __init__(self, space: Callable[..., Any] | None = None, data: Any = None, evaluate: Callable[..., Any] | None = None,
                 strategy: Any = None, scheduler: Any = None):
        self.space, self.data, self.evaluate, self.strategy, self.scheduler = space, data, evaluate, strategy, scheduler


def build_study(cfg: StudyConfig, directory: Path, objects: Objects | None = None, lock: StudyLock | None = None) -> Study:
    objects = objects or Objects()
    data = objects.data if objects.data is not None else load_dataset({"name": cfg.dataset.name, **cfg.dataset.args})
    strategy = objects.strategy or instantiate("strategy", cfg.strategy)
    if is_one_shot(strategy):  # a supernet search, then its architecture retrained as a trial
        strategy = OneShotStrategy(strategy)
        strategy.check_study(data, cfg.scheduler.name if objects.scheduler is None else type(objects.scheduler).__name__)
    space_fn = objects.space or SPACES.get(cfg.space.name)
    context = data.context() if isinstance(data, Data) else {}
    space = Space(space_fn, context, name=cfg.space.name, args=cfg.space.args)
    if isinstance(strategy, OneShotStrategy):
        strategy.check_space(space)
    if objects.evaluate is not None:
        evaluator = objects.evaluate
    elif cfg.evaluator:
        evaluator = _user_evaluator(cfg.evaluator.name, cfg.evaluator.args)
    else:
        evaluator = SupervisedTrainer(**cfg.trainer.model_dump())
    if isinstance(evaluator, SupervisedTrainer) and isinstance(data, Data):
        _check_reported(cfg, evaluator.metric_names(data.task) + _hardware_reports(cfg), data.task)
    scheduler = objects.scheduler or instantiate("scheduler", cfg.scheduler)
    context_for_workers = WorkerContext(space, data, evaluator, str(directory), hardware=_hardware(cfg, data, space),
                                        timeout=cfg.trial_timeout)
    kind = cfg.executor
    if kind == "auto":  # an evaluator that trains models together (the built-in one) does, in each process
        kind = "batched" if isinstance(evaluator, TrainsTogether) else ("pool" if isinstance(cfg.workers, int) and cfg.workers > 1 else "serial")
    make_executor = EXECUTORS.get(kind)
    workers = resolve_workers(cfg.workers, kind, cfg.trainer.threads)
    context_for_workers.threads = cfg.trainer.threads
    options = ExecutorOptions(workers, cfg.trial_timeout, cfg.ray.model_dump() if cfg.ray else {})
    if kind == "ray":  # Ray missing or a wrong address is said now, before any work
        from nasforge.execution.ray_actors import check_settings
        check_settings(options.settings)
    study = Study(directory=directory, space=space, data=data, evaluator=evaluator, strategy=strategy, scheduler=scheduler,
                 executor_factory=lambda: make_executor(context_for_workers, options),
                 alone_factory=lambda: ProcessPoolExecutor(context_for_workers, 1), objective=_objective(cfg),
                 seed=cfg.seed, max_budget=cfg.budget, max_trials=cfg.trials,
                 keep_checkpoints=cfg.keep_checkpoints, repeats=cfg.repeats, lock=lock,
                 store=STORES.get(cfg.store)(directory))
    threads = cfg.trainer.threads
    study.where = (f"{kind}, {workers} worker{'s' * (workers > 1)} x {threads} thread{'s' * (threads > 1)}"
                   + (" (set workers, trainer.threads to change)" if cfg.workers == "auto" else ""))
    return study


PARALLEL_EXECUTORS = ("batched", "pool", "ray")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | str, executor: str, threads: int = 1) -> int:
    """``workers: auto``: as many workers of ``threads`` threads as the usable cores hold, for
    executors that run trials side by side; one for the serial and simulated ones."""
    if workers != "auto":
        return int(workers)
    return max(1, usable_cores() // threads) if executor in PARALLEL_EXECUTORS else 1


def _check_reported(cfg: StudyConfig, reported: tuple[str, ...], task: str) -> None:
    """The built-in trainer's metrics are known in advance: a misspelt objective fails now."""
    c = cfg.objective.constraint
    for role, name in (("objective", cfg.objective.metric), ("constraint", c.metric if c else None)):
        if name is not None and name not in reported:
            hint = " (latency, params and flops need the hardware section)" if name in HARDWARE_METRICS else ""
            raise ConfigError(f"{role} metric {name!r} is not one the built-in trainer reports on {task} data; "
                              f"it reports: {', '.join(reported)}{hint}")


def _user_evaluator(path: str, args: dict[str, Any]) -> Callable[..., Any]:
    """An evaluator from an import path: a function (args bound to it) or a class (built with args)."""
    import functools
    target = import_object(path)
    if inspect.isclass(target):
        try:
            return target(**args)
        except TypeError as exc:
            raise ConfigError(f"evaluator {path!r}: {exc}") from exc
    if not callable(target):
        raise ConfigError(f"evaluator {path!r} is a {type(target).__name__}, not a function or class")
    evaluator = functools.partial(target, **args) if args else target
    try:
        inspect.signature(evaluator).bind(None, None, None, None, **dict.fromkeys(trial_parameters(evaluator)))
    except TypeError:
        raise ConfigError(f"evaluator {path!r} cannot be called as evaluate(model, data, budget, state)") from None
    except ValueError:  # a builtin without a signature: the call will tell
        pass
    return evaluator


def train_latency_predictor(cfg: StudyConfig, samples: int, seed: int, out: Path, kind: str = "linear") -> Any:
    """Measure ``samples`` sampled architectures of the config's space with its hardware settings
    (defaults without a hardware section), fit a predictor, save it to ``out`` and return it."""
    from nasforge.config import HardwareConfig
    from nasforge.hardware.cache import LatencyCache, default_cache_path
    from nasforge.hardware.predictor import fit_predictor, measure_architectures
    if samples < 8:
        raise ConfigError(f"Invalid samples: {samples} (a predictor needs at least 8 measured architectures)")
    data = load_dataset({"name": cfg.dataset.name, **cfg.dataset.args})
    space = Space(SPACES.get(cfg.space.name), data.context() if isinstance(data, Data) else {}, name=cfg.space.name,
                  args=cfg.space.args)
    hw = cfg.hardware or HardwareConfig()
    shape = tuple(hw.input_shape or getattr(data, "input_shape", ()) or ())
    if not shape:
        raise ConfigError("a latency predictor needs an input shape; give hardware.input_shape or a dataset")
    settings = hw.model_dump(include={"batch_size", "threads", "device", "repeats", "min_seconds"})
    measured = measure_architectures(space, samples, shape, seed=seed, cache=LatencyCache(default_cache_path("arch_latency.json")),
                                     **settings)
    predictor = fit_predictor(space, measured, shape, seed=seed, settings=settings, kind=kind)
    predictor.save(out)
    return predictor


def _hardware_reports(cfg: StudyConfig) -> tuple[str, ...]:
    if cfg.hardware is None:
        return ()
    if cfg.hardware.predictor is None:
        return HARDWARE_METRICS
    return tuple(m for m in HARDWARE_METRICS if m not in MEASURED_ONLY) + ("latency_predicted_ms",)


def _hardware(cfg: StudyConfig, data: Any, space: Space) -> HardwareSettings | None:
    hw = cfg.hardware
    if hw is None:
        return None
    shape = tuple(hw.input_shape) if hw.input_shape else getattr(data, "input_shape", None)
    if not shape:
        raise ConfigError("hardware: measuring a model needs an input shape; give hardware.input_shape or a dataset")
    from nasforge.hardware.latency import resolve_measure_device
    resolve_measure_device(hw.device)  # a device this machine lacks is a config error now, not a failure per trial
    predictor = None
    if hw.predictor is not None:  # read and checked against the space now, before any work
        from nasforge.hardware.predictor import LatencyPredictor
        predictor = LatencyPredictor.load(hw.predictor).bind(space)
    return HardwareSettings(tuple(shape), **hw.model_dump(exclude={"input_shape", "predictor"}), predictor=predictor,
                            final_budget=cfg.budget)


def _objective(cfg: StudyConfig) -> Objective:
    c = cfg.objective.constraint
    constraint = Constraint(**c.model_dump()) if c is not None else None
    return Objective(cfg.objective.metric, cfg.objective.mode, constraint)


def create_study(cfg: StudyConfig, directory: Path | None = None, objects: Objects | None = None,
                 resumable: str | None = None) -> Study:
    """A new study in a new (or empty) directory. ``resumable`` is None when the config alone can
    rebuild the study (``nasforge resume``), else the reason why not."""
    directory = Path(directory or cfg.out or default_out_dir(cfg))
    _check_new_study_directory(directory)
    created = not directory.exists()
    lock = StudyLock(directory).acquire()  # before anything is written: a concurrent search loses cleanly
    try:
        if (directory / DB_NAME).exists() and SQLiteStore(directory).count() > 0:  # ours to open: the lock is held
            raise ConfigError(f"{str(directory)!r} already holds a study; continue it with `nasforge resume {directory}` "
                              f"or choose another --out")
        try:
            study = build_study(cfg, directory, objects, lock)
        except ConfigError:  # e.g. Ray missing: the directory is left as it was found
            _remove_new_study(directory, created)
            raise
        try:
            study.prepare()  # the strategy meets the space's schema: a refusal comes now, before anything is recorded
        except ConfigError:
            study.store.close()
            _remove_new_study(directory, created)
            raise
        study.store.set_meta("config", cfg.model_dump(mode="json"))
        study.store.set_meta("module_dirs", _user_module_dirs(cfg))
        study.store.set_meta("resumable", resumable)
        (directory / "config.yaml").write_text(dump_yaml(cfg.model_dump(mode="json")))
    except BaseException:
        lock.release()
        raise
    return study


def _remove_new_study(directory: Path, created: bool) -> None:
    """Undo a study refused at its start: the files it wrote (the directory too, if it made it),
    so that the same --out works for the corrected config."""
    for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
        (directory / name).unlink(missing_ok=True)
    if created:
        import shutil
        shutil.rmtree(directory, ignore_errors=True)


def _check_new_study_directory(directory: Path) -> None:
    """A study is written into a new or empty directory (or one holding a study, refused above
    with a hint to resume), never among someone's files."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--out {str(directory)!r} is a file; give a new or empty directory")
    if directory.is_dir() and not (directory / DB_NAME).exists():
        others = sorted(p.name for p in directory.iterdir() if p.name != ".lock")
        if others:
            raise ConfigError(f"--out {str(directory)!r} is not empty ({', '.join(others[:3])}"
                              f"{', ...' if len(others) > 3 else ''}); a study needs a new or empty directory")


def _user_module_dirs(cfg: StudyConfig) -> list[str]:
    """Where the config's user modules were imported from, so that resume, export and report
    find them from any directory."""
    names = [c.name for c in (cfg.space, cfg.dataset, cfg.strategy, cfg.scheduler, cfg.evaluator)
             if c is not None and ":" in c.name]
    return sorted({d for d in map(module_dir, names) if d is not None})


def stored_config(directory: str | Path) -> tuple[StudyConfig, str | None]:
    store = SQLiteStore(directory, read_only=True)
    try:
        data = store.get_meta("config")
        reason = store.get_meta("resumable")
        add_module_dirs(store.get_meta("module_dirs") or [])  # type: ignore[arg-type]
    finally:
        store.close()
    if data is None:
        raise StoreError(f"{str(directory)!r} holds no study config")
    return parse_config(data, f"stored in {directory}"), reason  # type: ignore[return-value]


def open_study(directory: str | Path, objects: Objects | None = None, where: dict[str, Any] | None = None) -> Study:
    """An existing study, rebuilt from its stored config (objects replace what cannot be stored).
    ``where``: where it runs now (``executor``, ``workers``, ``ray``), which changes no trial: the
    same study gives the same trials on every executor."""
    cfg, reason = stored_config(directory)
    if where:
        cfg = parse_config({**cfg.model_dump(mode="json"), **where}, f"stored in {directory}, with {where}")
    objects = objects or Objects()
    if reason and objects.space is None and objects.data is None and objects.evaluate is None and objects.strategy is None:
        raise ConfigError(f"the study in {str(directory)!r} was made from Python objects ({reason}); "
                          f"resume it from Python with nasforge.resume({str(directory)!r}, ...) passing the same objects")
    return build_study(cfg, Path(directory), objects)


def _spec(value: Any, kind: str) -> tuple[Any, Any, str | None]:
    """Split an API argument into (config entry, object, reason the config alone cannot rebuild it)."""
    if value is None or isinstance(value, (str, dict)):
        return value, None, None
    target = value if inspect.isfunction(value) or inspect.isclass(value) else type(value)
    module, name = getattr(target, "__module__", "?"), getattr(target, "__qualname__", "?")
    importable = inspect.isfunction(value) and module != "__main__" and "<" not in name
    return f"{module}:{name}", value, None if importable else f"the {kind} is a Python object ({name})"


def search(space: Any = "mlp", data: Any = None, strategy: Any = "random", scheduler: Any = "full", *,
           budget: float = 30, trials: int = 20, seed: int = 0, workers: int | str = "auto", evaluate: Callable[..., Any] | None = None,
           objective: str = "val_loss", mode: str | None = None, trainer: dict[str, Any] | None = None,
           space_args: dict[str, Any] | None = None, out: str | Path | None = None, executor: str = "auto",
           constraint: dict[str, Any] | None = None, hardware: dict[str, Any] | None = None,
           repeats: bool = False, trial_timeout: float | None = None, ray: dict[str, Any] | None = None,
           store: str = "sqlite", on_trial_end: Callable[..., Any] | None = None) -> Study:
    """Search ``space`` on ``data`` and return the finished :class:`~nasforge.study.Study`.

    ``space``: a built-in name (``"mlp"``), an import path, or a function ``(arch, **context) -> nn.Module``.
    ``data``: a dataset name or spec dict, a :class:`~nasforge.train.data.Data`, or a tuple ``(x, y)``;
    left out: iris for the built-in trainer, an error beside ``evaluate`` (``"none"``: it brings its own).
    ``objective``/``mode``: the metric and ``"min"``/``"max"``; ``mode`` may be left out for the
    metrics whose direction nasforge knows (``val_loss``, ``val_accuracy``, ``latency_ms``, ...).
    ``strategy`` / ``scheduler``: a name or an object; the one-shot strategies (``"darts"``,
    ``"enas"``, or :class:`~nasforge.oneshot.darts.Darts` / :class:`~nasforge.oneshot.enas.Enas`
    objects) search a supernet first and retrain what they derive as the one trial. ``budget``: epochs per trial. ``evaluate``:
    your own ``evaluate(model, data, budget, state) -> metrics`` instead of the built-in trainer.
    ``out``: the study directory (a new temporary directory by default). ``executor``: ``auto``
    (batched training in this process for one worker, a process pool for more), ``serial``,
    ``batched``, ``pool``, ``ray`` or ``simulated``; ``ray``: its settings (``{"address": "auto",
    "num_cpus": 1}``; see the README). ``store``: ``sqlite`` (``out/study.db``) or ``memory``
    (nothing kept after the process: quick runs). ``hardware``: measure every model (e.g. ``{"threads": 1}``);
    ``constraint``: MnasNet's reward, e.g. ``{"metric": "latency_ms", "target": 2.0, "kind": "soft"}``.
    """
    if isinstance(data, tuple) and len(data) == 2:
        data = Data.from_arrays(*data)
    entries: dict[str, Any] = {}
    reasons: list[str] = []
    found: dict[str, Any] = {}
    for key, value in (("space", space), ("dataset", data), ("strategy", strategy), ("scheduler", scheduler),
                       ("evaluator", evaluate)):
        entry, obj, reason = _spec(value, key)
        if entry is not None:
            entries[key] = entry
        found[key] = obj
        if reason:
            reasons.append(reason)
    if space_args:
        entries["space"] = {"name": entries.get("space", "mlp") if isinstance(entries.get("space"), str) else "mlp",
                            "args": space_args}
    cfg = parse_config({**entries, "repeats": repeats, "trial_timeout": trial_timeout, "budget": budget, "trials": trials, "seed": seed, "workers": workers, "executor": executor, "ray": ray, "store": store,
                        "objective": {"metric": objective, "mode": mode, "constraint": constraint},
                        "hardware": hardware, "trainer": trainer or {}}, "(from nasforge.search)")
    objects = Objects(found["space"], found["dataset"], found["evaluator"], found["strategy"], found["scheduler"])
    if out is None:
        import tempfile
        out = tempfile.mkdtemp(prefix="nasforge-")
    study = create_study(cfg, Path(out), objects, "; ".join(reasons) or None)
    return study.run(on_trial_end)


def resume(directory: str | Path, *, space: Callable[..., Any] | None = None, data: Any = None,
           evaluate: Callable[..., Any] | None = None, strategy: Any = None, scheduler: Any = None,
           on_trial_end: Callable[..., Any] | None = None) -> Study:
    """Finish an interrupted study. Pass the same Python objects a study made from Python used."""
    if isinstance(data, tuple) and len(data) == 2:
        data = Data.from_arrays(*data)
    study = open_study(directory, Objects(space, data, evaluate, strategy, scheduler))
    return study.run(on_trial_end)
