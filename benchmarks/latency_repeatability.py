"""Repeatability of ``nasforge.hardware.measure_latency``: measure each model twice, compare.

    python benchmarks/latency_repeatability.py                    # defaults of measure_latency
    python benchmarks/latency_repeatability.py --min-seconds 1 --threads 2 --pairs 3

Models: MLPs of a few sizes on 64 features, a small 2-D CNN on 1x28x28 and a small 1-D CNN on
1x40, batch size 1 (``--batch-size``), CPU, one thread (``--threads``). Each model is measured
twice in a row (``--pairs`` times); printed per measurement: floor (the undisturbed latency,
what trials record as ``latency_ms``), median, p10-p90 spread, repeats, rounds, the wall time the
measurement took, and ``others``: the CPU cores other processes kept busy meanwhile (from
/proc/stat; 0 on a quiet machine); per model: the largest relative difference between the two
floors of a pair, |a - b| / min(a, b), and the same for the medians. The goal: every floor
difference under 5%.
Run it on a quiet machine: other processes on the same cores move latencies by more than that.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

import torch
from torch import nn

from nasforge.hardware import measure_latency


def mlp(widths: list[int], n_in: int = 64, n_out: int = 10) -> nn.Module:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(n_in, w), nn.ReLU()]
        n_in = w
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def cnn2d() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )


def cnn1d() -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(16, 32, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
        nn.Flatten(), nn.Linear(32, 10),
    )


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp-tiny (64-16-10)": (lambda: mlp([16]), (64,)),
    "mlp-small (64-128x2-10)": (lambda: mlp([128, 128]), (64,)),
    "mlp-medium (64-512x3-10)": (lambda: mlp([512, 512, 512]), (64,)),
    "mlp-large (64-2048x3-10)": (lambda: mlp([2048, 2048, 2048]), (64,)),
    "cnn2d (1x28x28)": (cnn2d, (1, 28, 28)),
    "cnn1d (1x40)": (cnn1d, (1, 40)),
}


def _busy_seconds() -> float | None:
    """CPU seconds all processes have used, from /proc/stat (None where there is none)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _measure(model: nn.Module, shape: tuple[int, ...], args: argparse.Namespace,
             options: dict[str, float | int]) -> tuple[float, float, float | None]:
    """One measurement, printed; returns its floor, its median and the cores other processes used meanwhile."""
    busy, own, wall = _busy_seconds(), _own_seconds(), time.perf_counter()
    r = measure_latency(model, shape, batch_size=args.batch_size, threads=args.threads, device=args.device,
                        **options)  # type: ignore[arg-type]
    after = _busy_seconds()
    others = None if busy is None or after is None else \
        max(0.0, (after - busy) - (_own_seconds() - own)) / (time.perf_counter() - wall)
    print(f"{r.floor_ms:10.4f} {r.median_ms:10.4f} {r.spread:7.3f} {r.repeats:7d} {r.rounds:6d} {r.calls_per_repeat:5d} "
          f"{r.seconds:6.2f} {'     ?' if others is None else f'{others:6.2f}'}", end="")
    return r.floor_ms, r.median_ms, others


def _summary(title: str, worst: dict[str, float], tolerance: float) -> bool:
    print(f"\n{title}")
    for name, diff in worst.items():
        print(f"  {name:26s} {diff:6.2%}")
    top = max(worst.values())
    ok = top < tolerance
    print(f"max difference: {top:.2%}; all under {tolerance:.0%}: {'yes' if ok else 'NO'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2, help="pairs of measurements per model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-seconds", type=float, default=None, help="default: measure_latency's")
    parser.add_argument("--repeats", type=int, default=None, help="default: measure_latency's")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--quiet-below", type=float, default=0.1,
                        help="a pair is quiet when other processes used fewer cores than this during both")
    args = parser.parse_args(argv)
    options: dict[str, float | int] = {}
    if args.min_seconds is not None:
        options["min_seconds"] = args.min_seconds
    if args.repeats is not None:
        options["repeats"] = args.repeats

    torch.manual_seed(0)
    print(f"torch {torch.__version__}, intra-op threads for the measurement: {args.threads}, "
          f"batch {args.batch_size}, device {args.device}, options {options or 'defaults'}")
    print(f"{'model':26s} {'floor ms':>10s} {'median ms':>10s} {'spread':>7s} {'repeats':>7s} {'rounds':>6s} {'calls':>5s} "
          f"{'took s':>6s} {'others':>6s}   {'diff':>6s}")
    worst: dict[str, float] = {}
    worst_median: dict[str, float] = {}
    worst_quiet: dict[str, float] = {}
    for name, (build, shape) in MODELS.items():
        model = build()
        worst[name] = worst_median[name] = 0.0
        for _ in range(args.pairs):
            print(f"{name:26s} ", end="")
            a, median_a, load_a = _measure(model, shape, args, options)
            print(f"\n{name:26s} ", end="")
            b, median_b, load_b = _measure(model, shape, args, options)
            diff = abs(a - b) / min(a, b)
            worst_median[name] = max(worst_median[name], abs(median_a - median_b) / min(median_a, median_b))
            quiet = load_a is not None and load_b is not None and max(load_a, load_b) < args.quiet_below
            print(f"   {diff:6.2%}{'' if quiet else '  (busy)'}")
            worst[name] = max(worst[name], diff)
            if quiet:
                worst_quiet[name] = max(worst_quiet.get(name, 0.0), diff)
    ok = _summary("largest relative difference between the two floors (latency_ms) of a pair, per model (all pairs):",
                  worst, args.tolerance)
    _summary("the same for the two medians (typical latency under the conditions met):", worst_median, args.tolerance)
    if worst_quiet:
        _summary(f"the same over quiet pairs only (other processes below {args.quiet_below} cores):",
                 worst_quiet, args.tolerance)
    else:
        print("\nno quiet pair: other processes kept the CPUs busy throughout")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
