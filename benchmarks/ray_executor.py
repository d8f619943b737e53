"""executor: ray against the local pool: promises kept at scale, and speed as a user meets it.

    python benchmarks/ray_executor.py replay      # 4 workers x 1,000 NAS-Bench-201 trials: Ray, local pool
    python benchmarks/ray_executor.py hyperband   # the chapter's Hyperband on digits, 2 workers, fresh processes

``replay``: random search over the NB201 replay (table lookups: the jobs cost next to nothing, so
this measures the executors' own overhead), 1,000 and 5,000 trials on 4 workers, on Ray (a local
cluster of 4 CPUs, its start-up apart) and on the local process pool, each timed from the study's
start to its end. Counts lost trials (fewer than asked finished), duplicated ones (an id or a rung
recorded twice) and trials that differ from the simulated executor's (the reference), and splits
each executor's time into a fixed cost per study and a rate per trial.

``hyperband``: ``nasforge search examples/chapter_hyperband.yaml --dataset digits --workers 2``
with ``--executor batched`` (the local batched pool, the default for the built-in trainer) and
``--executor ray``, and Ray Tune's HyperBandScheduler on the same work (hpo_vs_peers.py's Ray
run: R = 30 epochs, eta 3, 49 trials, 2 concurrent trials of 1 CPU), each a fresh process timed
from start to exit, ``--repeats`` times interleaved. Every tool trains at one thread per worker.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def replay(args: argparse.Namespace) -> None:
    import ray

    from nasforge.train.tabular import replay_study

    sizes = (args.trials, 5 * args.trials)
    print(f"random search on the NB201 replay: {sizes[0]} and {sizes[1]} trials, {args.workers} workers")
    print(f"{'executor':10} {'trials':>6} {'seconds':>8} {'trials/s':>9} {'lost':>5} {'duplicated':>10} {'differ':>7}")
    seconds: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="nasforge-ray-bench-") as scratch:
        for n in sizes:
            reference = replay_study("random", queries=n, seed=0, workers=args.workers, directory=Path(scratch) / f"sim{n}")
            expected = [(t.id, t.arch) for t in reference.trials]
            for executor in ("pool", "ray"):
                if executor == "ray" and not ray.is_initialized():
                    start = time.perf_counter()
                    ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="ERROR")
                    print(f"(Ray's local cluster started in {time.perf_counter() - start:.1f} s, not counted)")
                start = time.perf_counter()
                study = replay_study("random", queries=n, seed=0, workers=args.workers, executor=executor,
                                     directory=Path(scratch) / f"{executor}{n}")
                seconds[executor, n] = time.perf_counter() - start
                trials = study.trials
                lost = n - sum(1 for t in trials if t.state.finished)
                duplicated = (len(trials) - len({t.id for t in trials})) + sum(len(t.rungs) - 1 for t in trials if t.rungs)
                differ = sum(1 for got, want in zip([(t.id, t.arch) for t in trials], expected) if got != want)
                differ += abs(len(trials) - len(expected))
                print(f"{executor:10} {n:6d} {seconds[executor, n]:8.2f} {n / seconds[executor, n]:9.0f} {lost:5d} "
                      f"{duplicated:10d} {differ:7d}")
        ray.shutdown()
    # Each study pays a fixed cost (the pool forks its workers; Ray starts actor processes, which
    # import torch and read the context): what the extra trials cost tells the two apart.
    for executor in ("pool", "ray"):
        extra = seconds[executor, sizes[1]] - seconds[executor, sizes[0]]
        rate = (sizes[1] - sizes[0]) / extra
        fixed = seconds[executor, sizes[0]] - sizes[0] / rate
        print(f"{executor}: {rate:.0f} trials/s beyond the first {sizes[0]}; fixed cost per study {fixed:.2f} s")
    ratio = ((sizes[1] - sizes[0]) / (seconds["ray", sizes[1]] - seconds["ray", sizes[0]])) / \
        ((sizes[1] - sizes[0]) / (seconds["pool", sizes[1]] - seconds["pool", sizes[0]]))
    print(f"Ray / local pool, trials per second beyond the start: {ratio:.2f}; "
          f"whole {sizes[0]}-trial study: {seconds['pool', sizes[0]] / seconds['ray', sizes[0]]:.2f}")


def _timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def hyperband(args: argparse.Namespace) -> None:
    config = ROOT / "examples" / "chapter_hyperband.yaml"
    times: dict[str, list[float]] = {"nasforge batched pool": [], "nasforge ray": [], "Ray Tune HyperBand": []}
    with tempfile.TemporaryDirectory(prefix="nasforge-ray-bench-") as scratch:
        for repeat in range(args.repeats):
            for executor in ("batched", "ray"):
                out = Path(scratch) / f"{executor}-{repeat}"
                times[f"nasforge {'batched pool' if executor == 'batched' else executor}"].append(_timed(
                    [sys.executable, "-m", "nasforge.cli", "search", str(config), "--dataset", "digits", "--workers", "2",
                     "--executor", executor, "--seed", str(repeat), "--out", str(out), "--quiet"], Path(scratch)))
            times["Ray Tune HyperBand"].append(_timed(
                [sys.executable, str(ROOT / "benchmarks" / "hpo_vs_peers.py"), "--experiments", "hb", "--dataset",
                 "digits", "--tools", "ray", "--seeds", "1", "--ray-trial-cpus", "1"], Path(scratch)))
            print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    base = statistics.median(times["nasforge batched pool"])
    print(f"\nthe chapter's Hyperband on digits (49 trials, R = 30, eta 3), 2 workers, whole processes, "
          f"median of {args.repeats}:")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:24} {median:6.1f} s   {median / base:5.2f}x the local pool")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("replay", "hyperband"))
    parser.add_argument("--trials", type=int, default=1000, help="replay: trials (default 1000)")
    parser.add_argument("--workers", type=int, default=4, help="replay: workers (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="hyperband: interleaved repeats (default 3)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    replay(args) if args.part == "replay" else hyperband(args)


if __name__ == "__main__":
    main()
