"""Model-based strategies and Hyperband against random search, with real training on real data.

For each dataset and seed, every strategy gets the same number of trials and epochs; we report
the mean best validation loss over seeds. Then Hyperband against random search: the epochs each
needs and the best validation loss each reaches.

    python benchmarks/strategies_real_data.py --seeds 10 --trials 24 --epochs 3
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import nasforge

TRAINER = {"batch_size": 128, "lr": 0.01}


def best_loss(study) -> float:
    return study.best.loss


def epochs_trained(study) -> float:
    return sum(t.budget_used for t in study.trials)


def compare_strategies(dataset: str, seeds: int, trials: int, epochs: int, workers: int) -> dict[str, list[float]]:
    strategies = {
        "random": "random",
        "bayesopt": {"name": "bayesopt", "args": {"n_initial": max(4, trials // 3)}},
        "evolution": {"name": "evolution", "args": {"population_size": max(4, trials // 3), "sample_size": 3}},
    }
    out: dict[str, list[float]] = {name: [] for name in strategies}
    for seed in range(seeds):
        for name, strategy in strategies.items():
            with tempfile.TemporaryDirectory() as tmp:
                study = nasforge.search("mlp", dataset, strategy, budget=epochs, trials=trials, seed=seed,
                                        trainer=TRAINER, workers=workers, out=tmp)
                out[name].append(best_loss(study))
    return out


def hyperband_vs_random(dataset: str, seeds: int, max_epochs: int, random_trials: int, workers: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"random_loss": [], "random_epochs": [], "hb_loss": [], "hb_epochs": []}
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as tmp:
            rs = nasforge.search("mlp", dataset, "random", budget=max_epochs, trials=random_trials, seed=seed,
                                 trainer=TRAINER, workers=workers, out=tmp)
        with tempfile.TemporaryDirectory() as tmp:
            hb = nasforge.search("mlp", dataset, "random", {"name": "hyperband", "args": {"eta": 3}}, budget=max_epochs,
                                 seed=seed, trainer=TRAINER, workers=workers, out=tmp)
        out["random_loss"].append(best_loss(rs))
        out["random_epochs"].append(epochs_trained(rs))
        out["hb_loss"].append(best_loss(hb))
        out["hb_epochs"].append(epochs_trained(hb))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="digits,mnist1d")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--hb-epochs", type=int, default=9)
    p.add_argument("--random-trials", type=int, default=20)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(1)
    for dataset in args.datasets.split(","):
        start = time.perf_counter()
        res = compare_strategies(dataset, args.seeds, args.trials, args.epochs, args.workers)
        print(f"\n{dataset}: mean (std) best validation loss over {args.seeds} seeds, {args.trials} trials x {args.epochs} epochs")
        base = statistics.mean(res["random"])
        for name, losses in res.items():
            wins = sum(l < r for l, r in zip(losses, res["random"]))
            print(f"  {name:10s} {statistics.mean(losses):.4f} ({statistics.stdev(losses):.4f})  "
                  f"ratio to random {statistics.mean(losses) / base:.3f}  better than random on {wins}/{args.seeds} seeds")
        hb = hyperband_vs_random(dataset, args.seeds, args.hb_epochs, args.random_trials, args.workers)
        print(f"  hyperband (R={args.hb_epochs}, eta=3): loss {statistics.mean(hb['hb_loss']):.4f} with "
              f"{statistics.mean(hb['hb_epochs']):.0f} epochs; random search ({args.random_trials} x {args.hb_epochs}): "
              f"loss {statistics.mean(hb['random_loss']):.4f} with {statistics.mean(hb['random_epochs']):.0f} epochs")
        print(f"  ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
