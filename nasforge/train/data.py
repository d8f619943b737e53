"""In-memory datasets as tensors: train / validation (and optionally test) splits."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from nasforge.errors import DataError

TASKS = ("classification", "regression")


@dataclass
class Data:
    """A supervised dataset ready for training. Features are float32; class labels are int64."""

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    n_classes: int | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"Invalid task {self.task!r} for dataset {self.name!r}; allowed: {', '.join(TASKS)}")
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x is None and y is None and split == "test":
                continue
            if x is None or y is None:
                raise DataError(f"Dataset {self.name!r}: split {split!r} needs both x and y")
            x, y = _as_tensor(x, torch.float32), _as_tensor(y, torch.int64 if self.task == "classification" else torch.float32)
            if len(x) != len(y):
                raise DataError(f"Dataset {self.name!r}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
            if len(x) == 0:
                raise DataError(f"Dataset {self.name!r}: split {split!r} is empty")
            if not torch.isfinite(x).all():
                raise DataError(f"Dataset {self.name!r}: x_{split} holds NaN or infinite values")
            if y.is_floating_point() and not torch.isfinite(y).all():
                raise DataError(f"Dataset {self.name!r}: y_{split} holds NaN or infinite targets")
            setattr(self, f"x_{split}", x)
            setattr(self, f"y_{split}", y)
        if self.x_train.shape[1:] != self.x_val.shape[1:]:
            raise DataError(f"Dataset {self.name!r}: train samples have shape {tuple(self.x_train.shape[1:])}, validation {tuple(self.x_val.shape[1:])}")
        if self.task == "classification":
            labels = torch.cat([self.y_train, self.y_val])
            if labels.min() < 0:
                raise DataError(f"Dataset {self.name!r}: class labels must be 0..n_classes-1, found {int(labels.min())}")
            needed = int(labels.max()) + 1
            if self.n_classes is None:
                self.n_classes = needed
            elif needed > self.n_classes:
                raise DataError(f"Dataset {self.name!r}: label {needed - 1} is out of range for n_classes={self.n_classes}")

    @classmethod
    def from_arrays(cls, x: Any, y: Any, *, task: str = "auto", val_fraction: float = 0.33, seed: int = 42,
                    scaling: str = "minmax", name: str = "arrays") -> "Data":
        """Split arrays into seeded train / validation parts, scaling features on the train part."""
        from nasforge.datasets.files import from_arrays
        return from_arrays(np.asarray(x), np.asarray(y), task=task, val_fraction=val_fraction, seed=seed,
                           scaling=scaling, name=name)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_in(self) -> int:
        return int(math.prod(self.input_shape))

    @property
    def n_out(self) -> int:
        if self.task == "classification":
            return int(self.n_classes or 0)
        return 1 if self.y_train.dim() == 1 else int(self.y_train.shape[1])

    def context(self) -> dict[str, Any]:
        """What a space function may ask for besides ``arch``."""
        return {"n_in": self.n_in, "n_out": self.n_out, "input_shape": self.input_shape,
                "task": self.task, "n_classes": self.n_classes}

    def to(self, device: torch.device | str) -> "Data":
        moved = {f: getattr(self, f).to(device) for f in ("x_train", "y_train", "x_val", "y_val")}
        if self.x_test is not None and self.y_test is not None:
            moved.update(x_test=self.x_test.to(device), y_test=self.y_test.to(device))
        return replace(self, **moved)

    def summary(self) -> str:
        test = f", {len(self.x_test)} test" if self.x_test is not None else ""
        classes = f", {self.n_classes} classes" if self.task == "classification" else ""
        return (f"{self.name}: {self.task}{classes}, input {self.input_shape}, "
                f"{len(self.x_train)} train / {len(self.x_val)} validation{test}")


def _as_tensor(a: Any, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().to(dtype)
    try:
        return torch.as_tensor(np.asarray(a), dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise DataError(f"Cannot turn {type(a).__name__} into a {dtype} tensor: {exc}") from exc
