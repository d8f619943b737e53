"""What a finished (or running) study gives back: its best trial and trained models."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from torch import nn

from nasforge.errors import StoreError
from nasforge.store.checkpoints import read_checkpoint
from nasforge.space.space import Space
from nasforge.store.base import Trial
from nasforge.train.evaluator import call_evaluator, trial_parameters
from nasforge.train.state import seed_torch
from nasforge.types import TrialState


def best_trial(trials: list[Trial]) -> Trial | None:
    """The lowest loss among complete trials (among any evaluated trial if none is complete)."""
    complete = [t for t in trials if t.state is TrialState.COMPLETE and t.loss is not None]
    pool = complete or [t for t in trials if t.loss is not None and t.state is not TrialState.FAILED]
    if not pool:
        return None
    return min(pool, key=lambda t: (-t.budget_used, t.loss, t.id) if not complete else (t.loss, t.id))


def load_trained_model(space: Space, directory: Path, trial: Trial, evaluator: Callable[..., Any] | None = None,
                       data: Any = None) -> nn.Module:
    """The trial's trained model from its checkpoint. A checkpoint lost in a crash is rebuilt by
    training again from the trial's seed to its budget (training is deterministic)."""
    seed_torch(trial.seed)
    model = space.build(trial.arch)
    path = directory / trial.checkpoint if trial.checkpoint else None
    saved = read_checkpoint(path)
    if saved is not None:
        state = saved["evaluator"]
    elif path is not None and evaluator is not None:
        state = call_evaluator(evaluator, trial_parameters(evaluator), model, data, trial.budget_used, None,
                               arch=trial.arch, trial_id=trial.id, seed=trial.seed).state or {}
    elif path is not None:
        raise StoreError(f"the checkpoint of trial {trial.id} is missing ({path}); pass the evaluator to train it again")
    else:
        raise StoreError(f"trial {trial.id} has no trained weights: its evaluator returned no state to keep (return "
                         f"nasforge.EvalResult(metrics, state={{'model': model.state_dict()}}) to keep them)")
    if "model" in state:
        model.load_state_dict(state["model"])
    model.eval()
    return model
