"""NAS-Bench-201 replay: an evaluator that looks results up instead of training, so strategies and
schedulers can be compared on 15,625 fully trained cells in seconds.

The tables are not shipped with nasforge; they live in ``shared/data/nasbench201`` (see its
README): ``nb201_12epoch.csv`` (12 epochs, one seed) and ``nats_bench.csv`` (200 epochs, mean
over seeds). Row *i* of both is NB201 index *i*.

Budget semantics (two fidelities, one threshold, :data:`FINAL_BUDGET` = 200 epochs):

* ``budget < 200`` -> the 12-epoch **validation** accuracy (``cifar10-val`` for CIFAR-10), the
  cheap fidelity NB201's own baselines search on;
* ``budget >= 200`` -> the 200-epoch **test** accuracy (``CIFAR10TestAccuracy200Epochs``), the
  final one. The tables hold no 200-epoch validation accuracy, so a search told this value is
  searching on the test set: use it for the final rung, or search below 200 epochs for an honest
  protocol.

Simulated training time (metric ``sim_seconds``, read by
:class:`~nasforge.execution.simulated.SimulatedExecutor`) is ``epochs x seconds per epoch``, with
seconds per epoch = :data:`EPOCH_SECONDS_FIXED` + the sum of :data:`EPOCH_SECONDS_PER_OP` over the
cell's six edges (roughly proportional to the cell's FLOPs; illustrative, not measured). A trial
continued from its checkpoint state is charged only for the epochs it adds.
"""
from __future__ import annotations

import csv
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from nasforge.errors import ConfigError, DataError
from nasforge.spaces.nb201 import from_arch_str, to_arch_str
from nasforge.types import EvalResult

FINAL_BUDGET = 200.0
CHEAP_EPOCHS = 12.0
FILE_12 = "nb201_12epoch.csv"
FILE_200 = "nats_bench.csv"
ENV_VAR = "NASFORGE_NB201_DIR"
EPOCH_SECONDS_FIXED = 5.0  # stem, reduction blocks, classifier, data loading
EPOCH_SECONDS_PER_OP = {"none": 0.0, "skip_connect": 0.0, "avg_pool_3x3": 0.25, "nor_conv_1x1": 1.0, "nor_conv_3x3": 3.0}

# dataset -> (12-epoch validation column, 200-epoch test column)
COLUMNS: dict[str, tuple[str, str]] = {
    "cifar10": ("cifar10-val", "CIFAR10TestAccuracy200Epochs"),
    "cifar100": ("cifar100-val", "CIFAR100TestAccuracy200Epochs"),
    "imagenet16-120": ("imagenet-val", "ImageNetTestAccuracy200Epochs"),
}


def find_root(root: str | Path | None = None) -> Path:
    """The directory holding both NB201 tables: ``root`` if given, else ``$NASFORGE_NB201_DIR``,
    else ``shared/data/nasbench201`` beside or inside the current directory or the repository."""
    if root is not None:
        candidates = [Path(root)]
    elif os.environ.get(ENV_VAR):
        candidates = [Path(os.environ[ENV_VAR])]
    else:
        repo = Path(__file__).resolve().parents[2]
        candidates = [base / rel / "shared" / "data" / "nasbench201"
                      for base in (Path.cwd(), repo) for rel in ("..", ".")]
    for candidate in candidates:
        if (candidate / FILE_12).is_file() and (candidate / FILE_200).is_file():
            return candidate.resolve()
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise DataError(f"NAS-Bench-201 tables ({FILE_12}, {FILE_200}) not found; looked in: {looked}. They live in "
                    f"shared/data/nasbench201 of the project; pass root=... or set {ENV_VAR} to that directory")


@dataclass(frozen=True)
class NB201Tables:
    """Both tables, column name -> float array indexed by NB201 index, and arch string -> index."""

    root: Path
    index: dict[str, int]
    columns: dict[str, np.ndarray]


def _read_csv(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path} is empty; expected the NB201 table described in its README")
        rows = list(reader)
    if any(len(row) != len(header) for row in rows):
        raise DataError(f"{path} has rows whose length differs from its header ({len(header)} columns)")
    return header, {name: [row[i] for row in rows] for i, name in enumerate(header)}


