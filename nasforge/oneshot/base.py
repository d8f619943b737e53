"""The one-shot method protocol and what its steps share: batches and the task's loss.

Contract (:class:`~nasforge.oneshot.loop.OneShotSearch` is the only caller):

1. ``mixer`` (attribute): how the supernet mixes candidates (:class:`~nasforge.space.supernet.Mixer`).
   The loop builds the supernet with it; the mixer's ``register`` creates the method's
   architecture parameters, in the order the space asks its decisions.
2. ``setup(supernet, searched, generator)`` once the supernet is built: ``searched`` holds the
   decisions it mixes (label -> domain, in order), ``generator`` is the search's seeded
   ``torch.Generator`` (the method's only source of randomness besides torch's, which the loop
   seeds and checkpoints). The method creates its optimisers here.
3. ``train_epoch(supernet, batches, epoch)`` runs one epoch of weight and architecture steps and
   returns the epoch's figures (floats, e.g. ``train_loss``).
4. ``distribution()``: per decision, each candidate's current weight or probability (plain floats).
5. ``derive(supernet, batches)``: the searched decisions' values (a partial architecture, JSON).
6. ``state_dict()`` / ``load_state_dict(state)``: everything that changes during the search
   (architecture parameters, optimisers, baselines), as torch-saveable data; after ``setup`` of
   an identically built supernet, loading it makes the next epochs the same as if the search
   had never stopped.
7. Attributes: ``epochs``, how many epochs the search runs; ``batch_size``, of both splits'
   batches; ``pin``, the values of decisions that are not searched.
"""
from __future__ import annotations

from typing import Any, Iterator, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.errors import ConfigError
from nasforge.space.domains import Domain
from nasforge.space.supernet import Mixer
from nasforge.train.data import Data
from nasforge.types import ArchDict


@runtime_checkable
class OneShotMethod(Protocol):
    mixer: Mixer
    epochs: int
    batch_size: int
    pin: ArchDict

    def setup(self, supernet: nn.Module, searched: dict[str, Domain], generator: torch.Generator) -> None: ...
    def train_epoch(self, supernet: nn.Module, batches: "Batches", epoch: int) -> dict[str, float]: ...
    def distribution(self) -> dict[str, dict[str, float]]: ...
    def derive(self, supernet: nn.Module, batches: "Batches") -> ArchDict: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def is_one_shot(strategy: Any) -> bool:
    return isinstance(strategy, OneShotMethod)


class Batches:
    """Shuffled mini-batches of the training split (weights) and the validation split
    (architecture), drawn with the search's generator."""

    def __init__(self, data: Data, batch_size: int, generator: torch.Generator):
        self.data, self.batch_size, self.generator = data, batch_size, generator
        self._val: Iterator[tuple[torch.Tensor, torch.Tensor]] = iter(())

    def _epoch(self, x: torch.Tensor, y: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(x), generator=self.generator)
        for start in range(0, len(x), self.batch_size):
            index = order[start:start + self.batch_size]
            yield x[index], y[index]

    def train(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch over the training split. It also starts a new pass over the validation
        split, so that no position within a pass is carried from one epoch to the next (a search
        resumed from an epoch's checkpoint draws the same batches)."""
        self._val = iter(())
        return self._epoch(self.data.x_train, self.data.y_train)

    def val(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next validation batch (a new shuffled pass when one ends)."""
        batch = next(self._val, None)
        if batch is None:
            self._val = self._epoch(self.data.x_val, self.data.y_val)
            batch = next(self._val)
        return batch

    def val_epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The whole validation split in order (for evaluating and deriving)."""
        x, y = self.data.x_val, self.data.y_val
        for start in range(0, len(x), self.batch_size):
            yield x[start:start + self.batch_size], y[start:start + self.batch_size]


def check_warmup(warmup: Any, epochs: int, what: str) -> None:
    """``warmup`` epochs of ``what`` come first: an int in [0, epochs)."""
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup < epochs:
        raise ConfigError(f"Invalid warmup: {warmup!r} (epochs of {what}: an int in [0, epochs))")


def weight_step(supernet: nn.Module, optimizer: torch.optim.Optimizer, weights: list[torch.Tensor], grad_clip: float,
                data: Data, x: torch.Tensor, y: torch.Tensor) -> float:
    """One step of the supernet's weights on a training batch (gradients clipped at ``grad_clip``);
    returns the batch's summed loss."""
    optimizer.zero_grad()
    loss = task_loss(data, supernet(x), y)
    loss.backward()
    nn.utils.clip_grad_norm_(weights, grad_clip)
    optimizer.step()
    return float(loss.detach()) * len(x)


def task_loss(data: Data, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if data.task == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss(out.reshape(y.shape), y)


def score(data: Data, out: torch.Tensor, y: torch.Tensor) -> float:
    """Higher is better: accuracy for classification, minus the mean squared error otherwise."""
    if data.task == "classification":
        return float((out.argmax(-1) == y).float().mean())
    return -float(F.mse_loss(out.reshape(y.shape), y))


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, batches: Batches) -> dict[str, float]:
    """Validation loss and score of the supernet (as its mixer stands) over the validation split."""
    total_loss, total_score, n = 0.0, 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for x, y in batches.val_epoch():
            out = model(x)
            total_loss += float(task_loss(data, out, y)) * len(x)
            total_score += score(data, out, y) * len(x)
            n += len(x)
    finally:
        model.train(was_training)
    if data.task == "classification":
        return {"val_loss": total_loss / n, "val_accuracy": total_score / n}
    return {"val_loss": total_loss / n, "val_rmse": (-total_score / n) ** 0.5}  # as the trainer names them
