"""The executor contract, run over every registered executor: what the study relies on, and
the same study giving the same trials wherever it runs."""
from __future__ import annotations

import functools

import pytest

import nasforge
from nasforge.execution import EXECUTORS, ExecutorOptions
from nasforge.execution.worker import WorkerContext
from nasforge.space.space import Space
from nasforge.spaces.mlp import mlp
from nasforge.types import TrialState

NAMES = [pytest.param(name, marks=pytest.mark.xdist_group("ray")) if name == "ray" else name
         for name in EXECUTORS.names()]
# Executors whose workers train each job alone (as ``run_job``) or in the population trainer's
# groups: within each family the arithmetic is the same; across them it differs in the last bits.
ALONE = {"serial", "pool", "simulated"}


@pytest.fixture
def cluster_for():
    """A local Ray cluster for this test alone where the executor is Ray (nothing elsewhere): it
    is shut down before the next test, since forking a process that runs Ray (the pool's
    workers) can kill it."""
    started = []

    def use(name: str) -> None:
        if name == "ray":
            import ray
            ray.init(address="local", num_cpus=2, logging_level="ERROR", log_to_driver=False)
            started.append(ray)
    yield use
    for ray in started:
        ray.shutdown()


@functools.lru_cache(maxsize=None)  # the references, once per process
def _study(name: str):
    return nasforge.search("mlp", "iris", "random", "hyperband", budget=9, trials=30, seed=3, workers=2,
                           executor=name, store="memory", trainer={"batch_size": 32})


def _record(study) -> list[tuple]:
    return [(t.id, t.arch, t.state, t.budget_used, t.error is None) for t in study.trials]


@pytest.mark.parametrize("name", NAMES)
def test_it_declares_what_the_study_uses(name, cluster_for, tmp_path):
    cluster_for(name)
    context = WorkerContext(Space(mlp, {"n_in": 4, "n_out": 3}), None, lambda model, data, budget, state: {"m": 1.0},
                            str(tmp_path))
    executor = EXECUTORS.get(name)(context, ExecutorOptions(workers=2))
    try:
        assert executor.capacity >= executor.parallelism >= 1 and isinstance(executor.isolated, bool)
        assert executor.clock is None or executor.clock == 0.0
        assert executor.running() == 0 and executor.poll(timeout=0.01) == []
        executor.discard("checkpoints/none.pt")  # unknown checkpoints are no error
        executor.persist("checkpoints/none.pt")
    finally:
        executor.shutdown(cancel=True)


@pytest.mark.parametrize("name", NAMES)
def test_the_same_study_gives_the_same_trials(name, cluster_for, split_every_poll):
    """Architectures, budgets and states exactly; losses to the last bit within a family of
    executors, to the population trainer's tolerance across them (4 epochs at most: longer
    training of deep nets can grow last-bit differences into different decisions)."""
    cluster_for(name)
    reference = _study("serial" if name in ALONE else "batched")
    study = _study.__wrapped__(name)
    assert _record(study) == _record(reference)
    assert all(t.state.finished for t in study.trials) and len(study.trials) == 17  # hyperband's brackets, all run
    assert [t.loss for t in study.trials] == [t.loss for t in reference.trials]
    alone = _study("serial")
    assert _record(alone) == _record(reference)
    assert [t.loss for t in study.trials] == pytest.approx([t.loss for t in alone.trials], rel=2e-3)


def failing_evaluator(model, data, budget, state, arch):
    """Fails the trials of wide first layers, as a user's evaluator may."""
    if arch["width_0"] > 50:
        raise ValueError(f"too wide: {arch['width_0']}")
    return {"val_loss": 1.0 / arch["width_0"]}


@pytest.mark.parametrize("name", NAMES)
def test_a_failing_trial_is_an_event_not_an_exception(name, cluster_for):
    cluster_for(name)
    study = nasforge.search("mlp", "iris", "random", "full", budget=1, trials=8, seed=0, workers=2, executor=name,
                            evaluate=failing_evaluator, store="memory")
    failed = [t for t in study.trials if t.state is TrialState.FAILED]
    assert len(study.trials) == 8 and failed
    assert all("too wide" in t.error and t.arch["width_0"] > 50 for t in failed)
    assert all(t.arch["width_0"] <= 50 for t in study.trials if t.state is TrialState.COMPLETE)
