"""Fit the stacked-MLP step-time model (``nasforge/engine/mlp_layout.py``'s constants) to this core.

Times training steps of random groups of MLP candidates (the ``mlp`` space's shapes: 1-6 layers of
2-100 units, relu/tanh/gelu) at the input sizes of iris (4), MNIST-1D (40) and digits (64) and
batches of 10 and 32, at one thread, and fits the model's terms by non-negative least squares on
relative error. Prints the fitted constants, and the median and 90th-percentile relative error of
the fitted model and of the constants in the code now, per input size. Half the groups are one
depth with widths close together, so the fit sees groups with little padding as well as much.

    python benchmarks/fit_step_cost.py [--groups 300] [--seed 0]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from scipy.optimize import nnls
from torch import nn

from nasforge.engine import mlp_layout
from nasforge.engine.mlp_layout import MLPShape, activation_runs, layout, stack_order
from nasforge.engine.stacked_mlp import MLPNet
from nasforge.train.data import Data
from nasforge.train.trainer import SupervisedTrainer

ACTS = [nn.ReLU, nn.Tanh, nn.GELU]
TERMS = ["STEP_US", "LAYER_US", "ROW_LAYER_US", "SEGMENT_US", "MIXED_US", "EXIT_US", "US_PER_MFLOP"]


def features(shapes: list[MLPShape], batch: int) -> list[float]:
    """The model's terms for one group, in the order of TERMS (what step_cost multiplies)."""
    rows = sorted(shapes, key=stack_order)
    lay = layout([s.linears for s in rows])
    runs = sum(len(layer) for layer in activation_runs([s.activation_keys for s in rows], lay.rows))
    exits = len(lay.exits)
    mixed = exits > 1
    return [1.0, len(lay.rows) - 1, sum(lay.rows[:-1]), runs, float(mixed), float(exits if mixed else 0),
            6.0 * lay.padded_macs * batch / 1e6]


def random_group(rng: np.random.Generator, n_in: int, n_out: int) -> list[nn.Sequential]:
    size = int(rng.integers(1, 17))
    same_depth = rng.random() < 0.5
    depth0 = int(rng.integers(1, 7))
    centre = int(rng.integers(2, 101))
    models = []
    for _ in range(size):
        depth = depth0 if same_depth else int(rng.integers(1, 7))
        if same_depth:
            widths = [int(np.clip(centre + rng.integers(-8, 9), 2, 100)) for _ in range(depth)]
        else:
            widths = [int(rng.integers(2, 101)) for _ in range(depth)]
        act = ACTS[int(rng.integers(0, 3))]
        layers: list[nn.Module] = []
        previous = n_in
        for w in widths:
            layers += [nn.Linear(previous, w), act()]
            previous = w
        layers.append(nn.Linear(previous, n_out))
        models.append(nn.Sequential(*layers))
    return models


def step_seconds(models: list[nn.Sequential], n_in: int, n_out: int, batch: int, trainer: SupervisedTrainer) -> float:
    shapes = [mlp_layout.mlp_shape(m) for m in models]
    order = sorted(range(len(models)), key=lambda i: stack_order(shapes[i]))
    models, shapes = [models[i] for i in order], [shapes[i] for i in order]
    x = torch.randn(200, n_in)
    y = torch.randint(0, n_out, (200,))
    data = Data("probe", "classification", x.numpy(), y.numpy(), x[:50].numpy(), y[:50].numpy(), n_classes=n_out)
    net = MLPNet(trainer, models, shapes, [None] * len(models), data)  # type: ignore[arg-type]
    xb = torch.randn(len(models), batch, n_in)
    yb = torch.randint(0, n_out, (len(models), batch))
    with torch.no_grad():
        for _ in range(5):
            net.step(xb, yb)
        times = []
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(20):
                net.step(xb, yb)
            times.append((time.perf_counter() - start) / 20)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    trainer = SupervisedTrainer(lr=0.01, device="cpu")
    sizes = [(4, 3), (40, 10), (64, 10)]
    rows: list[tuple[int, list[float], float]] = []
    for g in range(args.groups):
        n_in, n_out = sizes[g % len(sizes)]
        batch = (10, 32)[(g // len(sizes)) % 2]
        models = random_group(rng, n_in, n_out)
        shapes = [mlp_layout.mlp_shape(m) for m in models]
        rows.append((n_in, features(shapes, batch), step_seconds(models, n_in, n_out, batch, trainer) * 1e6))  # type: ignore[arg-type]
    A = np.array([f for _, f, _ in rows])
    t = np.array([s for _, _, s in rows])
    coef, _ = nnls(A / t[:, None], np.ones(len(t)))  # relative error: small groups count as much as large
    now = np.array([getattr(mlp_layout, name) for name in TERMS])
    print("term           fitted    in code")
    for name, c, n in zip(TERMS, coef, now):
        print(f"{name:<14} {c:8.2f} {n:10.2f}")
    for label, k in (("fitted", coef), ("in code", now)):
        for n_in, _ in sizes:
            idx = [i for i, (m, _, _) in enumerate(rows) if m == n_in]
            err = [abs(A[i] @ k - t[i]) / t[i] for i in idx]
            print(f"{label:<8} n_in {n_in:>2}: median error {statistics.median(err):.0%}, "
                  f"90th percentile {np.percentile(err, 90):.0%}, mean step {np.mean(t[idx]):.0f} us")


if __name__ == "__main__":
    main()
