from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

import nasforge
from nasforge.errors import ConfigError
from nasforge.schedulers import SCHEDULERS
from nasforge.schedulers.hyperband import Hyperband, hyperband_brackets
from nasforge.schedulers.successive_halving import SuccessiveHalving
from nasforge.types import EvalResult, TrialState


def synthetic(model, data, budget, state):
    """A learning curve: loss falls with budget towards a floor set by the architecture's size.
    Continues from ``state``, so we can check that promoted trials resume instead of restarting."""
    n_params = sum(p.numel() for p in model.parameters())
    floor = abs(math.log(n_params) - 6.0)
    done = state["budget"] if state else 0.0
    assert budget > done, "a job must only add budget"
    loss = floor + 1.0 / budget
    return EvalResult({"val_loss": loss, "trained": budget - done, "resumed_from": done}, [], {"budget": budget})


def run(scheduler, strategy="random", **kw):
    kw = {"budget": 30, "trials": 20, "seed": 0, **kw}
    return nasforge.search("mlp", "iris", strategy, scheduler, evaluate=synthetic, **kw)


def test_hyperband_brackets_match_li_et_al():
    # R = 30, eta = 3: s_max = 3, B = 120
    brackets = hyperband_brackets(30, 3)
    assert [n for n, _, _ in brackets] == [27, 12, 6, 4]
    assert [sizes for _, _, sizes in brackets] == [[27, 9, 3, 1], [12, 4, 1], [6, 2], [4]]
    for (n, budgets, _), s in zip(brackets, (3, 2, 1, 0)):
        assert budgets == pytest.approx([30 * 3 ** (i - s) for i in range(s + 1)])
        assert n == math.ceil(4 * 3 ** s / (s + 1))
    # R = 81, eta = 3 (the paper's example): s_max = 4, n = 81, 34, 15, 8, 5
    assert [n for n, _, _ in hyperband_brackets(81, 3)] == [81, 34, 15, 8, 5]
    assert [len(b) for _, b, _ in hyperband_brackets(81, 3)] == [5, 4, 3, 2, 1]


def test_hyperband_study_runs_the_brackets_and_continues_from_checkpoints(tmp_path):
    study = run({"name": "hyperband", "args": {"eta": 3}}, out=tmp_path)
    trials = study.trials
    assert len(trials) == 27 + 12 + 6 + 4
    # each trial's rungs follow its bracket's budgets, each job trained only the extra epochs
    rung_budgets = Counter(tuple(round(r["budget"], 3) for r in t.rungs) for t in trials)
    assert rung_budgets[(1.111, 3.333, 10.0, 30.0)] == 1
    assert rung_budgets[(3.333, 10.0, 30.0)] == 1
    for t in trials:
        previous = 0.0
        for rung in t.rungs:
            assert rung["metrics"]["resumed_from"] == pytest.approx(previous)
            previous = rung["budget"]
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    assert len(complete) == 1 + 1 + 2 + 4 and all(t.budget_used == 30 for t in complete)
    assert all(t.state is TrialState.PRUNED for t in trials if t not in complete)
    total_epochs = sum(t.budget_used for t in trials)
    assert total_epochs == pytest.approx(sum(s * b for _, budgets, sizes in hyperband_brackets(30, 3)
                                             for b, s in zip(budgets, sizes)) - _promoted_overlap(), rel=1e-6)


def _promoted_overlap() -> float:
    # trials promoted train only the increment: total = sum over rungs of n_i * (r_i - r_{i-1})
    total_full = sum(s * b for _, budgets, sizes in hyperband_brackets(30, 3) for b, s in zip(budgets, sizes))
    total_incr = sum(s * (b - (budgets[i - 1] if i else 0.0)) for _, budgets, sizes in hyperband_brackets(30, 3)
                     for i, (b, s) in enumerate(zip(budgets, sizes)))
    return total_full - total_incr


def test_successive_halving_chapter_rungs(tmp_path):
    study = run({"name": "successive_halving", "args": {"n_configs": 20, "rungs": [5, 5, 5], "eta": 2}},
                budget=15, out=tmp_path)
    trials = study.trials
    assert len(trials) == 20
    by_rungs = Counter(len(t.rungs) for t in trials)
    assert by_rungs == {1: 10, 2: 5, 3: 5}
    # the promoted ones are exactly the best half of each rung
    rung0 = sorted(trials, key=lambda t: (t.rungs[0]["loss"], t.id))
    assert {t.id for t in rung0[:10]} == {t.id for t in trials if len(t.rungs) >= 2}
    assert all(t.budget_used == 15 and t.state is TrialState.COMPLETE for t in trials if len(t.rungs) == 3)
    assert study.best.budget_used == 15


