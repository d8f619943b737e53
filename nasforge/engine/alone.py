"""One candidate trained exactly as the one-by-one trainer trains it, for a candidate the
grouping leaves alone (a stacked group of one would only add the stack's overhead)."""
from __future__ import annotations

from typing import Any

from nasforge.train.data import Data
from nasforge.train.trainer import SupervisedTrainer


def train_alone(trainer: SupervisedTrainer, cand: Any, data: Data) -> None:
    """``cand.model`` already holds the state it continues from and ``cand.run`` the shuffling
    generator (drawn by :meth:`~nasforge.engine.population.PopulationTrainer.candidate` as the
    trainer draws it). Sets ``cand.result``, or ``cand.error`` when the loss stops being finite."""
    try:
        cand.result = trainer.continue_run(cand.model, data, cand.budget,
                                           cand.state["optimizer"] if cand.state else None, cand.run)
    except FloatingPointError as exc:
        cand.error = f"FloatingPointError: {exc}"
