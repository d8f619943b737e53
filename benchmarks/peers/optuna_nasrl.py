"""The peer's side of ``conv_batching.py --peer``: Hyperband (R = 27, eta = 3) over NAS-RL CNNs on
MNIST-1D with Optuna and a plain PyTorch loop, as a fresh process. It trains the same CNNs as
nasforge (built by nasforge's ``nasrl`` space from the decisions Optuna samples), with the
config's trainer (Adam lr 0.01, batches of 32), from arrays nasforge prepared before the clock.

    python benchmarks/peers/optuna_nasrl.py DATA.npz [--seed 0] [--filters 8,16,32]

Prints one JSON line: the best validation loss of the trials trained 27 epochs, trials, epochs.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import optuna
import torch
from nasforge.space import Space
from nasforge.spaces.nasrl import KERNELS, STRIDES, nasrl_cnn
from plain_loop import Trials  # beside this script

LAYERS, MAX_EPOCHS, LR, BATCH = 4, 27, 0.01, 32


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--filters", default="8,16,32")
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    arrays = np.load(args.data)
    x, y = torch.from_numpy(arrays["x_train"]).float(), torch.from_numpy(arrays["y_train"]).long()
    xv, yv = torch.from_numpy(arrays["x_val"]).float(), torch.from_numpy(arrays["y_val"]).long()
    filters = [int(f) for f in args.filters.split(",")]
    space = Space(nasrl_cnn, {"input_shape": tuple(x.shape[1:]), "n_out": int(arrays["n_out"])}, args={"filters": filters})
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=args.seed),
                                pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=MAX_EPOCHS,
                                                                      reduction_factor=3))
    trials_run = Trials(x, y, xv, yv, LR, BATCH, MAX_EPOCHS)

    def objective(trial: optuna.Trial) -> float:
        arch: dict = {}
        for i in range(LAYERS):
            if i:
                arch[f"layer_{i}/skip"] = [f"layer_{j}" for j in range(i)
                                           if trial.suggest_categorical(f"layer_{i}/skip/layer_{j}", [False, True])]
            arch[f"layer_{i}/kernel"] = trial.suggest_categorical(f"layer_{i}/kernel", list(KERNELS))
            arch[f"layer_{i}/stride"] = trial.suggest_categorical(f"layer_{i}/stride", list(STRIDES))
            arch[f"layer_{i}/filters"] = trial.suggest_categorical(f"layer_{i}/filters", filters)
        torch.manual_seed(args.seed * 100_003 + trial.number)
        return trials_run.train(trial, space.build(arch))

    study.optimize(objective, n_trials=49)
    print(json.dumps({"best": trials_run.best_at_max(), "trials": len(study.trials), "epochs": trials_run.epochs}))


if __name__ == "__main__":
    main()
