"""Objectives with hardware constraints (MnasNet's reward) and hardware metrics in trials."""
from __future__ import annotations

import math

import pytest

from conftest import hard_latency_study
from nasforge.config import parse_config
from nasforge.errors import ConfigError
from nasforge.types import Constraint, Objective


def test_mnas_reward_soft_and_hard():
    soft = Objective("val_accuracy", "max", Constraint("latency_ms", 2.0, "soft"))
    assert soft.loss({"val_accuracy": 0.9, "latency_ms": 2.0}) == pytest.approx(-0.9)
    assert soft.loss({"val_accuracy": 0.9, "latency_ms": 4.0}) == pytest.approx(-0.9 * 2 ** -0.07)
    assert soft.loss({"val_accuracy": 0.9, "latency_ms": 1.0}) == pytest.approx(-0.9 * 0.5 ** -0.07)  # faster: a bonus
    hard = Objective("val_accuracy", "max", Constraint("latency_ms", 2.0, "hard"))
    assert hard.loss({"val_accuracy": 0.9, "latency_ms": 1.0}) == pytest.approx(-0.9)  # no bonus under the target
    assert hard.loss({"val_accuracy": 0.9, "latency_ms": 4.0}) == pytest.approx(-0.45)
    assert soft.loss({"val_accuracy": 0.9}) is None  # the measurement is missing: the trial fails
    assert Objective().loss({"val_loss": math.nan}) is None


def test_constraint_config_is_validated():
    with pytest.raises(ConfigError, match="must be maximised"):
        parse_config({"objective": {"metric": "val_loss", "mode": "min", "constraint": {"target": 1.0}}})
    with pytest.raises(ConfigError, match="objective.constraint.target"):
        parse_config({"objective": {"metric": "val_accuracy", "mode": "max", "constraint": {"target": -1}}})
    with pytest.raises(ConfigError, match="objective.constraint.kind"):
        parse_config({"objective": {"metric": "val_accuracy", "mode": "max", "constraint": {"target": 1, "kind": "x"}}})


def test_trials_carry_hardware_metrics_measured_once_per_architecture(tmp_path, monkeypatch):
    import nasforge.hardware as hw
    calls = []
    real = hw.hardware_metrics

    def counting(model, input_shape, **kw):
        calls.append(tuple(input_shape))
        return real(model, input_shape, **{**kw, "repeats": 3, "min_seconds": 0.0})

    monkeypatch.setattr(hw, "hardware_metrics", counting)
    cfg = parse_config({"space": "mlp", "dataset": "iris", "trials": 6, "budget": 1, "seed": 0,
                        "strategy": {"name": "grid", "args": {"values": {"depth": [1], "width_0": [4, 8], "activation": ["relu"]}}},
                        "hardware": {"threads": 1}, "executor": "serial"})
    from nasforge.api import create_study
    study = create_study(cfg, tmp_path).run()
    trials = study.trials
    assert len(trials) == 2 and len(calls) == 2 and calls[0] == (4,)  # a grid of 2: each measured once
    for t in trials:
        assert t.metrics["latency_ms"] > 0 and t.metrics["params"] == 4 * t.arch["width_0"] + t.arch["width_0"] + t.arch["width_0"] * 3 + 3
        assert t.metrics["flops"] > 0


@pytest.mark.parametrize("executor", ["batched", "serial"])
def test_a_failed_measurement_fails_its_trial_not_the_study(tmp_path, monkeypatch, executor):
    import nasforge.hardware as hw
    real = hw.hardware_metrics

    def failing_for_width_8(model, input_shape, **kw):
        if model[1].out_features == 8:
            raise RuntimeError("cannot time this one")
        return real(model, input_shape, **{**kw, "repeats": 3, "min_seconds": 0.0})

    monkeypatch.setattr(hw, "hardware_metrics", failing_for_width_8)
    cfg = parse_config({"space": "mlp", "dataset": "iris", "trials": 2, "budget": 1, "seed": 0, "executor": executor,
                        "strategy": {"name": "grid", "args": {"values": {"depth": [1], "width_0": [4, 8], "activation": ["relu"]}}},
                        "hardware": {"threads": 1}})
    from nasforge.api import create_study
    trials = {t.arch["width_0"]: t for t in create_study(cfg, tmp_path).run().trials}
    assert trials[4].state.value == "complete" and trials[4].metrics["latency_ms"] > 0
    assert trials[8].state.value == "failed" and "cannot time this one" in trials[8].error


def test_a_measuring_device_this_machine_lacks_is_a_config_error(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = parse_config({"space": "mlp", "dataset": "iris", "trials": 2, "budget": 1, "hardware": {"device": "cuda"}})
    from nasforge.api import create_study
    with pytest.raises(ConfigError, match="CUDA is not available"):
        create_study(cfg, tmp_path)


def test_a_hard_latency_target_returns_a_model_that_meets_it(tmp_path):
    """The reward prefers an accurate model under the target to a more accurate one over it."""
    study = hard_latency_study(tmp_path)
    assert study.best.arch["width_0"] == 30  # 40 is more accurate, but 4 ms > 3 ms


def test_latency_is_measured_once_per_study_across_processes_and_resumes(tmp_path, monkeypatch):
    """Each worker process (or a resumed driver) has its own context; the study's latency cache
    file is what they share."""
    import nasforge.hardware.cache as cache_module
    from nasforge.execution.worker import LATENCY_CACHE, HardwareSettings, WorkerContext, hardware_metrics_for
    from nasforge.space import Space
    from nasforge.spaces.mlp import mlp
    measured = []
    real = cache_module.measure_latency
    monkeypatch.setattr(cache_module, "measure_latency",
                        lambda model, *a, **kw: measured.append(1) or real(model, *a, **{**kw, "repeats": 3, "min_seconds": 0.0}))
    space = Space(mlp, {"n_in": 4, "n_out": 3})
    arch = {"depth": 1, "width_0": 8, "activation": "relu"}
    settings = HardwareSettings((4,), batch_size=1, threads=1, device="cpu", repeats=3, min_seconds=0.0)

    def context():
        return WorkerContext(space, None, lambda *a: None, str(tmp_path), hardware=settings)

    first = hardware_metrics_for(context(), arch, space.build(arch), 1.0)
    again = hardware_metrics_for(context(), arch, space.build(arch), 1.0)  # another process: a fresh context
    assert len(measured) == 1 and (tmp_path / LATENCY_CACHE).exists()
    assert again["latency_ms"] == first["latency_ms"] and again["params"] == first["params"] == 4 * 8 + 8 + 8 * 3 + 3
    hardware_metrics_for(context(), {**arch, "width_0": 9}, space.build({**arch, "width_0": 9}), 1.0)
    assert len(measured) == 2  # another architecture is measured
