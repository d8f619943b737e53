"""The built-in supervised trainer: classification (cross-entropy) and regression (MSE)."""
from __future__ import annotations

import copy
import math
import time
from typing import Any

import torch
from torch import nn

from nasforge.errors import ConfigError
from nasforge.train.data import Data
from nasforge.types import EvalResult

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
_EVAL_CHUNK = 4096


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"Invalid device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from exc


class SupervisedTrainer:
    """Trains a model for ``budget`` epochs in total, reporting validation loss/accuracy each epoch.

    Deterministic under torch's global seed (set per trial by the worker): the shuffling generator
    is seeded from it and saved in the state, so training 5 epochs and then 5 more gives the same
    weights as training 10 at once.
    """

    def __init__(self, optimizer: str = "adam", lr: float = 0.01, batch_size: int = 32, weight_decay: float = 0.0,
                 momentum: float = 0.9, device: str = "auto"):
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"Invalid optimizer {optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if not lr > 0:
            raise ConfigError(f"Invalid learning rate: {lr} (must be > 0)")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"Invalid batch_size: {batch_size} (must be an int >= 1)")
        if weight_decay < 0:
            raise ConfigError(f"Invalid weight_decay: {weight_decay} (must be >= 0)")
        self.optimizer, self.lr, self.batch_size = optimizer, lr, batch_size
        self.weight_decay, self.momentum = weight_decay, momentum
        self.device = resolve_device(device)
        self._data_on_device: tuple[Data, Data] | None = None

    def _make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        kwargs: dict[str, Any] = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.optimizer == "sgd":
            kwargs["momentum"] = self.momentum
        return OPTIMIZERS[self.optimizer](model.parameters(), **kwargs)

    def _data(self, data: Data) -> Data:
        # Keep one copy of the data on the device for the life of this trainer (worker). Hold the
        # source itself, not its id(): a freed dataset's id can be reused by the next one.
        if self._data_on_device is None or self._data_on_device[0] is not data:
            self._data_on_device = (data, data.to(self.device))
        return self._data_on_device[1]

    def __call__(self, model: nn.Module, data: Data, budget: float, state: dict[str, Any] | None = None) -> EvalResult:
        data = self._data(data)
        model.to(self.device)
        optimizer = self._make_optimizer(model)
        generator = torch.Generator()
        done = 0
        if state:
            model.load_state_dict(state["model"])
            # A copy: loading aliases the saved tensors, and stepping would then change the caller's state.
            optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
            generator.set_state(state["generator"])
            done = int(state["epochs"])
        else:
            generator.manual_seed(int(torch.randint(0, 2**62, (1,))))
        loss_fn = nn.CrossEntropyLoss() if data.task == "classification" else nn.MSELoss()
        target = int(round(budget))
        curve: list[dict[str, float]] = []
        start = time.perf_counter()
        for epoch in range(done + 1, target + 1):
            train_loss = self._epoch(model, data, optimizer, loss_fn, generator)
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"training loss became {train_loss} in epoch {epoch}")
            val = self._checked_validate(model, data, loss_fn, epoch)
            curve.append({"epoch": float(epoch), "train_loss": train_loss, **val})
        metrics = dict(curve[-1]) if curve else {"epoch": float(done), **self._checked_validate(model, data, loss_fn, done)}
        metrics["params"] = float(sum(p.numel() for p in model.parameters()))
        metrics["train_seconds"] = time.perf_counter() - start
        # A snapshot: the model's state_dict holds its live parameters, which later training would change.
        new_state = {"model": copy.deepcopy(model.state_dict()), "optimizer": optimizer.state_dict(),
                     "generator": generator.get_state(), "epochs": max(target, done)}
        return EvalResult(metrics, curve, new_state)

    def _epoch(self, model: nn.Module, data: Data, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
               generator: torch.Generator) -> float:
        model.train()
        n = len(data.x_train)
        order = torch.randperm(n, generator=generator).to(self.device)
        total = 0.0
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            out = model(data.x_train[idx])
            loss = loss_fn(_shape_like(out, data), data.y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        return total / n

    def _checked_validate(self, model: nn.Module, data: Data, loss_fn: nn.Module, epoch: int) -> dict[str, float]:
        # The last step of an epoch can break the weights after the (finite) training loss was measured.
        metrics = self.validate(model, data, loss_fn)
        if not math.isfinite(metrics["val_loss"]):
            raise FloatingPointError(f"validation loss became {metrics['val_loss']} after epoch {epoch}")
        return metrics

    @torch.no_grad()
    def validate(self, model: nn.Module, data: Data, loss_fn: nn.Module | None = None, split: str = "val") -> dict[str, float]:
        model.eval()
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        loss_fn = loss_fn or (nn.CrossEntropyLoss() if data.task == "classification" else nn.MSELoss())
        outs = torch.cat([model(x[i:i + _EVAL_CHUNK]) for i in range(0, len(x), _EVAL_CHUNK)])
        outs = _shape_like(outs, data)
        metrics = {f"{split}_loss": float(loss_fn(outs, y))}
        if data.task == "classification":
            metrics[f"{split}_accuracy"] = float((outs.argmax(1) == y).float().mean())
        else:
            metrics[f"{split}_rmse"] = math.sqrt(float(((outs - y) ** 2).mean()))
        return metrics


def _shape_like(out: torch.Tensor, data: Data) -> torch.Tensor:
    if data.task == "regression" and data.y_train.dim() == 1 and out.dim() == 2 and out.shape[1] == 1:
        return out[:, 0]
    return out
