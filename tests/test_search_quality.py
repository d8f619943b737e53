"""Search quality on real data: the methods that should beat random search do, at an equal budget.

Fixed seeds, real training (MLP space, Adam, batch 128), 10 seeds per comparison. The figures
behind these thresholds come from benchmarks/strategies_real_data.py.
"""
from __future__ import annotations

import statistics

import pytest

import nasforge

SEEDS = range(10)
TRAINER = {"batch_size": 128, "lr": 0.01}
STRATEGIES = {
    "random": "random",
    "bayesopt": {"name": "bayesopt", "args": {"n_initial": 8}},
    "evolution": {"name": "evolution", "args": {"population_size": 10, "sample_size": 5}},
}


def best_losses(tmp_path, dataset: str, strategy, trials: int, epochs: int) -> list[float]:
    out = []
    for seed in SEEDS:
        study = nasforge.search("mlp", dataset, strategy, budget=epochs, trials=trials, seed=seed, trainer=TRAINER,
                                out=tmp_path / f"{dataset}-{seed}-{id(strategy)}")
        out.append(study.best.loss)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["digits", "mnist1d"])
def test_bayesopt_and_evolution_beat_random_search(tmp_path, dataset):
    losses = {name: best_losses(tmp_path, dataset, s, trials=24, epochs=3) for name, s in STRATEGIES.items()}
    means = {name: statistics.mean(v) for name, v in losses.items()}
    print(dataset, {k: round(v, 4) for k, v in means.items()})
    assert means["bayesopt"] < means["random"]
    assert means["evolution"] < means["random"]


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["digits", "mnist1d"])
def test_hyperband_matches_random_search_with_fewer_epochs(tmp_path, dataset):
    """Random search: 20 trials x 9 epochs. Hyperband (R = 9, eta = 3, two iterations of its
    brackets, 34 configurations): at least as good a best validation loss, with fewer epochs."""
    hb_loss, hb_epochs, rs_loss, rs_epochs = [], [], [], []
    for seed in SEEDS:
        hb = nasforge.search("mlp", dataset, "random", {"name": "hyperband", "args": {"eta": 3, "iterations": 2}},
                             budget=9, seed=seed, trainer=TRAINER, out=tmp_path / f"hb{seed}")
        rs = nasforge.search("mlp", dataset, "random", budget=9, trials=20, seed=seed, trainer=TRAINER,
                             out=tmp_path / f"rs{seed}")
        hb_loss.append(hb.best.loss)
        rs_loss.append(rs.best.loss)
        hb_epochs.append(sum(t.budget_used for t in hb.trials))
        rs_epochs.append(sum(t.budget_used for t in rs.trials))
    print(dataset, "hyperband", statistics.mean(hb_loss), statistics.mean(hb_epochs),
          "random", statistics.mean(rs_loss), statistics.mean(rs_epochs))
    assert statistics.mean(hb_epochs) < 0.8 * statistics.mean(rs_epochs)
    assert statistics.mean(hb_loss) <= statistics.mean(rs_loss)
