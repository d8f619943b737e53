"""PPO against REINFORCE (and random sampling) on the same space and budget.

1. A reward with a known optimum: an additive table over 5 decisions x 4 options (1,024
   architectures); how many asks until each method samples the optimum (capped at the budget).
2. The NAS-Bench-201 replay: regret after 25/50/100/200 queries (see benchmarks/nb201.py for
   every strategy; this runs the three compared here).

    python benchmarks/rl_controllers.py --seeds 30
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from nasforge.strategies.ppo import PPO
from nasforge.strategies.random import RandomSearch
from nasforge.strategies.reinforce import Reinforce
from nasforge.train.additive_table import asks_to_optimum
from nasforge.train.tabular import regret_after, replay_study

METHODS = {"random": RandomSearch, "reinforce": Reinforce, "ppo": PPO}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--budget", type=int, default=400)
    p.add_argument("--skip-nb201", action="store_true")
    args = p.parse_args()
    weights = np.random.default_rng(123).normal(size=(5, 4))
    print(f"known optimum (1 of 1,024): asks until sampled, over {args.seeds} seeds (cap {args.budget + 1})")
    for name, cls in METHODS.items():
        start = time.perf_counter()
        hits = [asks_to_optimum(cls(), s, weights, args.budget) for s in range(args.seeds)]
        found = sum(h <= args.budget for h in hits)
        print(f"  {name:10s} median {statistics.median(hits):6.1f}  mean {statistics.mean(hits):6.1f}  "
              f"found in {found}/{args.seeds}  ({time.perf_counter() - start:.1f} s)")
    if args.skip_nb201:
        return
    print(f"\nNAS-Bench-201 (cifar10, searching the 12-epoch accuracy): regret median / mean, {args.seeds} seeds")
    for name, cls in METHODS.items():
        regrets: dict[int, list[float]] = {n: [] for n in (25, 50, 100, 200)}
        start = time.perf_counter()
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                study = replay_study(cls(), queries=200, seed=seed, directory=tmp)
                for n in regrets:
                    regrets[n].append(regret_after(study.trials, n))
        cells = "  ".join(f"@{n}: {statistics.median(v):.3f} / {statistics.mean(v):.3f}" for n, v in regrets.items())
        print(f"  {name:10s} {cells}  ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