@functools.lru_cache(maxsize=4)
def load_tables(root: Path) -> NB201Tables:
    """Read both CSVs of ``root`` once per process (cached) and check that their rows agree."""
    _, t12 = _read_csv(root / FILE_12)
    _, t200 = _read_csv(root / FILE_200)
    needed = {FILE_12: ["arch_str", *(c[0] for c in COLUMNS.values())],
              FILE_200: ["ArchitectureString", *(c[1] for c in COLUMNS.values())]}
    for name, table in ((FILE_12, t12), (FILE_200, t200)):
        missing = [c for c in needed[name] if c not in table]
        if missing:
            raise DataError(f"{root / name} lacks column(s) {', '.join(missing)}")
    if t12["arch_str"] != t200["ArchitectureString"]:
        raise DataError(f"{FILE_12} and {FILE_200} in {root} do not list the same cells in the same order")
    columns = {c: np.asarray(t12[c], dtype=float) for c, _ in COLUMNS.values()}
    columns.update({c: np.asarray(t200[c], dtype=float) for _, c in COLUMNS.values()})
    return NB201Tables(root, {s: i for i, s in enumerate(t12["arch_str"])}, columns)


def epoch_seconds(arch_str: str) -> float:
    """Simulated seconds per training epoch of a cell (see the module docstring)."""
    return EPOCH_SECONDS_FIXED + sum(EPOCH_SECONDS_PER_OP[op] for op in from_arch_str(arch_str).values())


class NB201Lookup:
    """An evaluator (see :mod:`nasforge.train.evaluator`) that replays NAS-Bench-201.

    Called as ``lookup(model, data, budget, state, arch)``: the study passes the trial's
    ``arch`` (without it, it reads ``model.arch_str`` of a model built by the ``nb201`` space);
    ``data`` is ignored. Returns
    ``accuracy`` (the fidelity chosen by ``budget``, see the module docstring), ``val_loss`` =
    100 - accuracy (so the default objective val_loss/min works), ``test_accuracy_200``,
    ``regret`` = the dataset's best 200-epoch test accuracy - ``test_accuracy_200``,
    ``sim_seconds``, ``fidelity`` (12 or 200) and ``index`` (the NB201 index), and as state the
    budget reached. ``seed`` must stay None: the tables hold one value per cell (12 epochs: one
    seed; 200 epochs: the mean over seeds), so there is no per-seed result to replay.
    """

    def __init__(self, root: str | Path | None = None, dataset: str = "cifar10", seed: int | None = None):
        if dataset not in COLUMNS:
            raise ConfigError(f"unknown NB201 dataset {dataset!r}; available: {', '.join(COLUMNS)}")
        if seed is not None:
            raise ConfigError(f"NB201Lookup has no per-seed results (got seed={seed!r}); the tables hold one value per "
                              f"cell (12 epochs: a single seed; 200 epochs: the mean over seeds); leave seed=None")
        self.dataset = dataset
        self.root = find_root(root)
        self.tables = load_tables(self.root)
        self.cheap_column, self.final_column = COLUMNS[dataset]
        self.optimum = float(self.tables.columns[self.final_column].max())

    def index_of(self, arch: str | Mapping[str, Any]) -> int:
        """The NB201 index of an architecture string or dict."""
        arch_str = arch if isinstance(arch, str) else to_arch_str(arch)
        index = self.tables.index.get(arch_str)
        if index is None:
            from_arch_str(arch_str)  # raises naming what is malformed
            raise DataError(f"cell {arch_str!r} is not in the NB201 tables of {self.root}")
        return index

    def query(self, arch: str | Mapping[str, Any], budget: float = FINAL_BUDGET, trained: float = 0.0) -> dict[str, float]:
        """The metrics of one cell at ``budget`` epochs (``trained``: epochs already paid for)."""
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
            raise ValueError(f"Invalid NB201 budget: {budget!r} (epochs, a finite number > 0; >= {FINAL_BUDGET:g} reads "
                             f"the 200-epoch test accuracy, below it the 12-epoch validation accuracy)")
        index = self.index_of(arch)
        final = budget >= FINAL_BUDGET
        accuracy = float(self.tables.columns[self.final_column if final else self.cheap_column][index])
        test = float(self.tables.columns[self.final_column][index])
        arch_str = arch if isinstance(arch, str) else to_arch_str(arch)
        return {"accuracy": accuracy, "val_loss": 100.0 - accuracy, "test_accuracy_200": test,
                "regret": self.optimum - test, "sim_seconds": max(budget - trained, 0.0) * epoch_seconds(arch_str),
                "fidelity": FINAL_BUDGET if final else CHEAP_EPOCHS, "index": float(index)}

    def __call__(self, model: Any, data: Any, budget: float, state: dict[str, Any] | None,
                 arch: Mapping[str, Any] | None = None) -> EvalResult:
        arch_str = to_arch_str(arch) if arch is not None else getattr(model, "arch_str", None)
        if not isinstance(arch_str, str):
            raise TypeError(f"NB201Lookup needs the trial's architecture or a model built by the nb201 space "
                            f"(model.arch_str); got {type(model).__name__}")
        trained = float((state or {}).get("budget", 0.0))
        return EvalResult(self.query(arch_str, budget, trained), state={"budget": float(budget)})


