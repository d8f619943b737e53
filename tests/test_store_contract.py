"""The store contract, run over every registered store (as Optuna's storage test suites are):
ids, the trial lifecycle, JSON round trips, transactions, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nasforge.errors import StoreError
from nasforge.store import STORES
from nasforge.types import TrialState


@pytest.fixture(params=STORES.names())
def store(request, tmp_path):
    s = STORES.get(request.param)(tmp_path / "study")
    yield s
    s.close()


# --- ids and the lifecycle --------------------------------------------------------------------
def test_ids_ascend_from_zero(store):
    ids = [store.create_trial({"depth": i}, 1, seed=10 + i) for i in range(5)]
    assert ids == [0, 1, 2, 3, 4]
    assert store.count() == 5
    assert [t.id for t in store.trials()] == ids
    assert [t.seed for t in store.trials()] == [10, 11, 12, 13, 14]


def test_new_trial_is_queued(store):
    tid = store.create_trial({"a": 1}, 3, seed=7, parent=None)
    child = store.create_trial({"a": 2}, 3, seed=8, parent=tid)
    trial = store.trial(tid)
    assert trial.state is TrialState.QUEUED and trial.budget == 3.0 and trial.budget_used == 0.0
    assert trial.metrics == {} and trial.loss is None and trial.rungs == [] and trial.error is None
    assert trial.created_at is not None and trial.started_at is None and trial.finished_at is None
    assert store.trial(child).parent == tid


def test_lifecycle_with_rungs_per_budget(store):
    tid = store.create_trial({"a": 1}, 1, seed=0)
    store.start(tid, 1)
    running = store.trial(tid)
    assert running.state is TrialState.RUNNING and running.started_at is not None
    store.finish(tid, TrialState.PAUSED, metrics={"val_loss": 0.9}, loss=0.9, budget=1, duration=1.5,
                 checkpoint="ckpt/0.pt")
    paused = store.trial(tid)
    assert paused.state is TrialState.PAUSED and paused.finished_at is None
    assert paused.budget_used == 1.0 and paused.loss == 0.9 and paused.checkpoint == "ckpt/0.pt"
    store.start(tid, 3)
    assert store.trial(tid).started_at == running.started_at  # the first start is kept
    store.finish(tid, TrialState.COMPLETE, metrics={"val_loss": 0.5}, loss=0.5, budget=3, duration=2.0)
    done = store.trial(tid)
    assert done.state is TrialState.COMPLETE and done.finished_at is not None
    assert done.budget == 3.0 and done.budget_used == 3.0 and done.metrics == {"val_loss": 0.5} and done.loss == 0.5
    assert done.duration == pytest.approx(3.5)
    assert done.checkpoint == "ckpt/0.pt"  # a finish without a checkpoint keeps the last one
    assert [{k: r[k] for k in ("budget", "loss", "metrics")} for r in done.rungs] == [
        {"budget": 1.0, "loss": 0.9, "metrics": {"val_loss": 0.9}}, {"budget": 3.0, "loss": 0.5, "metrics": {"val_loss": 0.5}}]
    assert done.rungs[0]["finished_at"] <= done.rungs[1]["finished_at"]
    assert [t.rungs for t in store.trials()] == [done.rungs]


def test_rungs_belong_to_their_trial(store):
    a, b = store.create_trial({"x": 0}, 1, seed=0), store.create_trial({"x": 1}, 1, seed=1)
    store.finish(a, TrialState.PAUSED, metrics={"m": 1.0}, loss=1.0, budget=1)
    store.finish(b, TrialState.COMPLETE, metrics={"m": 2.0}, loss=2.0, budget=9)
    assert [r["budget"] for r in store.trial(a).rungs] == [1.0]
    assert [r["budget"] for r in store.trial(b).rungs] == [9.0]


def test_finish_without_budget_records_metrics_at_the_started_budget(store):
    tid = store.create_trial({"a": 1}, 1, seed=0)
    store.start(tid, 4)
    store.finish(tid, TrialState.COMPLETE, metrics={"val_loss": 0.25}, loss=0.25)
    trial = store.trial(tid)
    assert trial.metrics == {"val_loss": 0.25} and trial.loss == 0.25 and trial.budget_used == 4.0
    assert [r["budget"] for r in trial.rungs] == [4.0]


def test_failed_trial_keeps_its_error(store):
    tid = store.create_trial({"a": 1}, 1, seed=0)
    store.start(tid, 1)
    store.finish(tid, TrialState.FAILED, error="FloatingPointError: nan", duration=0.1)
    trial = store.trial(tid)
    assert trial.state is TrialState.FAILED and trial.error == "FloatingPointError: nan"
    assert trial.metrics == {} and trial.rungs == [] and trial.finished_at is not None


def test_set_state_and_filters(store):
    ids = [store.create_trial({"i": i}, 1, seed=i) for i in range(4)]
    store.start(ids[1], 1)
    store.set_state(ids[2], TrialState.PAUSED)
    store.set_state(ids[3], TrialState.PRUNED)
    assert store.trial(ids[3]).finished_at is not None and store.trial(ids[2]).finished_at is None
    assert [t.id for t in store.trials([TrialState.QUEUED])] == [0]
    assert [t.id for t in store.trials([TrialState.RUNNING, TrialState.PRUNED])] == [1, 3]
    assert [t.id for t in store.trials(["paused"])] == [2]
    assert store.trials([]) == []


def test_requeue_running(store):
    ids = [store.create_trial({"i": i}, 1, seed=i) for i in range(4)]
    store.start(ids[0], 1)
    store.start(ids[2], 1)
    store.finish(ids[3], TrialState.COMPLETE, metrics={"m": 1.0}, loss=1.0, budget=1)
    assert store.requeue_running() == [0, 2]
    states = [t.state for t in store.trials()]
    assert states == [TrialState.QUEUED, TrialState.QUEUED, TrialState.QUEUED, TrialState.COMPLETE]
    assert store.requeue_running() == []


@pytest.mark.parametrize("call", [
    lambda s: s.trial(7),
    lambda s: s.start(7, 1),
    lambda s: s.finish(7, TrialState.COMPLETE, metrics={"m": 1.0}, loss=1.0, budget=1),
    lambda s: s.set_state(7, TrialState.PRUNED),
    lambda s: s.append_curve(7, 1, {"m": 1.0}),
    lambda s: s.append_curves(7, [(1, {"m": 1.0}), (2, {"m": 0.5})]),
], ids=["trial", "start", "finish", "set_state", "append_curve", "append_curves"])
def test_unknown_trial_is_a_store_error(store, call):
    store.create_trial({"a": 1}, 1, seed=0)
    with pytest.raises(StoreError, match="No trial 7"):
        call(store)
    assert store.curve(7) == [] and store.trial(0).rungs == []  # and nothing orphaned was written


# --- JSON -------------------------------------------------------------------------------------
def test_arch_and_metrics_round_trip_as_json(store):
    arch = {"depth": 2, "width_0": 16, "lr": 1e-3, "activation": "gelu", "inputs": ["in", "n1"],
            "nested": {"k": [1, 2.5, None, True]}}
    tid = store.create_trial(arch, 2.5, seed=1)
    metrics = {"val_loss": 0.125, "val_accuracy": 0.875, "epoch": 2.0}
    store.finish(tid, TrialState.COMPLETE, metrics=metrics, loss=0.125, budget=2.5)
    trial = store.trial(tid)
    assert trial.arch == arch and trial.metrics == metrics and trial.budget_used == 2.5
    assert json.loads(json.dumps(trial.to_json()))["arch"] == arch


def test_tuples_are_stored_as_lists(store):
    tid = store.create_trial({"inputs": ("a", "b")}, 1, seed=0)
    assert store.trial(tid).arch == {"inputs": ["a", "b"]}


def test_non_finite_metrics_are_stored_as_null(store):
    tid = store.create_trial({"a": 1}, 1, seed=0)
    store.append_curve(tid, 1, {"val_loss": float("nan"), "train_loss": float("inf")})
    store.finish(tid, TrialState.COMPLETE, metrics={"val_loss": float("nan"), "ok": 1.0}, loss=float("nan"), budget=1)
    trial = store.trial(tid)
    assert trial.metrics == {"val_loss": None, "ok": 1.0} and trial.loss is None
    assert trial.rungs[0]["metrics"] == {"val_loss": None, "ok": 1.0} and trial.rungs[0]["loss"] is None
    assert store.curve(tid) == [{"val_loss": None, "train_loss": None}]


def test_numpy_scalars_are_stored_as_plain_numbers(store):
    tid = store.create_trial({"depth": np.int64(3), "lr": np.float32(0.5)}, np.float64(2), seed=np.int64(4),
                             parent=None)
    child = store.create_trial({"depth": 1}, 1, seed=0, parent=np.int64(tid))
    store.finish(tid, TrialState.COMPLETE, metrics={"val_loss": np.float32(0.25)}, loss=np.float32(0.25), budget=2)
    trial = store.trial(tid)
    assert trial.arch == {"depth": 3, "lr": 0.5} and type(trial.arch["depth"]) is int
    assert trial.metrics == {"val_loss": 0.25} and trial.loss == 0.25 and trial.seed == 4
    assert store.trial(child).parent == tid


def test_curve_is_ordered_by_step_and_a_step_is_replaced(store):
    tid = store.create_trial({"a": 1}, 3, seed=0)
    for step in (3, 1, 2):
        store.append_curve(tid, step, {"val_loss": float(step)})
    store.append_curve(tid, 2, {"val_loss": 20.0})
    assert store.curve(tid) == [{"val_loss": 1.0}, {"val_loss": 20.0}, {"val_loss": 3.0}]
    store.append_curves(tid, [(4, {"val_loss": 4.0}), (1, {"val_loss": 10.0})])
    store.append_curves(tid, [])
    assert store.curve(tid) == [{"val_loss": 10.0}, {"val_loss": 20.0}, {"val_loss": 3.0}, {"val_loss": 4.0}]


def test_meta(store):
    assert store.get_meta("missing") is None and store.get_meta("missing", 5) == 5
    value = {"strategy": {"rng": [1, 2, 3], "seen": ["a"]}, "best": 0.5}
    store.set_meta("state", value)
    assert store.get_meta("state") == value
    store.set_meta("state", 2)
    assert store.get_meta("state") == 2


# --- transactions -----------------------------------------------------------------------------
def test_atomic_rolls_back_everything_on_exception(store):
    tid = store.create_trial({"a": 1}, 1, seed=0)
    store.start(tid, 1)
    store.set_meta("k", "before")
    with pytest.raises(RuntimeError, match="boom"):
        with store.atomic():
            store.append_curve(tid, 1, {"val_loss": 0.5})
            store.finish(tid, TrialState.COMPLETE, metrics={"val_loss": 0.5}, loss=0.5, budget=1)
            store.create_trial({"a": 2}, 1, seed=1)
            store.set_meta("k", "after")
            raise RuntimeError("boom")
    trial = store.trial(tid)
    assert trial.state is TrialState.RUNNING and trial.metrics == {} and trial.rungs == []
    assert store.curve(tid) == [] and store.count() == 1 and store.get_meta("k") == "before"
    # the store is usable afterwards, and the next id is the same one the rolled-back trial had
    assert store.create_trial({"a": 3}, 1, seed=2) == 1


def test_nested_atomic_rolls_back_the_outer_group(store):
    with pytest.raises(ValueError):
        with store.atomic():
            store.create_trial({"a": 1}, 1, seed=0)
            with store.atomic():
                store.set_meta("inner", True)
                raise ValueError("inner")
    assert store.count() == 0 and store.get_meta("inner") is None
    with store.atomic():
        with store.atomic():
            store.set_meta("inner", True)
        store.create_trial({"a": 1}, 1, seed=0)
    assert store.count() == 1 and store.get_meta("inner") is True


def test_what_comes_back_is_a_copy(store):
    arch = {"inputs": ["a"]}
    tid = store.create_trial(arch, 1, seed=0)
    arch["inputs"].append("b")
    store.trial(tid).arch["inputs"].append("c")
    store.set_meta("state", {"seen": [1]})
    store.get_meta("state")["seen"].append(2)
    assert store.trial(tid).arch == {"inputs": ["a"]} and store.get_meta("state") == {"seen": [1]}


def test_append_curves_without_replace_keeps_the_recorded_points(store):
    tid = store.create_trial({"a": 1}, 2, seed=0)
    store.append_curves(tid, [(1, {"val_loss": 1.0})])
    store.append_curves(tid, [(1, {"val_loss": 9.0}), (2, {"val_loss": 2.0})], replace=False)
    assert store.curve(tid) == [{"val_loss": 1.0}, {"val_loss": 2.0}]


def test_raw_meta_is_read_back_as_json(store):
    store.set_meta_raw("state", '{"a":[1,2]}')
    assert store.get_meta("state") == {"a": [1, 2]}


def test_a_study_kept_in_memory_gives_its_results_and_says_so_afterwards(tmp_path):
    import nasforge
    from nasforge.api import stored_config

    study = nasforge.search("mlp", "iris", trials=3, budget=1, store="memory", out=tmp_path / "s")
    assert len(study.trials) == 3 and study.best is not None and study.store.location == "memory"
    assert not (tmp_path / "s" / "study.db").exists()
    with pytest.raises(StoreError, match="store: memory, which keeps nothing after the search ended"):
        stored_config(tmp_path / "s")
