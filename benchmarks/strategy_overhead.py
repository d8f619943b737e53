"""Strategy overhead: the time one ask() + tell() costs a strategy with a long history.

    python benchmarks/strategy_overhead.py                       # 1000 recorded trials, 100 calls
    python benchmarks/strategy_overhead.py --history 200 --calls 50 --strategies bayesopt

Each strategy (default settings) is set up on the chapter's MLP space and told ``--history``
random architectures with a synthetic loss; then ``--calls`` ask+tell pairs are timed one by one.
Reported: mean, median and max milliseconds per pair. For GP BO the mean includes the periodic
kernel re-optimisation (every ``refit_every`` tells), and the first call also fits from scratch.
No training happens: this is the strategy's own cost, which the study adds to every trial.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from nasforge.space import Space
from nasforge.spaces.mlp import mlp
from nasforge.strategies import STRATEGIES
from nasforge.types import ArchDict, Result


def synthetic_loss(arch: ArchDict, rng: np.random.Generator) -> float:
    widths = [arch[f"width_{i}"] for i in range(arch["depth"])]
    return (abs(arch["depth"] - 3) + sum(abs(w - 40) / 40 for w in widths)
            + (arch["activation"] != "tanh") + 0.1 * float(rng.normal()))


def overhead(name: str, history: int, calls: int, seed: int = 0) -> list[float]:
    """Milliseconds of each timed ask+tell pair, after ``history`` recorded random trials."""
    schema = Space(mlp, {"n_in": 4, "n_out": 3}).schema
    rng = np.random.default_rng(seed)
    strategy = STRATEGIES.get(name)()
    strategy.setup(schema, np.random.default_rng(seed + 1))
    for _ in range(history):
        arch = schema.sample(rng)
        strategy.tell(arch, Result({}, synthetic_loss(arch, rng), 1.0))
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        arch = strategy.ask()
        strategy.tell(arch, Result({}, synthetic_loss(arch, rng), 1.0))
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--strategies", default="random,evolution,bayesopt")
    args = parser.parse_args()
    print(f"ask+tell time after {args.history} recorded trials, {args.calls} calls (ms)")
    print(f"{'strategy':<12}{'mean':>10}{'median':>10}{'max':>10}")
    for name in args.strategies.split(","):
        times = overhead(name, args.history, args.calls)
        print(f"{name:<12}{statistics.fmean(times):>10.3f}{statistics.median(times):>10.3f}{max(times):>10.3f}")


if __name__ == "__main__":
    main()
