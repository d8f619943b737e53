"""The peer's side of ``whole_process.py``: one of the chapter's experiments as a user would write
it with Optuna and a plain PyTorch loop, run as a fresh process. It imports neither nasforge nor
scikit-learn: it reads the same train/validation arrays nasforge trains on from an ``.npz`` file
prepared before the clock starts (so it pays nothing for loading data that nasforge pays).

    python benchmarks/peers/optuna_mlp.py sh DATA.npz [--seed 0] [--threads 1]

The model, optimiser and loop are those of ``hpo_vs_peers.py``'s Optuna runs: nasforge's ``mlp``
space (1-6 layers of 2-100 units, relu/tanh/gelu), Adam (fused) lr 0.02, batches of 10 from a
shuffled index, the validation loss after each epoch, reported to the pruner. Prints one JSON
line: the best validation loss among trials trained to the largest budget, trials, epochs.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import optuna
import torch
from torch import nn

from plain_loop import Trials  # beside this script

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
MAX_DEPTH, MIN_WIDTH, MAX_WIDTH, LR, BATCH = 6, 2, 100, 0.02, 10
# experiment: (trials, largest budget in epochs, pruner)
EXPERIMENTS = {
    "sh": (20, 15, lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=5, reduction_factor=2)),
    "hb": (49, 30, lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=30, reduction_factor=3)),
    "bo": (105, 15, lambda: optuna.pruners.NopPruner()),
}


def mlp(config: dict, n_in: int, n_out: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    previous = n_in
    for i in range(config["depth"]):
        layers += [nn.Linear(previous, config[f"width_{i}"]), ACTIVATIONS[config["activation"]]()]
        previous = config[f"width_{i}"]
    layers.append(nn.Linear(previous, n_out))
    return nn.Sequential(*layers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    arrays = np.load(args.data)
    x, y = torch.from_numpy(arrays["x_train"]).float(), torch.from_numpy(arrays["y_train"]).long()
    xv, yv = torch.from_numpy(arrays["x_val"]).float(), torch.from_numpy(arrays["y_val"]).long()
    n_out = int(arrays["n_out"])
    trials, max_epochs, pruner = EXPERIMENTS[args.experiment]
    sampler = (optuna.samplers.GPSampler(n_startup_trials=100, seed=args.seed) if args.experiment == "bo"
               else optuna.samplers.RandomSampler(seed=args.seed))
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner())
    trials_run = Trials(x, y, xv, yv, LR, BATCH, max_epochs)

    def objective(trial: optuna.Trial) -> float:
        config = {"depth": trial.suggest_int("depth", 1, MAX_DEPTH),
                  **{f"width_{i}": trial.suggest_int(f"width_{i}", MIN_WIDTH, MAX_WIDTH) for i in range(MAX_DEPTH)},
                  "activation": trial.suggest_categorical("activation", list(ACTIVATIONS))}
        torch.manual_seed(args.seed * 100_003 + trial.number)
        return trials_run.train(trial, mlp(config, x[0].numel(), n_out))

    study.optimize(objective, n_trials=trials)
    print(json.dumps({"best": trials_run.best_at_max(), "trials": len(study.trials), "epochs": trials_run.epochs}))


if __name__ == "__main__":
    main()
