"""NAS-Bench-201 replay: regret of every registered strategy (and Optuna's TPE) after N queries.

    python benchmarks/nb201.py                          # 30 seeds, 25/50/100/200 queries
    python benchmarks/nb201.py --seeds 5 --queries 25,50

Regret = the dataset's best 200-epoch test accuracy (94.3733 on CIFAR-10) minus the 200-epoch test
accuracy of the best architecture among the first N queries, best judged by the search objective.
By default the search sees the 12-epoch validation accuracy (``--budget 12``, NAS-Bench-201's own
protocol); ``--budget 200`` lets it see the 200-epoch test accuracy itself (an oracle search).
Every nasforge strategy runs through the full study loop (SQLite store, simulated executor);
Optuna's TPESampler runs in memory on the same six categorical decisions and the same lookup.
Wall time is per strategy, all seeds together. Needs the tables in shared/data/nasbench201.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from nasforge.spaces.nb201 import LABELS, OPS
from nasforge.strategies import STRATEGIES
from nasforge.train.tabular import COLUMNS, NB201Lookup, regret_after, replay_study

RegretRun = Callable[[int], list[float]]  # seed -> regret after each checkpoint


def nasforge_run(name: str, args: argparse.Namespace, scratch: Path) -> RegretRun:
    def run(seed: int) -> list[float]:
        study = replay_study(name, queries=max(args.queries), seed=seed, directory=scratch / f"{name}-{seed}",
                             workers=args.workers, dataset=args.dataset, budget=args.budget)
        trials = study.trials
        study.store.close()
        return [_nan_if_none(regret_after(trials, n)) for n in args.queries]
    return run


def optuna_tpe_run(args: argparse.Namespace) -> RegretRun:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lookup = NB201Lookup(dataset=args.dataset)

    def objective(trial: "optuna.Trial") -> float:
        arch = {label: trial.suggest_categorical(label, list(OPS)) for label in LABELS}
        metrics = lookup.query(arch, args.budget)
        trial.set_user_attr("regret", metrics["regret"])
        return metrics["val_loss"]

    def run(seed: int) -> list[float]:
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        study.optimize(objective, n_trials=max(args.queries))
        trials = sorted(study.trials, key=lambda t: t.number)
        out = []
        for n in args.queries:
            best = min(trials[:n], key=lambda t: (t.value, t.number))
            out.append(float(best.user_attrs["regret"]))
        return out
    return run


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


def measure(run: RegretRun, seeds: int) -> tuple[list[list[float]], float]:
    start = time.perf_counter()
    rows = [run(seed) for seed in range(seeds)]
    return rows, time.perf_counter() - start


def table(results: dict[str, tuple[list[list[float]], float] | str], queries: list[int]) -> str:
    head = f"{'strategy':<14}" + "".join(f"{f'@{n} mean/median':>20}" for n in queries) + f"{'wall s':>10}"
    lines = [head, "-" * len(head)]
    for name, result in results.items():
        if isinstance(result, str):
            lines.append(f"{name:<14}  skipped: {result}")
            continue
        rows, wall = result
        cells = []
        for k in range(len(queries)):
            values = [row[k] for row in rows]
            cells.append(f"{statistics.fmean(values):>11.3f} /{statistics.median(values):>7.3f}")
        lines.append(f"{name:<14}" + "".join(f"{c:>20}" for c in cells) + f"{wall:>10.2f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30, help="seeds 0..N-1 per strategy (default 30)")
    parser.add_argument("--queries", default="25,50,100,200", help="comma-separated checkpoints (default 25,50,100,200)")
    parser.add_argument("--budget", type=float, default=12.0, help="epochs per query: <200 searches on the 12-epoch "
                        "validation accuracy (default 12), >=200 on the 200-epoch test accuracy")
    parser.add_argument("--dataset", default="cifar10", choices=list(COLUMNS))
    parser.add_argument("--workers", type=int, default=1, help="simulated workers for nasforge strategies (default 1)")
    parser.add_argument("--strategies", default=None, help="comma-separated names (default: every registered one but grid)")
    parser.add_argument("--no-optuna", action="store_true", help="skip Optuna's TPESampler")
    args = parser.parse_args(argv)
    try:
        args.queries = sorted({int(q) for q in args.queries.split(",")})
    except ValueError:
        parser.error(f"--queries must be comma-separated integers, got {args.queries!r}")
    if args.seeds < 1 or args.queries[0] < 1:
        parser.error("--seeds and every --queries value must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.strategies.split(",") if args.strategies else [n for n in STRATEGIES.names() if n != "grid"]
    results: dict[str, tuple[list[list[float]], float] | str] = {}
    with tempfile.TemporaryDirectory(prefix="nasforge-nb201-") as scratch:
        for name in names:
            try:
                STRATEGIES.get(name)()  # constructible with default arguments?
                results[name] = measure(nasforge_run(name, args, Path(scratch)), args.seeds)
            except Exception as exc:  # noqa: BLE001 - report the strategy, keep benchmarking the others
                results[name] = f"{type(exc).__name__}: {exc}"
            print(f"done {name}", file=sys.stderr, flush=True)
    if not args.no_optuna:
        try:
            results["optuna-tpe"] = measure(optuna_tpe_run(args), args.seeds)
        except ImportError:
            results["optuna-tpe"] = "optuna is not installed (pip install optuna, or the 'bench' extra)"
    print(f"NAS-Bench-201 {args.dataset}, regret (percentage points of 200-epoch test accuracy) of the best "
          f"of N queries, searching at budget {args.budget:g}; {args.seeds} seeds, {args.workers} simulated worker(s)")
    print(table(results, args.queries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
