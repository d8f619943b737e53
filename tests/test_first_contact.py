"""What a new user meets first: an evaluator that sees the architecture, mistakes that fail before
work is spent, resuming from another directory, and no architecture evaluated twice."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import nasforge
from awkward_spaces import lookup, six_archs
from nasforge.errors import ConfigError
from nasforge.store.sqlite import SQLiteStore
from nasforge.types import TrialState


def test_an_evaluator_gets_the_trials_arch_id_and_seed_by_naming_them(tmp_path):
    seen = []

    def evaluate(model, data, budget, state, arch, trial_id, seed):
        seen.append((trial_id, arch, seed))
        return {"val_loss": lookup(arch)}

    study = nasforge.search(six_archs, "none", evaluate=evaluate, budget=1, trials=4, seed=3, out=tmp_path)
    assert sorted(seen, key=lambda s: s[0]) == [(t.id, t.arch, t.seed) for t in study.trials]
    assert [t.loss for t in study.trials] == [lookup(t.arch) for t in study.trials]


def test_four_argument_evaluators_work_unchanged(tmp_path):
    study = nasforge.search(six_archs, "iris", evaluate=lambda m, d, b, s: {"val_loss": float(len(d.x_val))}, budget=1,
                            trials=2, out=tmp_path)
    assert all(t.loss == 50.0 for t in study.trials)


def test_an_objective_the_evaluator_does_not_return_stops_the_study_at_the_first_result(tmp_path):
    with pytest.raises(ConfigError, match=r"no 'valid_pref' metric.*it returned: val_accuracy, val_loss"):
        nasforge.search(six_archs, "none", evaluate=lambda m, d, b, s: {"val_loss": 1.0, "val_accuracy": 0.5},
                        objective="valid_pref", mode="min", budget=1, trials=6, out=tmp_path, executor="serial")
    trials = SQLiteStore(tmp_path).trials()
    assert len(trials) == 1 and trials[0].state is TrialState.FAILED and "valid_pref" in trials[0].error


def test_a_misspelt_objective_of_the_built_in_trainer_fails_before_any_trial(tmp_path):
    with pytest.raises(ConfigError, match=r"'valid_pref' is not one the built-in trainer reports.*val_accuracy"):
        nasforge.search("mlp", "iris", objective="valid_pref", mode="min", budget=1, trials=2, out=tmp_path)
    assert not (tmp_path / "study.db").exists() or SQLiteStore(tmp_path).count() == 0


def test_a_constraint_on_a_metric_not_returned_names_that_metric(tmp_path):
    with pytest.raises(ConfigError, match=r"no 'latency' metric, which the constraint needs"):
        nasforge.search(six_archs, "none", evaluate=lambda m, d, b, s: {"val_accuracy": 0.5}, objective="val_accuracy",
                        constraint={"metric": "latency", "target": 1.0}, budget=1, trials=2, out=tmp_path)


def test_a_metric_of_unknown_direction_needs_a_mode(tmp_path):
    with pytest.raises(ConfigError, match=r"'f1'.*set objective.mode to 'min' or 'max'"):
        nasforge.search(six_archs, "none", evaluate=lambda m, d, b, s: {"f1": 0.5}, objective="f1", out=tmp_path)
    study = nasforge.search(six_archs, "none", evaluate=lambda m, d, b, s: {"f1": lookup({"x": len(list(m.parameters()))})},
                            objective="f1", mode="max", budget=1, trials=3, out=tmp_path / "ok")
    assert study.best.metrics["f1"] == max(t.metrics["f1"] for t in study.trials)


def test_a_custom_evaluator_without_data_says_so(tmp_path):
    with pytest.raises(ConfigError, match=r"custom evaluator is set but no dataset.*dataset: none"):
        nasforge.search(six_archs, evaluate=lambda m, d, b, s: {"val_loss": 1.0}, out=tmp_path)


def test_random_search_draws_a_small_space_without_replacement(tmp_path):
    study = nasforge.search(six_archs, "none", "random", evaluate=lambda m, d, b, s, arch: {"val_loss": lookup(arch)},
                            budget=1, trials=20, out=tmp_path / "once")
    assert len(study.trials) == 6 and len({repr(sorted(t.arch.items())) for t in study.trials}) == 6
    noisy = nasforge.search(six_archs, "none", {"name": "random", "args": {"replace": True}}, repeats=True,
                            evaluate=lambda m, d, b, s, arch: {"val_loss": lookup(arch)}, budget=1, trials=20,
                            out=tmp_path / "noisy")
    assert len(noisy.trials) == 20


class InterruptAt:
    """An evaluator that stops the driver (KeyboardInterrupt) on its n-th call."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self, model, data, budget, state, arch):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return {"val_loss": lookup(arch)}


@pytest.mark.parametrize("strategy", ["evolution", "random", "reinforce"])
def test_a_resumed_study_does_not_evaluate_an_architecture_again(tmp_path, strategy):
    """The architectures evaluated before the interruption are remembered from the store."""
    kw = dict(space=six_archs, data="none", strategy={"name": strategy, **({"population_size": 2, "sample_size": 2}
              if strategy == "evolution" else {"batch_size": 2} if strategy == "reinforce" else {})},
              budget=1, trials=6, seed=1, executor="serial")
    with pytest.raises(KeyboardInterrupt):
        nasforge.search(out=tmp_path, evaluate=InterruptAt(4), **kw)
    study = nasforge.resume(tmp_path, evaluate=InterruptAt(0))
    keys = [repr(sorted(t.arch.items())) for t in study.trials]
    assert len(keys) == len(set(keys)) and len(keys) >= 4


def test_resume_and_export_find_the_users_modules_from_another_directory(tmp_path):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "myspace.py").write_text(textwrap.dedent("""
        from torch import nn

        def tiny(arch, n_in, n_out):
            width = arch.categorical("width", [4, 8])
            return nn.Sequential(nn.Flatten(), nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, n_out))
    """))
    (project / "search.yaml").write_text("space: myspace:tiny\ntrials: 2\nbudget: 1\n")
    cli = [sys.executable, "-m", "nasforge.cli"]
    out = tmp_path / "study"
    done = subprocess.run([*cli, "search", str(project / "search.yaml"), "--out", str(out), "--quiet"], cwd=elsewhere,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for command in (["resume", str(out), "--quiet"], ["export", str(out)]):
        again = subprocess.run([*cli, *command], cwd=elsewhere, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, (command, again.stderr)
