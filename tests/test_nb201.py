from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import torch

from nasforge.errors import DataError, SpaceError
from nasforge.execution.base import Job
from nasforge.execution.simulated import SimulatedExecutor
from nasforge.execution.worker import WorkerContext
from nasforge.space.space import Space
from nasforge.spaces import SPACES
from nasforge.spaces.nb201 import LABELS, OPS, NB201Stub, from_arch_str, nb201, to_arch_str
from nasforge.train.tabular import NB201Lookup, find_root, nb201_cifar10, regret_after, replay_study
from nasforge.types import TrialState

BEST_200 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"  # index 6111
BEST_12_VAL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"  # 13714


@pytest.fixture(scope="module")
def lookup() -> NB201Lookup:
    try:
        return NB201Lookup()
    except DataError as exc:
        pytest.skip(f"NAS-Bench-201 tables absent (they belong in shared/data/nasbench201): {exc}")


# --- the space -------------------------------------------------------------------------------
def test_arch_string_round_trip_for_every_cell():
    for ops in itertools.product(OPS, repeat=6):
        arch = dict(zip(LABELS, ops))
        assert from_arch_str(to_arch_str(arch)) == arch


def test_labels_follow_the_official_string_order():
    arch = from_arch_str(BEST_200)
    assert list(arch) == ["edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2"]
    assert arch["edge_3_0"] == "skip_connect" and arch["edge_3_2"] == "nor_conv_1x1"


@pytest.mark.parametrize("bad", ["", "|none~0|", "|none~0|+|none~0|none~1|+|none~0|none~1|conv~2|",
                                 "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "none~0+|none~0|none~1|+|a~0|b~1|c~2|"])
def test_malformed_strings_are_rejected_with_the_allowed_form(bad):
    with pytest.raises(SpaceError, match="NB201"):
        from_arch_str(bad)


def test_space_is_registered_and_records_six_categorical_decisions():
    space = Space(SPACES.get("nb201"), {}, args={"materialize": False})
    assert space.schema.labels == list(LABELS)
    assert space.schema.size() == 5 ** 6
    model = space.build(from_arch_str(BEST_200))
    assert isinstance(model, NB201Stub) and model.arch_str == BEST_200
    assert not list(model.parameters())


@pytest.mark.parametrize("shape, n_out", [((3, 32, 32), 10), ((1, 28, 28), 7)])
def test_materialized_network_runs_forward(shape, n_out):
    space = Space(nb201, {"input_shape": shape, "n_out": n_out})
    torch.manual_seed(0)
    model = space.build(from_arch_str(BEST_200))
    assert model.arch_str == BEST_200
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, n_out) and torch.isfinite(out).all()


def test_a_cell_without_a_path_to_its_output_gives_constant_logits():
    model = nb201(  # every edge into node 3 is "none"
        _Fixed({**dict.fromkeys(LABELS, "nor_conv_3x3"), "edge_3_0": "none", "edge_3_1": "none", "edge_3_2": "none"}), N=1)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, 32, 32))
    assert torch.allclose(out, out[:1].expand_as(out))


class _Fixed:
    def __init__(self, values):
        self.values = values

    def choice(self, label, candidates):
        return candidates[self.values[label]]()


# --- the lookup ------------------------------------------------------------------------------
def test_lookup_reads_the_tables_known_optima(lookup):
    assert lookup.root == find_root() and (lookup.root / "nats_bench.csv").is_file()
    final = lookup.query(BEST_200, 200)
    assert final["index"] == 6111 and final["accuracy"] == pytest.approx(94.3733, abs=1e-4)
    assert final["regret"] == 0.0 and final["val_loss"] == pytest.approx(100 - 94.3733, abs=1e-4)
    cheap = lookup.query(BEST_12_VAL, 12)
    assert cheap["index"] == 13714 and cheap["accuracy"] == pytest.approx(84.892) and cheap["fidelity"] == 12
    assert cheap["accuracy"] == lookup.tables.columns["cifar10-val"].max()
    assert lookup.optimum == pytest.approx(94.3733, abs=1e-4)
    assert len(lookup.tables.index) == 5 ** 6  # every cell, each keyed by the string our labels produce
    assert all(to_arch_str(from_arch_str(s)) == s for s in lookup.tables.index)


def test_budget_threshold_and_simulated_time(lookup):
    arch = from_arch_str(BEST_200)
    assert lookup.query(arch, 199.9)["fidelity"] == 12 and lookup.query(arch, 200)["fidelity"] == 200
    assert lookup.query(arch, 20)["sim_seconds"] == pytest.approx(2 * lookup.query(arch, 10)["sim_seconds"])
    assert lookup.query(arch, 20, trained=10)["sim_seconds"] == pytest.approx(lookup.query(arch, 10)["sim_seconds"])
    skip_only = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    assert lookup.query(skip_only, 10)["sim_seconds"] < lookup.query(arch, 10)["sim_seconds"]
    with pytest.raises(ValueError, match="budget"):
        lookup.query(arch, 0)


