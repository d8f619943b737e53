"""The built-in supervised trainer: classification (cross-entropy) and regression (MSE)."""
from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from nasforge.errors import ConfigError
from nasforge.private_api import skip_dynamo_import_in_optimizers
from nasforge.train.data import Data
from nasforge.train.state import clone_state, torch_threads
from nasforge.types import EvalResult

skip_dynamo_import_in_optimizers()  # a search that never compiles need not import torch._dynamo
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
_EVAL_CHUNK = 4096


def start_run(model: nn.Module, state: dict[str, Any] | None) -> "_Run":
    """Where a trial's training stands: loaded from ``state`` (its weights into ``model``), or a
    fresh run whose shuffling seed is drawn from torch's global RNG (seeded per trial)."""
    run = _Run(torch.Generator())
    if state:
        model.load_state_dict(state["model"])
        run.load(state)
    else:
        run.generator.manual_seed(int(torch.randint(0, 2**62, (1,))))
    return run


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"Invalid device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: this machine has no CUDA device; use 'cpu' or 'auto'")
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"Invalid device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'")
    return resolved


BUDGET_UNITS = ("epochs", "data_fraction")


class SupervisedTrainer:
    """Trains a model up to ``budget`` and reports validation loss/accuracy along the way.

    ``budget_unit="epochs"``: the budget is epochs in total; fractional budgets train that share
    of an epoch's batches (Hyperband's 1.11 epochs is 1.11 x the batches of an epoch).
    ``budget_unit="data_fraction"``: the budget is the fraction of the training set used; every
    call trains ``epochs`` epochs on the first ``ceil(budget * n)`` samples of one fixed order,
    so a promoted trial continues on a larger subset that contains the smaller one.

    Deterministic under torch's global seed (set per trial by the worker): the shuffling
    generator is seeded from it and saved in the state, with the position inside the epoch, so
    training 5 epochs and then 5 more gives the same weights as training 10 at once.
    """

    def __init__(self, optimizer: str = "adam", lr: float = 0.01, batch_size: int = 32, weight_decay: float = 0.0,
                 momentum: float = 0.9, device: str = "auto", budget_unit: str = "epochs", epochs: int = 10,
                 threads: int = 1):
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"Invalid optimizer {optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if not lr > 0:
            raise ConfigError(f"Invalid learning rate: {lr} (must be > 0)")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"Invalid batch_size: {batch_size} (must be an int >= 1)")
        if weight_decay < 0:
            raise ConfigError(f"Invalid weight_decay: {weight_decay} (must be >= 0)")
        if budget_unit not in BUDGET_UNITS:
            raise ConfigError(f"Invalid budget_unit {budget_unit!r}; allowed: {', '.join(BUDGET_UNITS)}")
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"Invalid epochs: {epochs} (must be an int >= 1)")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"Invalid threads: {threads} (must be an int >= 1)")
        self.optimizer, self.lr, self.batch_size = optimizer, lr, batch_size
        self.weight_decay, self.momentum = weight_decay, momentum
        self.budget_unit, self.epochs = budget_unit, epochs
        # One thread a process by default, and a process a core: small networks gain little from a
        # second thread, and OpenMP threads spin-waiting beside a busy process slow a step 20x.
        self.threads = threads
        self.device = resolve_device(device)
        self._data_on_device: tuple[Data, Data] | None = None
        self._param_group: dict[str, Any] | None = None

    def _make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return self._make_optimizer_for(list(model.parameters()))

    def _make_optimizer_for(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        kwargs: dict[str, Any] = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.optimizer == "sgd":
            kwargs["momentum"] = self.momentum
        try:  # the fused kernels take a third of the time of the per-tensor loop on small models
            return OPTIMIZERS[self.optimizer](params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            return OPTIMIZERS[self.optimizer](params, **kwargs)

    def batch_trainer(self) -> Any:
        """The population trainer with these settings (:mod:`nasforge.engine`): it trains MLPs,
        NAS-RL CNNs of equal feature-map sizes, and models with identical twins in stacked groups."""
        from nasforge.engine.population import PopulationTrainer  # only executors that batch need it
        return PopulationTrainer(self)

    @staticmethod
    def metric_names(task: str) -> tuple[str, ...]:
        """The metrics a trial trained by this trainer reports on data of ``task``."""
        scored = "val_accuracy" if task == "classification" else "val_rmse"
        return ("epoch", "train_loss", "val_loss", scored, "best_val_loss", "params", "train_seconds")

    def param_group(self) -> dict[str, Any]:
        """The settings torch.optim writes into a param group of its state dict, without "params"
        (built once: state dicts of stacked candidates are assembled from them)."""
        if self._param_group is None:
            probe = torch.zeros(1, device=self.device, requires_grad=True)
            group = self._make_optimizer_for([probe]).state_dict()["param_groups"][0]
            self._param_group = {k: v for k, v in group.items() if k != "params"}
        return self._param_group

    def check_budget(self, budget: float) -> None:
        if not budget > 0:
            raise ConfigError(f"Invalid budget: {budget} (must be > 0)")
        if self.budget_unit == "data_fraction" and budget > 1 + 1e-9:
            raise ConfigError(f"Invalid budget: {budget} (a data fraction must be in (0, 1])")

    def plan(self, n: int, budget: float, run: "_Run") -> tuple[int, int]:
        """(rows trained on, optimizer steps to reach) for a job of ``budget`` from ``run``.
        A data-fraction job starts a fresh epoch on its subset (``run`` is reset accordingly)."""
        if self.budget_unit == "epochs":
            return n, round(budget * _steps_per_epoch(n, self.batch_size))
        subset = max(1, math.ceil(budget * n - 1e-9))
        run.position, run.order = 0, None
        return subset, run.steps + self.epochs * _steps_per_epoch(subset, self.batch_size)

    def _data(self, data: Data) -> Data:
        # Keep one copy of the data on the device for the life of this trainer (worker). Hold the
        # source itself, not its id(): a freed dataset's id can be reused by the next one.
        if self._data_on_device is None or self._data_on_device[0] is not data:
            self._data_on_device = (data, data.to(self.device))
        return self._data_on_device[1]

    def __call__(self, model: nn.Module, data: Data, budget: float, state: dict[str, Any] | None = None) -> EvalResult:
        with torch_threads(self.threads):
            return self._evaluate(model, data, budget, state)

    def _evaluate(self, model: nn.Module, data: Data, budget: float, state: dict[str, Any] | None) -> EvalResult:
        self.check_budget(budget)
        run = start_run(model, state)
        return self.continue_run(model, data, budget, state["optimizer"] if state else None, run)

    def continue_run(self, model: nn.Module, data: Data, budget: float, optimizer_state: dict[str, Any] | None,
                     run: "_Run") -> EvalResult:
        """Train ``model`` (already holding the weights it continues from) from where ``run``
        stands to ``budget``; what a call does once its state is loaded (the population trainer
        calls it for a candidate it trains alone)."""
        data = self._data(data)
        model.to(self.device)
        optimizer = self._make_optimizer(model)
        if optimizer_state:
            # A copy: loading aliases the saved tensors, and stepping would then change the caller's state.
            optimizer.load_state_dict(clone_state(optimizer_state))
        loss_fn = nn.CrossEntropyLoss() if data.task == "classification" else nn.MSELoss()
        subset, target = self.plan(len(data.x_train), budget, run)
        start = time.perf_counter()
        curve = self._train(model, data, optimizer, loss_fn, run, subset, target)
        last = curve[-1] if curve else {"epoch": run.epoch, **self._checked_validate(model, data, loss_fn, run.epoch)}
        metrics = final_metrics(last, curve, run, model, time.perf_counter() - start)
        # A snapshot: the model's state_dict holds its live parameters, which later training would change.
        new_state = {"model": clone_state(model.state_dict()), "optimizer": optimizer.state_dict(), **run.dump()}
        return EvalResult(metrics, curve, new_state)

    def _train(self, model: nn.Module, data: Data, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, run: "_Run",
               subset: int, target: int) -> list[dict[str, float]]:
        """Step until ``run.steps == target``; a curve point at each epoch end and at the stop."""
        model.train()
        curve: list[dict[str, float]] = []
        n = len(data.x_train)
        total, count = 0.0, 0
        fixed = _fixed_order(n, self.device) if subset < n else None
        while run.steps < target:
            if run.position == 0:
                run.order = torch.randperm(subset, generator=run.generator).to(self.device)
                if fixed is not None:
                    run.order = fixed[run.order]
            idx = run.order[run.position:run.position + self.batch_size]
            out = model(data.x_train[idx])
            loss = loss_fn(_shape_like(out, data), data.y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + loss.detach() * len(idx), count + len(idx)  # a tensor: no device sync per step
            run.steps, run.position, run.seen = run.steps + 1, run.position + len(idx), run.seen + len(idx)
            if run.position >= subset:
                run.position = 0
            run.epoch = run.steps / _steps_per_epoch(n, self.batch_size) if self.budget_unit == "epochs" else run.seen / n
            if run.position == 0 or run.steps == target:
                train_loss = float(total) / count
                if not math.isfinite(train_loss):
                    raise FloatingPointError(f"training loss became {train_loss} by epoch {run.epoch:.3g}")
                curve.append({"epoch": run.epoch, "train_loss": train_loss,
                              **self._checked_validate(model, data, loss_fn, run.epoch)})
                total, count = 0.0, 0
                model.train()
        return curve

    def _checked_validate(self, model: nn.Module, data: Data, loss_fn: nn.Module, epoch: float) -> dict[str, float]:
        # The last step of an epoch can break the weights after the (finite) training loss was measured.
        metrics = self.validate(model, data, loss_fn)
        if not math.isfinite(metrics["val_loss"]):
            raise FloatingPointError(f"validation loss became {metrics['val_loss']} after epoch {epoch:.3g}")
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


def final_metrics(last: dict[str, float], curve: list[dict[str, float]], run: "_Run", model: nn.Module,
                  seconds: float) -> dict[str, float]:
    """A job's metrics: its last curve point, the best validation loss of any epoch the trial has
    trained so far (``best_val_loss``, the chapter's ranking; kept across promotions in ``run``),
    the parameter count and the training time."""
    run.best_val_loss = min([run.best_val_loss, *(point["val_loss"] for point in curve)])
    metrics = dict(last)
    if math.isfinite(run.best_val_loss):
        metrics["best_val_loss"] = run.best_val_loss
    metrics["params"] = float(sum(p.numel() for p in model.parameters()))
    metrics["train_seconds"] = seconds
    return metrics


def _shape_like(out: torch.Tensor, data: Data) -> torch.Tensor:
    if data.task == "regression" and data.y_train.dim() == 1 and out.dim() == 2 and out.shape[1] == 1:
        return out[:, 0]
    return out


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def _fixed_order(n: int, device: torch.device) -> torch.Tensor:
    """One order of the training set shared by every trial: data-fraction subsets are its prefixes."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(device)


class _Run:
    """Where training stands: optimizer steps, samples seen, the shuffling generator and the
    position inside the current epoch's order (so a job can stop and resume mid-epoch)."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator
        self.steps = 0
        self.seen = 0
        self.epoch = 0.0  # progress in epochs of the full training set
        self.position = 0
        self.order: torch.Tensor | None = None
        self.best_val_loss = math.inf

    def load(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.steps, self.seen, self.position = int(state["steps"]), int(state["seen"]), int(state["position"])
        self.epoch = float(state["epochs"])
        self.order = state.get("order")
        self.best_val_loss = float(state.get("best_val_loss", math.inf))

    def dump(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "steps": self.steps, "seen": self.seen, "epochs": self.epoch,
                "position": self.position, "order": None if self.order is None else self.order.cpu(),
                "best_val_loss": self.best_val_loss}
