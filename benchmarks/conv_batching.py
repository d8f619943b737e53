"""Batched against one-by-one training of NAS-RL CNNs: Hyperband on MNIST-1D.

Runs ``benchmarks/conv_batching.yaml`` (Hyperband, R = 27, eta = 3, the NAS-RL space, random
strategy, seed 0) as fresh ``nasforge search`` processes at ``torch.set_num_threads(1)``, with
``--executor batched`` (a rung's CNNs of one conv key train as stacked groups) and ``--executor
serial`` (one by one), alternating which goes first, and prints each wall time, the medians,
their ratio, and whether both studies made the same decisions (the same trials, states and rungs;
losses within a relative tolerance).

With Adam (the config's optimizer) these small BatchNorm CNNs train chaotically: nudging each
initial weight by one float32 ulp moves a candidate's validation loss by 1-10% after 1-3 epochs
(measured for two of the study's trials), so float rounding alone (a stacked group's or another
CPU's kernels) can change Hyperband's later decisions. ``--optimizer sgd`` trains the same
study with SGD, where stacked and alone agree to ~1e-7 and the decisions must match.

    python benchmarks/conv_batching.py                 # 3 repeats of each (~20 min on one core)
    python benchmarks/conv_batching.py --repeats 1 --budget 3   # a smoke run, under a minute
    python benchmarks/conv_batching.py --repeats 1 --optimizer sgd
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


def compare(a: Path, b: Path, rel: float) -> tuple[int, int, float]:
    """(trials, trials that differ: another architecture, state, rung count or a loss beyond
    ``rel``, the largest relative loss difference) of two finished studies."""
    from nasforge.api import open_study

    ta, tb = open_study(a).trials, open_study(b).trials
    differ, worst = abs(len(ta) - len(tb)), 0.0
    for x, y in zip(ta, tb):
        gap = abs(x.loss - y.loss) / max(abs(y.loss), 1e-12) if x.loss is not None and y.loss is not None else 0.0
        worst = max(worst, gap)
        differ += (x.arch, x.state, len(x.rungs)) != (y.arch, y.state, len(y.rungs)) or gap > rel
    return len(ta), differ, worst


def with_optimizer(config: Path, optimizer: str, directory: Path) -> Path:
    """A copy of ``config`` whose trainer uses ``optimizer``."""
    import yaml

    settings = yaml.safe_load(config.read_text())
    settings.setdefault("trainer", {})["optimizer"] = optimizer
    out = directory / f"{config.stem}_{optimizer}.yaml"
    out.write_text(yaml.safe_dump(settings))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="studies per executor (median reported)")
    p.add_argument("--budget", type=float, help="R in epochs instead of the config's 27 (a smoke run: 3)")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--rel", type=float, default=1e-3, help="relative loss tolerance between the two studies")
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], help="the trainer's optimizer instead of the config's")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    times: dict[str, list[float]] = {e: [] for e in EXECUTORS}
    with tempfile.TemporaryDirectory() as tmp:
        config = with_optimizer(args.config, args.optimizer, Path(tmp)) if args.optimizer else args.config
        for rep in range(args.repeats):
            order = EXECUTORS if rep % 2 == 0 else EXECUTORS[::-1]
            for executor in order:
                seconds = run_study(config, executor, Path(tmp) / f"{executor}{rep}", args.budget)
                times[executor].append(seconds)
                jobs = job_seconds(Path(tmp) / f"{executor}{rep}")
                print(f"repeat {rep} {executor:8s} {seconds:8.1f} s wall, {jobs:8.1f} s in jobs", flush=True)
        n, differ, worst = compare(Path(tmp) / "batched0", Path(tmp) / "serial0", args.rel)
    med = {e: statistics.median(t) for e, t in times.items()}
    print(f"median wall time: batched {med['batched']:.1f} s, serial {med['serial']:.1f} s, "
          f"serial / batched = {med['serial'] / med['batched']:.2f}")
    print(f"same decisions: {'yes' if not differ else 'NO'} ({n} trials, {differ} differ: another architecture, state, "
          f"rung count or a loss beyond {args.rel:g} relative; largest relative loss difference {worst:.2e})")


if __name__ == "__main__":
    main()
