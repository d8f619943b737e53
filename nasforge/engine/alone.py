"""One candidate trained exactly as the one-by-one trainer trains it, for a candidate the
grouping leaves alone (a stacked group of one would only add the stack's overhead)."""
from __future__ import annotations

import time
from typing import Any

from torch import nn

from nasforge.train.data import Data
from nasforge.train.state import clone_state
from nasforge.train.trainer import SupervisedTrainer, final_metrics
from nasforge.types import EvalResult


def train_alone(trainer: SupervisedTrainer, cand: Any, data: Data) -> None:
    """What :meth:`SupervisedTrainer.__call__` does after building its run: ``cand.model``
    already holds the state it continues from and ``cand.run`` the shuffling generator (drawn
    by :meth:`~nasforge.engine.population.PopulationTrainer.candidate` as the trainer draws it).
    Sets ``cand.result``, or ``cand.error`` when the loss stops being finite."""
    model = cand.model.to(trainer.device)
    optimizer = trainer._make_optimizer(model)
    if cand.state:
        optimizer.load_state_dict(clone_state(cand.state["optimizer"]))  # a copy: stepping must not change the caller's
    loss_fn = nn.CrossEntropyLoss() if data.task == "classification" else nn.MSELoss()
    subset, target = trainer.plan(len(data.x_train), cand.budget, cand.run)
    start = time.perf_counter()
    try:
        curve = trainer._train(model, data, optimizer, loss_fn, cand.run, subset, target)
        last = curve[-1] if curve else {"epoch": cand.run.epoch,
                                        **trainer._checked_validate(model, data, loss_fn, cand.run.epoch)}
    except FloatingPointError as exc:
        cand.error = f"FloatingPointError: {exc}"
        return
    metrics = final_metrics(last, curve, cand.run, model, time.perf_counter() - start)
    state = {"model": clone_state(model.state_dict()), "optimizer": optimizer.state_dict(), **cand.run.dump()}
    cand.result = EvalResult(metrics, curve, state)