@functools.lru_cache(maxsize=None)
def _default_lookup(dataset: str) -> NB201Lookup:
    return NB201Lookup(dataset=dataset)


def nb201_cifar10(model: Any, data: Any, budget: float, state: dict[str, Any] | None,
                  arch: Mapping[str, Any] | None = None) -> EvalResult:
    """``NB201Lookup()`` on CIFAR-10 with the tables found by :func:`find_root`, as a plain function,
    so a config can name it today: ``evaluator: nasforge.train.tabular:nb201_cifar10``."""
    return _default_lookup("cifar10")(model, data, budget, state, arch)


def regret_after(trials: Sequence[Any], queries: int | None = None) -> float | None:
    """The regret of the best of the first ``queries`` trials (by id), best judged by the search
    objective (``loss``), or None when none of them succeeded."""
    first = sorted(trials, key=lambda t: t.id)[:queries]
    scored = [t for t in first if t.loss is not None and "regret" in t.metrics]
    if not scored:
        return None
    return float(min(scored, key=lambda t: (t.loss, t.id)).metrics["regret"])


def replay_study(strategy: Any, scheduler: Any = None, *, queries: int, seed: int, directory: str | Path,
                 workers: int = 1, dataset: str = "cifar10", budget: float = FINAL_BUDGET,
                 root: str | Path | None = None, executor: str = "simulated") -> Any:
    """Run a study on the NB201 replay and return the finished :class:`~nasforge.study.Study`.

    ``strategy`` / ``scheduler``: registered names or objects (scheduler None: full budget);
    ``queries`` caps the trials started (``max_trials``); ``budget`` is the study's max budget
    (epochs: 200 reads the final test accuracy, below 200 the 12-epoch validation accuracy);
    ``workers`` simulated workers on a :class:`SimulatedExecutor` (``executor``: another
    registered one, e.g. ``ray`` or ``pool``, with real workers); objective val_loss/min.
    ``directory`` holds the study's SQLite store; one holding an unfinished replay study resumes it.
    """
    from nasforge.execution import EXECUTORS, ExecutorOptions  # imported here: train must not need the study layer
    from nasforge.execution.worker import WorkerContext
    from nasforge.schedulers import SCHEDULERS
    from nasforge.space.space import Space
    from nasforge.spaces.nb201 import nb201
    from nasforge.strategies import STRATEGIES
    from nasforge.study import Study
    from nasforge.types import Objective

    if not isinstance(queries, int) or queries < 1:
        raise ConfigError(f"Invalid queries: {queries!r} (must be an int >= 1)")
    lookup = NB201Lookup(root, dataset)
    space = Space(nb201, {}, name="nb201", args={"materialize": False})
    context = WorkerContext(space, None, lookup, str(directory))
    strategy = STRATEGIES.get(strategy)() if isinstance(strategy, str) else strategy
    scheduler = SCHEDULERS.get(scheduler or "full")() if scheduler is None or isinstance(scheduler, str) else scheduler
    study = Study(directory=directory, space=space, data=None, evaluator=lookup, strategy=strategy, scheduler=scheduler,
                  executor_factory=lambda: EXECUTORS.get(executor)(context, ExecutorOptions(workers)), objective=Objective("val_loss", "min"),
                  seed=seed, max_budget=budget, max_trials=queries)
    return study.run()


__all__ = ["NB201Lookup", "FINAL_BUDGET", "find_root", "load_tables", "nb201_cifar10", "regret_after", "replay_study"]