def test_lookup_is_an_evaluator_of_the_stub_model(lookup):
    model = Space(nb201, {}, args={"materialize": False}).build(from_arch_str(BEST_12_VAL))
    first = lookup(model, None, 12, None)
    assert first.metrics["accuracy"] == pytest.approx(84.892) and first.state == {"budget": 12.0}
    more = lookup(model, None, 200, first.state)  # continued: only the extra epochs cost time
    assert more.metrics["sim_seconds"] == pytest.approx(lookup.query(BEST_12_VAL, 188)["sim_seconds"])
    with pytest.raises(TypeError, match="arch_str"):
        lookup(torch.nn.Linear(1, 1), None, 12, None)
    assert nb201_cifar10(model, None, 12, None).metrics == first.metrics  # the config-friendly function


def test_missing_tables_name_where_they_live(tmp_path):
    with pytest.raises(DataError, match="shared/data/nasbench201") as info:
        NB201Lookup(root=tmp_path)
    assert str(tmp_path) in str(info.value)


# --- the simulated executor ------------------------------------------------------------------
def _echo(model, data, budget, state):
    return {"val_loss": float(budget)}


def _executor(workers: int) -> SimulatedExecutor:
    context = WorkerContext(Space(nb201, {}, args={"materialize": False}), None, _echo, None)
    return SimulatedExecutor(context, workers=workers)  # default duration: the job's budget


def _job(trial_id: int, budget: float) -> Job:
    return Job(trial_id, from_arch_str(BEST_200), budget, seed=trial_id)


def test_simulated_executor_releases_events_in_finish_time_order():
    executor = _executor(workers=2)
    executor.submit(_job(0, 10.0))
    executor.submit(_job(1, 3.0))  # submitted second, finishes first
    assert executor.running() == 2
    first = executor.poll()
    assert [e.job.trial_id for e in first] == [1] and executor.clock == 3.0 and first[0].duration == 3.0
    executor.submit(_job(2, 4.0))  # starts at 3 on the freed worker, ends at 7: before job 0
    assert [e.job.trial_id for e in executor.poll()] == [2] and executor.clock == 7.0
    assert [e.job.trial_id for e in executor.poll()] == [0] and executor.clock == 10.0
    assert executor.poll() == [] and executor.running() == 0


def test_simulated_executor_queues_jobs_beyond_its_workers():
    executor = _executor(workers=1)
    executor.submit(_job(0, 5.0))
    executor.submit(_job(1, 1.0))  # the only worker is busy until 5
    assert [e.job.trial_id for e in executor.poll()] == [0] and executor.clock == 5.0
    assert [e.job.trial_id for e in executor.poll()] == [1] and executor.clock == 6.0


def test_a_bad_duration_fails_the_job_not_the_study():
    context = WorkerContext(Space(nb201, {}, args={"materialize": False}), None, _echo, None)
    executor = SimulatedExecutor(context, workers=1, duration=lambda job, event: -1.0)
    executor.submit(_job(0, 5.0))
    (event,) = executor.poll()
    assert event.error and "duration" in event.error


# --- a replay study --------------------------------------------------------------------------
def test_short_replay_study_records_regret(lookup, tmp_path):
    start = time.perf_counter()
    study = replay_study("random", queries=30, seed=3, workers=2, directory=tmp_path / "a", budget=12)
    assert time.perf_counter() - start < 10
    trials = study.trials
    assert len(trials) == 30 and all(t.state is TrialState.COMPLETE for t in trials)
    assert all(t.metrics["regret"] >= 0 and t.metrics["fidelity"] == 12 for t in trials)
    best = study.best
    assert best.loss == min(t.loss for t in trials) and regret_after(trials) == best.metrics["regret"]
    assert best.metrics["val_loss"] == pytest.approx(100 - best.metrics["accuracy"])
    again = replay_study("random", queries=30, seed=3, workers=2, directory=tmp_path / "b", budget=12)
    assert [t.arch for t in again.trials] == [t.arch for t in trials]
    finish_order = [t.id for t in sorted(trials, key=lambda t: (t.finished_at, t.id))]
    assert finish_order != list(range(30))  # two simulated workers: cheap cells overtake costly ones
    assert np.isclose(sum(t.duration for t in trials), sum(t.metrics["sim_seconds"] for t in trials))