def test_asha_promotes_without_waiting_and_caps_trials(tmp_path):
    study = run({"name": "asha", "args": {"eta": 3, "min_budget": 1}}, budget=27, trials=30, out=tmp_path, workers=1)
    trials = study.trials
    assert len(trials) == 30
    counts = Counter(len(t.rungs) for t in trials)
    assert counts[1] > counts[2] > counts[3] >= counts[4] >= 1
    # asynchronous: the first promotion finished before the last configuration was even created
    first_promotion = min(t.rungs[1]["finished_at"] for t in trials if len(t.rungs) > 1)
    assert first_promotion < trials[-1].created_at
    assert any(t.state is TrialState.COMPLETE and t.budget_used == 27 for t in trials)


STRATEGY_SPECS = {
    "random": "random",
    "grid": {"name": "grid", "args": {"values": {"depth": [1, 2], "width_0": [4, 32], "width_1": [8]}, "shuffle": True}},
    "bayesopt": {"name": "bayesopt", "args": {"n_initial": 3, "n_candidates": 100}},
    "evolution": {"name": "evolution", "args": {"population_size": 4, "sample_size": 2}},
    "reinforce": {"name": "reinforce", "args": {"batch_size": 3}},
    "ppo": {"name": "ppo", "args": {"batch_size": 3, "epochs": 2}},
    "pnas": {"name": "pnas", "args": {"initial": 5, "beam": 3, "patience": None,
                                      "surrogate_args": {"members": 2, "epochs": 5}}},
    "predictor": {"name": "predictor", "args": {"n_initial": 3, "n_candidates": 100, "batch_size": 2}},
}
SCHEDULER_ARGS = {"full": {}, "successive_halving": {"eta": 2}, "hyperband": {"eta": 3}, "asha": {"eta": 3}}


def test_the_contract_covers_every_registered_component():
    from nasforge.strategies import ASK_TELL
    assert set(STRATEGY_SPECS) == set(ASK_TELL.names())  # one-shot strategies under every scheduler: test_strategy_contract
    assert set(SCHEDULER_ARGS) == set(SCHEDULERS.names())


@pytest.mark.parametrize("name", SCHEDULERS.names())
@pytest.mark.parametrize("strategy", sorted(STRATEGY_SPECS))
def test_every_scheduler_with_every_strategy_and_resume(tmp_path, name, strategy):
    """Contract: each scheduler x strategy runs, and its state survives JSON and a restart."""
    from nasforge.api import open_study, Objects
    study = run({"name": name, "args": SCHEDULER_ARGS[name]}, strategy=STRATEGY_SPECS[strategy], budget=9, trials=8,
                out=tmp_path / "a")
    assert study.trials and study.best is not None
    assert all(t.state.finished for t in study.trials)
    state = study.store.get_meta("scheduler_state")
    assert json.loads(json.dumps(state)) == state
    again = open_study(tmp_path / "a", Objects(evaluate=synthetic)).run()
    assert len(again.trials) == len(study.trials)  # a finished study stays finished on resume


@pytest.mark.parametrize("strategy", sorted(STRATEGY_SPECS))
def test_every_strategy_with_hyperband_on_the_process_pool(tmp_path, strategy, split_every_poll):
    """BOHB and friends with two worker processes: promotions, pending asks and tells all work."""
    study = nasforge.search("mlp", "iris", STRATEGY_SPECS[strategy], {"name": "hyperband", "args": {"eta": 3}},
                            budget=9, seed=0, workers=2, trainer={"batch_size": 64}, out=tmp_path)
    trials = study.trials
    assert len(trials) == (9 + 5 + 3 if strategy != "grid" else len(trials))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert any(len(t.rungs) == 3 for t in trials) or strategy == "grid"
    assert study.best.budget_used == 9


def test_scheduler_argument_errors():
    with pytest.raises(ConfigError, match="Invalid eta: 1"):
        Hyperband(eta=1)
    with pytest.raises(ConfigError, match="rungs add up to 30, more than the study's budget 15"):
        SuccessiveHalving(rungs=[10, 20]).setup(None, 15, 10, np.random.default_rng())
