"""Batched against one-by-one training of NAS-RL CNNs: Hyperband on MNIST-1D.

Runs ``benchmarks/conv_batching.yaml`` (Hyperband, R = 27, eta = 3, the NAS-RL space, random
strategy, seed 0) as fresh ``nasforge search`` processes at ``torch.set_num_threads(1)``, with
``--executor batched`` (a rung's CNNs of one conv key train as stacked groups) and ``--executor
serial`` (one by one), alternating which goes first, and prints each wall time, the medians,
their ratio, and whether both studies made the same decisions (the same trials, states and rungs;
losses within a relative tolerance).

    python benchmarks/conv_batching.py                 # 3 repeats of each (~20 min on one core)
    python benchmarks/conv_batching.py --repeats 1 --budget 3   # a smoke run, under a minute
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
CONFIG = Path(__file__).resolve().parent / "conv_batching.yaml"
EXECUTORS = ("batched", "serial")
_CHILD = "import torch; torch.set_num_threads(1); from nasforge.cli import main; raise SystemExit(main())"


def run_study(config: Path, executor: str, out: Path, budget: float | None) -> float:
    """Wall seconds of one ``nasforge search`` in a fresh process (import and start-up included)."""
    cmd = [sys.executable, "-c", _CHILD, "search", str(config), "--executor", executor, "--out", str(out), "--quiet"]
    if budget is not None:
        cmd += ["--budget", str(budget)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def job_seconds(directory: Path) -> float:
    """Seconds a study's jobs took, all together (model builds and training; a batched group's
    time is shared among its members): the rest of a wall time is start-up and the study loop."""
    from nasforge.api import open_study

    return sum(t.duration for t in open_study(directory).trials)


def compare(a: Path, b: Path, rel: float) -> tuple[bool, float, int]:
    """(same decisions, largest relative loss difference, trials) of two finished studies."""
    from nasforge.api import open_study

    ta, tb = open_study(a).trials, open_study(b).trials
    same = [(t.arch, t.state, len(t.rungs)) for t in ta] == [(t.arch, t.state, len(t.rungs)) for t in tb]
    worst = max((abs(x.loss - y.loss) / max(abs(y.loss), 1e-12) for x, y in zip(ta, tb)
                 if x.loss is not None and y.loss is not None), default=0.0)
    return same and worst <= rel, worst, len(ta)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="studies per executor (median reported)")
    p.add_argument("--budget", type=float, help="R in epochs instead of the config's 27 (a smoke run: 3)")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--rel", type=float, default=1e-3, help="relative loss tolerance between the two studies")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    times: dict[str, list[float]] = {e: [] for e in EXECUTORS}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            order = EXECUTORS if rep % 2 == 0 else EXECUTORS[::-1]
            for executor in order:
                seconds = run_study(args.config, executor, Path(tmp) / f"{executor}{rep}", args.budget)
                times[executor].append(seconds)
                jobs = job_seconds(Path(tmp) / f"{executor}{rep}")
                print(f"repeat {rep} {executor:8s} {seconds:8.1f} s wall, {jobs:8.1f} s in jobs", flush=True)
        same, worst, n = compare(Path(tmp) / "batched0", Path(tmp) / "serial0", args.rel)
    med = {e: statistics.median(t) for e, t in times.items()}
    print(f"median wall time: batched {med['batched']:.1f} s, serial {med['serial']:.1f} s, "
          f"serial / batched = {med['serial'] / med['batched']:.2f}")
    print(f"same decisions: {'yes' if same else 'NO'} ({n} trials; largest relative loss difference {worst:.2e}, "
          f"tolerance {args.rel:g})")


if __name__ == "__main__":
    main()
