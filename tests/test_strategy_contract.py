"""Every registered strategy under every registered scheduler, on deliberately awkward spaces:
each study completes, or is refused before any trial with one line naming a decision.

New strategies and schedulers join by being registered; nothing here names one."""
from __future__ import annotations

import pytest

import nasforge
from awkward_spaces import AWKWARD, lookup
from nasforge.errors import NasforgeError
from nasforge.schedulers import SCHEDULERS
from nasforge.space import Space
from nasforge.store.sqlite import SQLiteStore
from nasforge.strategies import ONE_SHOT, STRATEGIES

TRIALS = 8


def evaluate(model, data, budget, state, arch):
    """A table lookup: the score depends only on the architecture the evaluator is handed."""
    return {"val_loss": lookup(arch) + 0.01 / budget}


@pytest.mark.parametrize("space_name", sorted(AWKWARD))
@pytest.mark.parametrize("scheduler", SCHEDULERS.names())
@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_completes_or_refuses_at_the_start(tmp_path, strategy, scheduler, space_name):
    space_fn = AWKWARD[space_name]
    space = Space(space_fn, {"n_in": 4, "n_out": 3})
    try:
        # iris (4 features, 3 classes, as the context above) for the strategies that train on the
        # data themselves (one-shot: a supernet); the evaluator scores by table lookup
        study = nasforge.search(space_fn, "iris", strategy, scheduler, evaluate=evaluate, budget=4, trials=TRIALS,
                                seed=0, out=tmp_path)
    except NasforgeError as exc:
        message = str(exc)
        assert "\n" not in message
        if strategy in ONE_SHOT.names() and scheduler != "full":  # it retrains one architecture for the budget
            assert f"scheduler {scheduler!r}" in message and "scheduler: full" in message, message
        else:
            assert any(repr(label) in message for label in space.schema.labels), message
        assert SQLiteStore(tmp_path).count() == 0  # refused before any work
        return
    trials = study.trials
    assert trials and all(t.state.value != "failed" for t in trials), [t.error for t in trials]
    keys = [repr(sorted(t.arch.items())) for t in trials]
    assert len(set(keys)) == len(keys)  # no architecture evaluated twice
    assert len(trials) <= min(TRIALS, space.schema.size())
    for t in trials:
        space.validate(t.arch)  # exactly what the space builds
        assert t.metrics["val_loss"] == pytest.approx(lookup(t.arch) + 0.01 / t.budget_used)
    assert study.best is not None
