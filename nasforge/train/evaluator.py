"""The evaluator protocol: how a trial's model is trained and scored.

An evaluator is any callable ``evaluate(model, data, budget, state) -> metrics``:

* ``model`` — a freshly built ``nn.Module`` for the trial's architecture (seeded);
* ``data`` — the study's :class:`~nasforge.train.data.Data` (or whatever the user passed);
* ``budget`` — the total resource the trial should have had when it returns (epochs for the
  built-in trainer); a promoted trial is called again with a larger budget;
* ``state`` — ``None`` on the first call, else the ``state`` the previous call returned, so
  training continues where it stopped (model and optimiser state).

An evaluator may also ask for what it needs to know of the trial, by naming parameters (as a
space names the data's context): ``arch`` (the architecture dict, e.g. for a table lookup),
``trial_id`` and ``seed``. Those it does not name are not passed, so ``(model, data, budget,
state)`` evaluators work unchanged.

It returns either a plain ``dict`` of metrics, or an :class:`~nasforge.types.EvalResult` with the
metrics, a per-epoch curve and a state to continue from. It raises to fail the trial.

An evaluator that can also train several trials' models at once says so with one method,
``batch_trainer()`` (:class:`TrainsTogether`): executors then hand it every job of a poll that
it :meth:`~BatchTrainer.supports` instead of calling it once per job. The built-in trainer does
(:mod:`nasforge.engine`); a user's evaluator may too.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from torch import nn

from nasforge.types import EvalResult


class Evaluator(Protocol):
    def __call__(self, model: nn.Module, data: Any, budget: float, state: dict[str, Any] | None) -> EvalResult | Mapping[str, float]: ...


class BatchTrainer(Protocol):
    """Trains many models at once; what :meth:`TrainsTogether.batch_trainer` returns.

    ``candidate`` wraps a freshly built (seeded) model and the state it continues from; ``key``
    says which candidates may train in one call of ``train`` (equal keys); ``train`` sets each
    candidate's ``result`` (an :class:`~nasforge.types.EvalResult`) or ``error``, with the same
    metrics, curves and states as the evaluator called once per model would give. A candidate
    has ``model``, ``state`` (what it continued from), ``result`` and ``error``."""

    def supports(self, model: nn.Module) -> bool: ...
    def candidate(self, model: nn.Module, budget: float, state: dict[str, Any] | None, signature: str = "") -> Any: ...
    def key(self, candidate: Any, data: Any) -> tuple[Any, ...]: ...
    def pays(self, key: tuple[Any, ...], count: int) -> bool: ...  # False: train these one by one instead
    def train(self, candidates: list[Any], data: Any) -> None: ...


@runtime_checkable
class TrainsTogether(Protocol):
    """The capability an evaluator offers executors to train jobs together."""

    def batch_trainer(self) -> BatchTrainer: ...


def batch_trainer_of(evaluator: Any) -> BatchTrainer | None:
    """The evaluator's batch trainer, or None when it trains one model per call only."""
    return evaluator.batch_trainer() if isinstance(evaluator, TrainsTogether) else None


TRIAL_PARAMETERS = ("arch", "trial_id", "seed")


def trial_parameters(evaluator: Callable[..., Any]) -> tuple[str, ...]:
    """Which of :data:`TRIAL_PARAMETERS` the evaluator names (read once per study)."""
    try:
        params = inspect.signature(evaluator).parameters
    except (TypeError, ValueError):
        return ()
    return tuple(name for name in TRIAL_PARAMETERS if name in params)


def call_evaluator(evaluator: Callable[..., Any], wanted: tuple[str, ...], model: nn.Module, data: Any,
                   budget: float, state: dict[str, Any] | None, *, arch: Any, trial_id: int, seed: int) -> EvalResult:
    """Call ``evaluator`` with the four arguments and the trial's parameters it ``wanted``."""
    known = {"arch": arch, "trial_id": trial_id, "seed": seed}
    return as_eval_result(evaluator(model, data, budget, state, **{name: known[name] for name in wanted}))


def as_eval_result(out: Any) -> EvalResult:
    """Normalise what an evaluator returned; non-numeric metrics are an error naming them."""
    if isinstance(out, EvalResult):
        result = out
    elif isinstance(out, Mapping):
        result = EvalResult(dict(out))
    else:
        raise TypeError(f"An evaluator must return a dict of metrics or an EvalResult, got {type(out).__name__}")
    if not isinstance(result.curve, list):
        raise TypeError(f"EvalResult.curve must be a list of per-epoch metric dicts ([] for none), "
                        f"got {type(result.curve).__name__}")
    clean: dict[str, float] = {}
    for key, value in result.metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "item"):
            raise TypeError(f"Metric {key!r} must be a number, got {type(value).__name__}")
        clean[str(key)] = float(value.item() if hasattr(value, "item") else value)
    result.metrics = clean
    return result


def nonfinite(metrics: Mapping[str, float]) -> list[str]:
    return [k for k, v in metrics.items() if not math.isfinite(v)]


EvaluateFn = Callable[..., Any]
