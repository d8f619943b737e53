"""PNAS's progressive search against random search over the same cell space, at an equal number
of trained architectures, and its surrogates' rank correlations per step.

    python benchmarks/pnas.py compare --dataset mnist1d --seeds 5
    python benchmarks/pnas.py compare --dataset mnist5k --seeds 5
    python benchmarks/pnas.py noise --dataset mnist1d      # how much one cell's result varies with its seed

Per seed, a PNAS study (every one-block cell, then ``--beam`` cells per step up to
``--blocks`` blocks, always all steps) and a random-search study trained as many architectures
as PNAS did, both through ``nasforge.search`` with ``--workers`` processes. It prints each seed's
best validation accuracy of both, then the mean, the wins, and the surrogates' Spearman
correlation per step: the LSTM guiding, the MLP ensemble fitted on the same results beside it,
each predicting the architectures the step trained before they were trained.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import nasforge

OPS = ["identity", "sep_conv_3x3", "max_pool_3x3"]
TRAINER = {"optimizer": "adam", "lr": 0.01, "batch_size": 64}


def space_args(dataset: str, blocks: int) -> dict[str, Any]:
    return {"C": 8, "N": 1, "max_blocks": blocks, "ops": OPS, "stem_stride": 2 if dataset == "mnist5k" else 1}


def best_trial(study: Any) -> Any:
    return max((t for t in study.trials if t.loss is not None), key=lambda t: t.metrics.get("val_accuracy", 0.0))


def run(args: argparse.Namespace, seed: int, scratch: Path) -> dict[str, Any]:
    common = dict(budget=args.budget, seed=seed, workers=args.workers, trainer=TRAINER, objective="val_accuracy",
                  space_args=space_args(args.dataset, args.blocks))
    start = time.perf_counter()
    pnas = nasforge.search("pnas", args.dataset, {"name": "pnas", "args": {"beam": args.beam, "patience": None}},
                           trials=10_000, out=scratch / f"pnas-{seed}", **common)
    n = len(pnas.trials)
    middle = time.perf_counter()
    rand = nasforge.search("pnas", args.dataset, "random", trials=n, out=scratch / f"random-{seed}", **common)
    log = pnas.store.get_meta("search_log") or []
    by_size = {name: _mean_by_blocks(study) for name, study in (("pnas", pnas), ("random", rand))}
    best_p, best_r = best_trial(pnas), best_trial(rand)
    return {"n": n, "pnas": best_p.metrics["val_accuracy"], "random": best_r.metrics["val_accuracy"],
            "blocks": (best_p.arch["blocks"], best_r.arch["blocks"]),
            "pnas_s": middle - start, "random_s": time.perf_counter() - middle,
            "spearman": [s.get("spearman", {}) for s in log], "by_size": by_size}


def _mean_by_blocks(study: Any) -> dict[int, float]:
    accuracies: dict[int, list[float]] = {}
    for t in study.trials:
        if t.loss is not None:
            accuracies.setdefault(t.arch["blocks"], []).append(t.metrics["val_accuracy"])
    return {b: statistics.fmean(v) for b, v in accuracies.items()}


def compare(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="nasforge-pnas-") as scratch:
        for seed in range(args.seeds):
            row = run(args, seed, Path(scratch))
            rows.append(row)
            print(f"seed {seed}: {row['n']} architectures each; best val_accuracy PNAS {row['pnas']:.4f} "
                  f"random {row['random']:.4f} (their blocks: {row['blocks'][0]} / {row['blocks'][1]}; "
                  f"{row['pnas_s']:.0f} s / {row['random_s']:.0f} s)", flush=True)
    wins = sum(r["pnas"] > r["random"] for r in rows)
    print(f"\n{args.dataset}, {args.budget:g} epoch(s) per architecture, ops {OPS}, beam {args.beam}, "
          f"up to {args.blocks} blocks, {args.workers} worker(s)")
    print(f"mean best val_accuracy: PNAS {statistics.fmean(r['pnas'] for r in rows):.4f}, "
          f"random {statistics.fmean(r['random'] for r in rows):.4f}; PNAS better in {wins} of {len(rows)} seeds")
    print("\nmean val_accuracy of the cells trained, by size (mean over seeds): PNAS's grown cells against "
          "random search's cells of the same size")
    for b in range(1, args.blocks + 1):
        cells = [statistics.fmean(r["by_size"][name][b] for r in rows if b in r["by_size"][name]) if any(
            b in r["by_size"][name] for r in rows) else float("nan") for name in ("pnas", "random")]
        print(f"  {b} block(s): PNAS {cells[0]:.4f}  random {cells[1]:.4f}")
    steps = max(len(r["spearman"]) for r in rows)
    print("\nSpearman correlation of predicted and measured loss on each step's trained architectures "
          "(mean over seeds; n = seeds with a value)")
    print(f"{'step':>5} {'lstm (guide)':>14} {'mlp ensemble':>14}")
    for k in range(1, steps):
        cells = []
        for name in ("lstm", "mlp"):
            values = [r["spearman"][k].get(name) for r in rows if len(r["spearman"]) > k]
            values = [v for v in values if v is not None]
            cells.append(f"{statistics.fmean(values):>+8.2f} (n={len(values)})" if values else f"{'-':>14}")
        print(f"{k + 1:>5} {cells[0]:>14} {cells[1]:>14}")


def noise(args: argparse.Namespace) -> None:
    """Random cells, each trained with several seeds: the spread of one cell's validation
    accuracy against the spread between cells, at the budget the comparison uses."""
    import numpy as np

    from nasforge.datasets import load_dataset
    from nasforge.space import Space
    from nasforge.spaces.pnas import pnas
    from nasforge.train.state import seed_torch
    from nasforge.train.trainer import SupervisedTrainer

    data = load_dataset(args.dataset)
    space = Space(pnas, {"input_shape": data.input_shape, "n_out": data.n_out, **space_args(args.dataset, args.blocks)})
    rng = np.random.default_rng(0)
    within, means = [], []
    for cell in range(args.cells):
        arch = space.schema.sample(rng)
        scores = []
        for seed in range(args.repeats):
            seed_torch(1000 * cell + seed)
            scores.append(SupervisedTrainer(**TRAINER)(space.build(arch), data, args.budget, None).metrics["val_accuracy"])
        within.append(statistics.stdev(scores))
        means.append(statistics.fmean(scores))
        print(f"cell {cell} ({arch['blocks']} block(s)): val_accuracy {statistics.fmean(scores):.4f} "
              f"+- {statistics.stdev(scores):.4f} over {args.repeats} seeds", flush=True)
    print(f"\n{args.dataset}, {args.budget:g} epoch(s): a cell's seed-to-seed standard deviation "
          f"{statistics.fmean(within):.4f} (mean over {args.cells} cells); between the cells' means "
          f"{statistics.stdev(means):.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="PNAS against random search at an equal number of trained architectures")
    c.add_argument("--dataset", default="mnist1d", choices=["mnist1d", "mnist5k"])
    c.add_argument("--seeds", type=int, default=5)
    c.add_argument("--budget", type=float, default=1.0, help="epochs per architecture (default 1)")
    c.add_argument("--beam", type=int, default=8)
    c.add_argument("--blocks", type=int, default=3)
    c.add_argument("--workers", type=int, default=2)
    n = sub.add_parser("noise", help="one cell trained with several seeds, against the spread between cells")
    n.add_argument("--dataset", default="mnist1d", choices=["mnist1d", "mnist5k"])
    n.add_argument("--budget", type=float, default=1.0)
    n.add_argument("--blocks", type=int, default=3)
    n.add_argument("--cells", type=int, default=4)
    n.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    compare(args) if args.command == "compare" else noise(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
