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
import math

import numpy as np
import optuna
import torch
from torch import nn

from nasforge.space import Space
from nasforge.spaces.nasrl import KERNELS, STRIDES, nasrl_cnn

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
    loss_fn = nn.CrossEntropyLoss()
    finals: list[tuple[int, float]] = []
    epochs = [0]

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
        model = space.build(arch)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        value = math.nan
        for epoch in range(1, MAX_EPOCHS + 1):
            model.train()
            order = torch.randperm(len(x), generator=generator)
            for i in range(0, len(order), BATCH):
                idx = order[i:i + BATCH]
                loss = loss_fn(model(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                value = float(loss_fn(model(xv), yv))
            epochs[0] += 1
            if not math.isfinite(value):
                return math.nan
            trial.report(value, epoch)
            if trial.should_prune():
                finals.append((epoch, value))
                raise optuna.TrialPruned()
        finals.append((MAX_EPOCHS, value))
        return value

    study.optimize(objective, n_trials=49)
    at_max = [v for e, v in finals if e == MAX_EPOCHS and math.isfinite(v)]
    print(json.dumps({"best": min(at_max) if at_max else math.nan, "trials": len(study.trials), "epochs": epochs[0]}))


if __name__ == "__main__":
    main()
