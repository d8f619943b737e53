"""The plain PyTorch trial both Optuna peer scripts run: Adam (fused), shuffled mini-batches, the
validation loss after each epoch reported to Optuna's pruner."""
from __future__ import annotations

import math

import optuna
import torch
from torch import nn


class Trials:
    """Trains trials and keeps (epochs trained, last validation loss) of each, and the epochs."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, lr: float, batch: int,
                 max_epochs: int):
        self.x, self.y, self.xv, self.yv = x, y, xv, yv
        self.lr, self.batch, self.max_epochs = lr, batch, max_epochs
        self.finals: list[tuple[int, float]] = []
        self.epochs = 0
        self.loss_fn = nn.CrossEntropyLoss()

    def train(self, trial: optuna.Trial, model: nn.Module) -> float:
        """Call right after building ``model`` under the trial's seed."""
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr, fused=True)
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        value = math.nan
        for epoch in range(1, self.max_epochs + 1):
            model.train()
            order = torch.randperm(len(self.x), generator=generator)
            for i in range(0, len(order), self.batch):
                idx = order[i:i + self.batch]
                loss = self.loss_fn(model(self.x[idx]), self.y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                value = float(self.loss_fn(model(self.xv), self.yv))
            self.epochs += 1
            if not math.isfinite(value):
                return math.nan
            trial.report(value, epoch)
            if trial.should_prune():
                self.finals.append((epoch, value))
                raise optuna.TrialPruned()
        self.finals.append((self.max_epochs, value))
        return value

    def best_at_max(self) -> float:
        """The best validation loss of the trials trained to the largest budget."""
        at_max = [v for e, v in self.finals if e == self.max_epochs and math.isfinite(v)]
        return min(at_max) if at_max else math.nan
