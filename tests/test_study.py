from __future__ import annotations

import math

import pytest
import torch

import nasforge
from nasforge.api import open_study, Objects
from nasforge.errors import StoreError
from nasforge.train.trainer import SupervisedTrainer
from nasforge.types import TrialState

FAST = dict(budget=5, trials=6, seed=0)


def test_search_on_iris_returns_trained_best_model(tmp_path):
    study = nasforge.search("mlp", "iris", "random", out=tmp_path, **FAST)
    trials = study.trials
    assert len(trials) == 6 and all(t.state is TrialState.COMPLETE for t in trials)
    assert [t.id for t in trials] == list(range(6))
    best = study.best
    assert best.loss == min(t.loss for t in trials)
    assert best.metrics["val_loss"] == best.loss and 0.0 <= best.metrics["val_accuracy"] <= 1.0
    assert len(study.store.curve(best.id)) == 5  # one point per epoch
    model = study.best_model()
    data = nasforge.load_dataset("iris")
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(data.x_val), data.y_val).item()
    assert loss == pytest.approx(best.loss, rel=1e-5)  # the checkpoint is the trained model


def test_same_seed_same_study_different_seed_differs(tmp_path):
    a = nasforge.search(out=tmp_path / "a", **FAST)
    b = nasforge.search(out=tmp_path / "b", **FAST)
    c = nasforge.search(out=tmp_path / "c", **{**FAST, "seed": 1})
    assert [(t.arch, t.loss) for t in a.trials] == [(t.arch, t.loss) for t in b.trials]
    assert [t.arch for t in a.trials] != [t.arch for t in c.trials]


def nan_for_deep(model, data, budget, state):
    depth = sum(isinstance(m, torch.nn.Linear) for m in model.modules()) - 1
    if depth >= 4:
        return {"val_loss": math.nan}
    if depth == 3:
        raise RuntimeError("boom in the evaluator")
    return {"val_loss": float(depth)}


def test_failed_trials_are_recorded_and_the_search_goes_on(tmp_path):
    study = nasforge.search(data="iris", evaluate=nan_for_deep, out=tmp_path, budget=1, trials=12, seed=0)
    states = {t.id: t for t in study.trials}
    assert len(states) == 12
    failed = [t for t in states.values() if t.state is TrialState.FAILED]
    ok = [t for t in states.values() if t.state is TrialState.COMPLETE]
    assert failed and ok
    for t in failed:
        if t.arch["depth"] == 3:
            assert "RuntimeError: boom in the evaluator" in t.error
        else:
            assert "val_loss" in t.error and t.arch["depth"] >= 4
    assert all(t.arch["depth"] <= 2 for t in ok)
    assert study.best.arch["depth"] == 1


class CrashAfter:
    """An evaluator that kills the driver (KeyboardInterrupt) on its n-th call, mid-trial."""

    def __init__(self, n: int):
        self.n, self.calls, self.trainer = n, 0, SupervisedTrainer()

    def __call__(self, model, data, budget, state):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.trainer(model, data, budget, state)


def test_resume_after_crash_equals_uninterrupted_run(tmp_path):
    reference = nasforge.search(out=tmp_path / "ref", budget=3, trials=8, seed=4, executor="serial")
    with pytest.raises(KeyboardInterrupt):
        nasforge.search(data="iris", out=tmp_path / "cut", evaluate=CrashAfter(5), budget=3, trials=8, seed=4, executor="serial")
    cut = open_study(tmp_path / "cut", Objects(evaluate=SupervisedTrainer()))
    before = cut.store.trials()
    assert [t.state for t in before].count(TrialState.COMPLETE) == 4
    assert before[4].state is TrialState.RUNNING  # the crash hit trial 4 mid-run
    resumed = nasforge.resume(tmp_path / "cut", evaluate=SupervisedTrainer())
    after = resumed.trials
    assert len(after) == 8 and all(t.state is TrialState.COMPLETE for t in after)
    assert [(t.arch, t.loss) for t in after] == [(t.arch, t.loss) for t in reference.trials]
    assert [t.metrics for t in after[:4]] == [t.metrics for t in before[:4]]  # nothing recorded is redone


def test_a_polls_results_are_recorded_together_or_not_at_all(tmp_path, monkeypatch):
    """The batched executor returns all 8 trials from one poll; a crash while the third is being
    recorded leaves all eight to run again, and the resumed study equals an uninterrupted one."""
    from nasforge.schedulers.full import FullBudget
    reference = nasforge.search(out=tmp_path / "ref", budget=2, trials=8, seed=5)
    original, calls = FullBudget.on_result, []

    def crash_on_third(self, *args):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(FullBudget, "on_result", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        nasforge.search(out=tmp_path / "cut", budget=2, trials=8, seed=5)
    monkeypatch.setattr(FullBudget, "on_result", original)
    before = open_study(tmp_path / "cut").store.trials()
    assert len(before) == 8 and all(t.state is TrialState.RUNNING and t.loss is None for t in before)
    resumed = nasforge.resume(tmp_path / "cut")
    assert [(t.arch, t.loss, t.state) for t in resumed.trials] == [(t.arch, t.loss, t.state) for t in reference.trials]


def test_resume_without_objects_of_a_python_study_says_how(tmp_path):
    nasforge.search(data="iris", out=tmp_path, evaluate=CrashAfter(100), budget=1, trials=1)
    with pytest.raises(Exception, match="made from Python objects"):
        open_study(tmp_path)


def test_two_workers_give_the_same_results_as_one(tmp_path, split_every_poll):
    serial = nasforge.search(out=tmp_path / "s", budget=3, trials=6, seed=2)
    pooled = nasforge.search(out=tmp_path / "p", budget=3, trials=6, seed=2, workers=2)
    assert sorted((t.id, str(t.arch)) for t in pooled.trials) == sorted((t.id, str(t.arch)) for t in serial.trials)
    for s, p in zip(serial.trials, pooled.trials):
        assert p.loss == pytest.approx(s.loss, rel=1e-4)


def test_a_study_directory_is_locked_while_running_and_the_loser_writes_nothing(tmp_path):
    """A search that finds the directory's lock held (another search running there) exits
    without writing its config, seed or objective into the other's study."""
    import subprocess
    import sys
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, pathlib; from nasforge.store.lock import directory_lock\n"
         f"with directory_lock(pathlib.Path({str(tmp_path)!r})):\n    print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match="another process"):
            nasforge.search(out=tmp_path, budget=1, trials=1, seed=7)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]
    finally:
        holder.kill()
        holder.wait()
    study = nasforge.search(out=tmp_path, budget=1, trials=1, seed=8)  # the lock dies with its process
    assert study.store.get_meta("seed") == 8


def test_user_space_and_regression(tmp_path):
    from torch import nn

    def tiny(arch, n_in, n_out):
        return nn.Sequential(nn.Linear(n_in, arch.int("h", 2, 8, step=2)), nn.ReLU(), nn.Linear(arch.int("h", 2, 8, step=2), n_out))

    study = nasforge.search(tiny, "diabetes", "grid", budget=2, trials=10, out=tmp_path)
    assert sorted(t.arch["h"] for t in study.trials) == [2, 4, 6, 8]  # the grid ran out after 4
    assert "val_rmse" in study.best.metrics
