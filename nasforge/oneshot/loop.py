"""The one-shot loop: build the supernet, run the method's epochs, checkpoint, record, derive.

A one-shot search is one long training run, not a set of trials. After every epoch the loop
writes one checkpoint (the supernet's weights, the method's state: architecture parameters,
optimisers, baselines; the batch generator's and torch's random states; the record so far) to
``oneshot/checkpoint.pt`` in the study directory, by an atomic rename, and the record of the
epoch to the store (meta ``oneshot``): the distribution of every decision and the architecture
derived at that epoch. A search killed at any moment resumes from its last epoch and ends with
the same architecture parameters and the same derived architecture as one that never stopped.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from nasforge.errors import ConfigError, StoreError
from nasforge.oneshot.base import Batches, OneShotMethod, evaluate
from nasforge.space.space import Space
from nasforge.space.supernet import SupernetArch
from nasforge.train.data import Data
from nasforge.types import ArchDict

CHECKPOINT = "oneshot/checkpoint.pt"
HistoryCallback = Callable[[list[dict[str, Any]]], None]


def build_supernet(space: Space, method: OneShotMethod) -> tuple[nn.Module, SupernetArch]:
    """The space's supernet under the method's mixer. A decision the supernet cannot search
    (unpinned int/float/categorical) raises here, before any work."""
    arch = SupernetArch(method.mixer, method.pin)
    try:
        model = space(arch)
    except Exception:
        arch.check_supported()  # a space that fails on a default given to an unpinned decision: name them
        raise
    arch.check_supported()
    if not arch.searched:
        raise ConfigError(f"space {space.name!r} has no choice or inputs decision left to search by weight sharing "
                          f"(pinned: {', '.join(method.pin) or 'none'})")
    unused = [label for label in method.pin if label not in arch.domains and label not in arch.searched]
    if unused:
        raise ConfigError(f"pin names decisions the space never asks: {', '.join(map(repr, unused))}")
    return model, arch


class OneShotSearch:
    """Runs a :class:`OneShotMethod` on a space and data; ``directory`` holds the checkpoint."""

    def __init__(self, method: OneShotMethod, space: Space, data: Data, directory: Path, seed: int,
                 record: HistoryCallback | None = None):
        if not isinstance(data, Data):
            raise ConfigError("a one-shot strategy trains a supernet on the study's dataset; "
                              "give a dataset (not 'none' or a custom evaluator's own data)")
        self.method, self.space, self.data = method, space, data
        self.path = Path(directory) / CHECKPOINT
        self.seed, self.record = seed, record

    def run(self) -> ArchDict:
        """Search (or finish a search that was stopped) and return the derived architecture."""
        torch.manual_seed(self.seed)  # the supernet's initial weights and the method's sampling
        model, arch = build_supernet(self.space, self.method)
        generator = torch.Generator().manual_seed(self.seed)
        self.method.setup(model, dict(arch.searched), generator)
        batches = Batches(self.data, self.method.batch_size, generator)
        history: list[dict[str, Any]] = []
        start = 0
        if self.path.exists():
            start, history = self._load(model, generator)
            if self.record is not None:  # a kill may have come between the checkpoint and the record
                self.record(history)
        for epoch in range(start, self.method.epochs):
            began = time.perf_counter()
            model.train()
            figures = self.method.train_epoch(model, batches, epoch)
            figures.update(evaluate(model, self.data, batches))
            derived = self.derived(model, batches)
            entry = {"epoch": epoch + 1, "seconds": time.perf_counter() - began, **figures,
                     "distribution": self.method.distribution(), "derived": derived}
            history.append(entry)
            self._save(model, generator, epoch + 1, history)
            if self.record is not None:
                self.record(history)
        if not history:
            return self.derived(model, batches)
        return history[-1]["derived"]

    def derived(self, model: nn.Module, batches: Batches) -> ArchDict:
        """The whole architecture: the method's derived decisions and the pinned ones, as the
        space builds it (values of decisions the derived network does not ask are dropped)."""
        values = {**self.method.pin, **self.method.derive(model, batches)}
        fixed = self.space.canonical(values, np.random.default_rng(self.seed))
        missing = [label for label in fixed if label not in values]
        if missing:
            raise RuntimeError(f"the derived architecture lacks {missing}: the method must decide every searched decision")
        return fixed

    # --- checkpoints ---------------------------------------------------------------------------
    def _save(self, model: nn.Module, generator: torch.Generator, epoch: int, history: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {"epoch": epoch, "model": model.state_dict(), "method": self.method.state_dict(),
                 "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "history": history}
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _load(self, model: nn.Module, generator: torch.Generator) -> tuple[int, list[dict[str, Any]]]:
        try:
            state = torch.load(self.path, weights_only=False)
            model.load_state_dict(state["model"])
            self.method.load_state_dict(state["method"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
        except Exception as exc:  # noqa: BLE001 - any damage means the same: it cannot be continued
            raise StoreError(f"the one-shot checkpoint {str(self.path)!r} is damaged ({type(exc).__name__}: "
                             f"{str(exc)[:80]}); remove it to search again from the start") from None
        return int(state["epoch"]), list(state["history"])
