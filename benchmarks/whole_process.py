"""Speed as a user meets it: ``nasforge search CONFIG`` as a fresh process against a fresh process
of an Optuna script doing the same work (``peers/optuna_mlp.py``), and ``python -c "import
torch"`` as the floor both pay. Runs alternate (the order rotates each round) and medians are
reported, so the machine's slow phases fall on every side alike.

    python benchmarks/whole_process.py                                   # sh, hb, bo on iris; 5 rounds
    python benchmarks/whole_process.py --datasets digits,mnist1d --rounds 3
    python benchmarks/whole_process.py --experiments sh --workers 1      # nasforge in one process

nasforge runs the chapter's example configs (``examples/chapter_*.yaml``) with the dataset
swapped in; BO ranks by the last epoch's loss, as the peer does. nasforge runs at its defaults
(``workers: auto``, one thread each) unless ``--workers``; the peer at ``--threads`` torch
threads (1) and one trial at a time. The peer reads the arrays nasforge trains on from an
``.npz`` written before any clock starts. Printed per experiment and dataset: the median wall
time of each, nasforge's time above the floor, the ratio peer / nasforge, and each side's best
validation loss among trials trained to the largest budget (one seed: a sanity check that both
did the same work, not a quality comparison; ``hpo_vs_peers.py --same-configs`` does that).
The in-process comparison (first-use costs paid before the clock) is ``hpo_vs_peers.py``.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"sh": "chapter_successive_halving.yaml", "hb": "chapter_hyperband.yaml", "bo": "chapter_bayesian_optimization.yaml"}
PEER = Path(__file__).resolve().parent / "peers" / "optuna_mlp.py"


def nasforge_config(experiment: str, dataset: str, folder: Path) -> Path:
    config = yaml.safe_load((ROOT / "examples" / CONFIGS[experiment]).read_text())
    config["dataset"] = dataset
    if experiment == "bo":
        config["objective"] = {"metric": "val_loss", "mode": "min"}  # the last epoch's, as the peer ranks
    path = folder / f"{experiment}-{dataset}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def peer_data(dataset: str, folder: Path) -> Path:
    from nasforge.datasets import load_dataset  # here, untimed: the peer only reads the arrays
    data = load_dataset(dataset)
    path = folder / f"{dataset}.npz"
    np.savez(path, x_train=data.x_train.numpy(), y_train=data.y_train.numpy(), x_val=data.x_val.numpy(),
             y_val=data.y_val.numpy(), n_out=np.array(data.n_out))
    return path


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{out.stderr[-3000:]}")
    return wall, out.stdout


def nasforge_best(study: Path, budget: float) -> float:
    with sqlite3.connect(study / "study.db") as con:
        rows = con.execute("SELECT loss FROM trials WHERE loss IS NOT NULL AND budget_used >= ?", (budget - 1e-9,)).fetchall()
    return min((r[0] for r in rows), default=float("nan"))


def run(experiment: str, dataset: str, rounds: int, folder: Path, workers: str | None, threads: int) -> dict:
    config = nasforge_config(experiment, dataset, folder)
    budget = float(yaml.safe_load(config.read_text())["budget"])
    data = peer_data(dataset, folder)
    walls: dict[str, list[float]] = {"torch": [], "nasforge": [], "optuna": []}
    best: dict[str, float] = {}
    for r in range(rounds):
        study = folder / f"study-{experiment}-{dataset}-{r}"
        commands = {
            "torch": [sys.executable, "-c", "import torch"],
            "nasforge": [sys.executable, "-m", "nasforge.cli", "search", str(config), "--out", str(study), "--quiet",
                         *(["--workers", workers] if workers else [])],
            "optuna": [sys.executable, str(PEER), experiment, str(data), "--threads", str(threads)],
        }
        order = list(commands)
        order = order[r % 3:] + order[:r % 3]
        for name in order:
            wall, stdout = timed(commands[name])
            walls[name].append(wall)
            if name == "optuna":
                best["optuna"] = json.loads(stdout.strip().splitlines()[-1])["best"]
        best["nasforge"] = nasforge_best(study, budget)
    med = {k: statistics.median(v) for k, v in walls.items()}
    return {"experiment": experiment, "dataset": dataset, "median": med, "walls": walls, "best": best,
            "ratio": med["optuna"] / med["nasforge"], "above_floor": med["nasforge"] - med["torch"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", default="sh,hb,bo")
    parser.add_argument("--datasets", default="iris")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", default=None, help="nasforge's workers (default: its own, auto)")
    parser.add_argument("--threads", type=int, default=1, help="the peer's torch threads")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    results = []
    print(f"{'experiment':<10} {'dataset':<8} {'torch':>7} {'nasforge':>9} {'optuna':>8} {'ratio':>6} "
          f"{'above torch':>11} {'best nasforge':>13} {'best optuna':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
            for experiment in args.experiments.split(","):
                res = run(experiment, dataset, args.rounds, Path(tmp), args.workers, args.threads)
                results.append(res)
                m, b = res["median"], res["best"]
                print(f"{experiment:<10} {dataset:<8} {m['torch']:>6.2f}s {m['nasforge']:>8.2f}s {m['optuna']:>7.2f}s "
                      f"{res['ratio']:>5.1f}x {res['above_floor']:>10.2f}s {b['nasforge']:>13.4f} {b['optuna']:>11.4f}",
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
