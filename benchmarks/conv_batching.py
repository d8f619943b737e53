"""Batched against one-by-one training of NAS-RL CNNs: Hyperband on MNIST-1D.

Runs ``benchmarks/conv_batching.yaml`` (Hyperband, R = 27, eta = 3, the NAS-RL space, random
strategy, seed 0) as fresh ``nasforge search`` processes at ``torch.set_num_threads(1)``, with
``--executor batched`` (a rung's CNNs of one conv key train as stacked groups) and ``--executor
serial`` (one by one), alternating which goes first, and prints each wall time, the medians,
their ratio, and whether both studies made the same decisions (the same trials, states and rungs;
losses within a relative tolerance).

These small BatchNorm CNNs amplify float rounding: nudging each initial weight by one float32
ulp moves a candidate's validation loss by 1-10% after 1-3 epochs under Adam (the config's
optimizer) and by up to ~1% under SGD (``--optimizer sgd``; two of the study's trials measured).
So rounding alone (a stacked group's kernels, or another CPU's) can change Hyperband's later
decisions, and then the two studies train different trials: their wall times compare different
work. ``--rung N`` times the same work both ways: one rung of N random candidates, in-process.

    python benchmarks/conv_batching.py                 # 3 repeats of each (~20 min on one core)
    python benchmarks/conv_batching.py --repeats 1 --budget 3   # a smoke run, under a minute
    python benchmarks/conv_batching.py --repeats 1 --optimizer sgd
    python benchmarks/conv_batching.py --rung 27     # Hyperband's first rung only: the same work both ways
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


def replay_rung(count: int, budget: float, repeats: int, strides: tuple[int, ...] = (1, 2), seed: int = 0) -> None:
    """One rung, the same work both ways: ``count`` random candidates of the config's space
    trained for ``budget`` epochs in this process (one thread), grouped by key as the batched
    executor groups them, against one by one; alternating, median of ``repeats``."""
    import numpy as np
    import torch

    from nasforge.datasets import load_dataset
    from nasforge.engine.population import PopulationTrainer
    from nasforge.space import Space
    from nasforge.spaces.nasrl import nasrl_cnn
    from nasforge.train.trainer import SupervisedTrainer

    torch.set_num_threads(1)
    data = load_dataset("mnist1d")
    space = Space(nasrl_cnn, {**data.context(), "filters": (8, 16, 32), "strides": strides})
    rng = np.random.default_rng(seed)
    archs = [space.schema.sample(rng) for _ in range(count)]
    trainer = SupervisedTrainer()

    def batched(verbose: bool = False) -> dict[int, float]:
        pop = PopulationTrainer(trainer)
        groups: dict[tuple, list] = {}
        for i, arch in enumerate(archs):
            torch.manual_seed(i)
            cand = pop.candidate(space.build(arch), budget, None)
            groups.setdefault(pop.key(cand, data), []).append((i, cand))
        losses = {}
        for key, members in groups.items():
            if pop.pays(key, len(members)):
                pop.train([c for _, c in members], data)
                losses.update({i: c.result.metrics["val_loss"] for i, c in members})
            else:
                losses.update(serial([members[0][0]]))
        if verbose:
            sizes = [[len(g) for g in pop._conv_groups([c for _, c in m])] for m in groups.values() if len(m) > 1]
            print(f"  candidates per key {sorted((len(m) for m in groups.values()), reverse=True)}; "
                  f"groups in the keys of several {sizes}")
        return losses

    def serial(which: list[int] | None = None) -> dict[int, float]:
        losses = {}
        for i in range(count) if which is None else which:
            torch.manual_seed(i)
            losses[i] = trainer(space.build(archs[i]), data, budget).metrics["val_loss"]
        return losses

    budget_now = budget
    budget = 0.05  # warm-up, untimed: first uses of each kernel, allocator and optimiser
    batched(), serial()
    budget = budget_now
    times: dict[str, list[float]] = {"batched": [], "serial": []}
    results = {}
    for rep in range(repeats):
        for name in (("batched", "serial") if rep % 2 == 0 else ("serial", "batched")):
            start = time.perf_counter()
            results[name] = batched(verbose=rep == 0) if name == "batched" else serial()
            times[name].append(time.perf_counter() - start)
            print(f"rung repeat {rep} {name:8s} {times[name][-1]:7.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    worst = max(abs(results["batched"][i] - results["serial"][i]) / results["serial"][i] for i in range(count))
    print(f"rung of {count} at {budget:g} epochs: batched {med['batched']:.2f} s, one by one {med['serial']:.2f} s, "
          f"ratio {med['serial'] / med['batched']:.2f}; largest relative val-loss difference {worst:.1e}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="studies per executor (median reported)")
    p.add_argument("--budget", type=float, help="R in epochs instead of the config's 27 (a smoke run: 3)")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--rel", type=float, default=1e-3, help="relative loss tolerance between the two studies")
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], help="the trainer's optimizer instead of the config's")
    p.add_argument("--rung", type=int, metavar="N",
                   help="instead of studies: one rung of N random candidates (1 epoch), the same work both ways, in-process")
    p.add_argument("--strides", default="1,2", help="with --rung: the space's strides (1: every candidate of a rung "
                                                    "has the same feature-map sizes, one key)")
    args = p.parse_args(argv)
    if args.rung:
        sys.path.insert(0, str(ROOT))
        replay_rung(args.rung, args.budget or 1.0, args.repeats, tuple(int(v) for v in args.strides.split(",")))
        return
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
