"""nasforge.hardware: latency measurement, params/FLOPs, the latency cache, hardware_metrics.

Timings here use small repeat counts and no minimum time; the 5% repeatability goal is checked by
benchmarks/latency_repeatability.py, not here (a unit test cannot own a quiet machine).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest
import torch
from torch import nn

from nasforge.errors import ConfigError
from nasforge.hardware import (LatencyCache, LatencyResult, count_flops, count_params, hardware_metrics,
                               measure_latency)
from nasforge.hardware.latency import fixed_threads

FAST: dict[str, Any] = {"warmup": 2, "repeats": 10, "min_seconds": 0.0}


def mlp(width: int, depth: int = 2, n_in: int = 16) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    layers.append(nn.Linear(n_in, 2))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- latency

def test_bigger_model_is_clearly_slower():
    tiny = measure_latency(mlp(4), (16,), **FAST)
    big = measure_latency(mlp(1024, depth=3), (16,), batch_size=32, **FAST)
    # ~2M multiply-adds per sample x 32 samples against ~100: orders of magnitude, assert 5x
    assert big.median_ms > 5 * tiny.median_ms, (tiny, big)


def test_result_fields_are_sane():
    r = measure_latency(mlp(32), (16,), batch_size=4, threads=1, warmup=3, repeats=12, rounds=3, min_seconds=0.0)
    assert isinstance(r, LatencyResult)
    assert 0 < r.p10_ms <= r.median_ms <= r.p90_ms
    assert r.spread == pytest.approx((r.p90_ms - r.p10_ms) / r.median_ms)
    assert r.repeats == 12 and r.rounds == 3
    assert r.calls_per_repeat >= 1
    assert (r.batch_size, r.threads, r.device) == (4, 1, "cpu")
    assert r.seconds > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.median_ms = 1.0  # type: ignore[misc]  # frozen
    assert LatencyResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_min_seconds_takes_more_rounds():
    r = measure_latency(mlp(8), (16,), warmup=1, repeats=5, rounds=5, min_seconds=0.05)
    assert r.repeats > 5 and r.rounds > 5
    assert r.seconds >= 0.05  # at least min_seconds were timed


def test_one_repeat_of_a_fast_model_lasts_at_least_a_millisecond():
    r = measure_latency(mlp(4), (16,), **FAST)
    assert r.calls_per_repeat > 1
    assert r.calls_per_repeat * r.median_ms >= 0.5  # ms; calibrated on the fly, so allow for noise


def test_threads_are_restored_after_measuring():
    torch.set_num_threads(2)
    try:
        seen = []

        class Probe(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                seen.append(torch.get_num_threads())
                return x * 2

        r = measure_latency(Probe(), (3,), threads=1, **FAST)
        assert set(seen) == {1} and r.threads == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_threads_are_restored_when_the_model_fails():
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            measure_latency(Broken(), (3,), threads=1, **FAST)
        assert torch.get_num_threads() == 2
        with pytest.raises(KeyError), fixed_threads(1):
            raise KeyError("x")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_model_is_timed_in_eval_mode_and_its_flags_are_restored():
    modes = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            modes.append((self.training, torch.is_inference_mode_enabled()))
            return x + 1

    model = nn.Sequential(Probe(), nn.Dropout(0.5)).train()
    measure_latency(model, (3,), **FAST)
    assert set(modes) == {(False, True)}
    assert all(m.training for m in model.modules())


def test_the_input_is_fixed():
    seen: list[torch.Tensor] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x)
            return x

    measure_latency(Probe(), (2, 3), batch_size=5, **FAST)
    assert seen[0].shape == (5, 2, 3)
    assert all(x is seen[0] for x in seen)


@pytest.mark.parametrize("kwargs, bad", [
    ({"repeats": 0}, "repeats: 0"),
    ({"warmup": -1}, "warmup: -1"),
    ({"batch_size": 0}, "batch_size: 0"),
    ({"threads": 0}, "threads: 0"),
    ({"threads": 1.5}, "threads: 1.5"),
    ({"rounds": 0}, "rounds: 0"),
    ({"min_seconds": -1.0}, "min_seconds: -1.0"),
    ({"min_seconds": float("inf")}, "min_seconds: inf"),
    ({"device": "gpu"}, "'gpu'"),
    ({"device": "meta"}, "'meta'"),
])
def test_bad_arguments_are_config_errors_naming_the_value(kwargs, bad):
    before = torch.get_num_threads()
    with pytest.raises(ConfigError, match=bad.replace(".", r"\.").replace("(", r"\(")):
        measure_latency(mlp(4), (16,), **{**FAST, **kwargs})
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("shape", [(), (0,), (3, -1), "16", (2.0,), 16])
def test_bad_input_shapes_are_config_errors(shape):
    with pytest.raises(ConfigError, match="input_shape"):
        measure_latency(mlp(4), shape, **FAST)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="input_shape"):
        count_flops(mlp(4), shape)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        measure_latency(mlp(4), (16,), device="cuda", **FAST)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_latency_and_the_model_goes_back_to_the_cpu():
    model = mlp(256)
    r = measure_latency(model, (16,), device="cuda", **FAST)
    assert r.device.startswith("cuda:") and 0 < r.p10_ms <= r.median_ms <= r.p90_ms
    assert next(model.parameters()).device.type == "cpu"


# ---------------------------------------------------------------- params and FLOPs

def test_flops_of_a_linear_layer_for_one_sample():
    # FlopCounterMode counts the addmm as 2 * in * out (a multiply-add is 2 FLOPs); the bias is not counted
    assert count_flops(nn.Linear(10, 20), (10,)) == 2 * 10 * 20


def test_flops_of_a_small_cnn():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 26 * 26, 10))
    conv = 2 * (1 * 3 * 3) * 8 * 26 * 26
    linear = 2 * (8 * 26 * 26) * 10
    assert count_flops(model, (1, 28, 28)) == conv + linear


def test_flops_do_not_depend_on_train_mode_and_leave_it_alone():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)).train()
    assert count_flops(model, (4,)) == 2 * 4 * 8 + 2 * 8 * 2  # BatchNorm in train mode fails on 1 sample
    assert model.training


class _LSTMHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


class _Fails(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no")


def test_uncountable_models_give_none_without_crashing():
    assert count_flops(_Fails(), (3,)) is None
    # the LSTM runs a fused kernel FlopCounterMode has no formula for: an undercount, so None
    assert count_flops(_LSTMHead(), (5, 8)) is None


def test_count_params():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    assert count_params(model) == 10 * 20 + 20 + 20 * 3 + 3
    model[0].weight.requires_grad_(False)
    assert count_params(model, trainable_only=True) == 20 + 20 * 3 + 3
    shared = nn.Linear(4, 4)
    assert count_params(nn.Sequential(shared, shared)) == 20  # shared parameters count once


def test_hardware_metrics():
    metrics = hardware_metrics(nn.Sequential(nn.Linear(10, 20)), (10,), **FAST)
    assert set(metrics) == {"latency_ms", "latency_median_ms", "latency_spread", "params", "flops"}
    assert metrics["flops"] == 400 and metrics["params"] == 220
    assert 0 < metrics["latency_ms"] <= metrics["latency_median_ms"] and metrics["latency_spread"] >= 0
    assert all(isinstance(v, float) for v in metrics.values())
    assert "flops" not in hardware_metrics(_LSTMHead(), (5, 8), **FAST)


# ---------------------------------------------------------------- cache

ARCH = {"width": 32, "depth": 2, "act": "relu", "lr": 0.01}


def _result(median: float = 1.5, **kw) -> LatencyResult:
    fields = dict(median_ms=median, floor_ms=median * 0.9, p10_ms=1.0, p90_ms=2.0, spread=1 / median, repeats=10, batch_size=1,
                  threads=1, device="cpu")
    return LatencyResult(**{**fields, **kw})


def test_cache_round_trip_through_the_file(tmp_path):
    path = tmp_path / "sub" / "latency.json"
    cache = LatencyCache(path)
    assert cache.get("mlp", ARCH, (16,)) is None
    cache.put("mlp", ARCH, (16,), _result())
    reordered = dict(reversed(list(ARCH.items())))  # key order does not matter
    assert cache.get("mlp", reordered, [16]) == _result()
    fresh = LatencyCache(path)
    assert fresh.get("mlp", ARCH, (16,)) == _result() and len(fresh) == 1
    # every field of the key matters
    assert fresh.get("other", ARCH, (16,)) is None
    assert fresh.get("mlp", {**ARCH, "width": 64}, (16,)) is None
    assert fresh.get("mlp", ARCH, (17,)) is None
    assert fresh.get("mlp", ARCH, (16,), batch_size=2) is None
    assert fresh.get("mlp", ARCH, (16,), threads=2) is None
    assert LatencyCache(path, machine="another machine").get("mlp", ARCH, (16,)) is None


def test_cache_key_uses_the_results_batch_threads_and_device(tmp_path):
    cache = LatencyCache(tmp_path / "c.json")
    cache.put("mlp", ARCH, (16,), _result(batch_size=8, threads=2))
    assert cache.get("mlp", ARCH, (16,)) is None
    assert cache.get("mlp", ARCH, (16,), batch_size=8, threads=2) == _result(batch_size=8, threads=2)


def test_cache_sees_entries_written_by_another_instance(tmp_path):
    path = tmp_path / "c.json"
    a, b = LatencyCache(path), LatencyCache(path)
    a.put("mlp", ARCH, (16,), _result(1.0))
    b.put("mlp", {**ARCH, "width": 8}, (16,), _result(2.0))
    assert a.get("mlp", {**ARCH, "width": 8}, (16,)) == _result(2.0)
    assert len(LatencyCache(path)) == 2  # b merged a's entry before writing


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"format": "x", "entries": {}}', "", "\x00\xff"])
def test_cache_tolerates_a_corrupt_file(tmp_path, caplog, content):
    path = tmp_path / "c.json"
    path.write_text(content, encoding="latin-1")
    with caplog.at_level(logging.WARNING):
        cache = LatencyCache(path)
    assert len(cache) == 0 and cache.get("mlp", ARCH, (16,)) is None
    assert "unreadable" in caplog.text
    cache.put("mlp", ARCH, (16,), _result())  # overwrites the corrupt file with a good one
    assert LatencyCache(path).get("mlp", ARCH, (16,)) == _result()


def test_cache_missing_file_and_memory_only(tmp_path):
    assert len(LatencyCache(tmp_path / "none.json")) == 0
    memory = LatencyCache(None)
    memory.put("mlp", ARCH, (16,), _result())
    assert memory.get("mlp", ARCH, (16,)) == _result()


def test_cache_rejects_bad_keys(tmp_path):
    cache = LatencyCache(tmp_path / "c.json")
    with pytest.raises(ConfigError, match="not JSON-serialisable"):
        cache.get("mlp", {"f": object()}, (16,))
    with pytest.raises(ConfigError, match="space name"):
        cache.get("", ARCH, (16,))
    with pytest.raises(ConfigError, match="LatencyResult"):
        cache.put("mlp", ARCH, (16,), {"median_ms": 1.0})  # type: ignore[arg-type]


def test_get_or_measure_measures_once(tmp_path):
    builds = []

    def build() -> nn.Module:
        builds.append(1)
        return mlp(8)

    cache = LatencyCache(tmp_path / "c.json")
    first = cache.get_or_measure("mlp", ARCH, build, (16,), **FAST)
    second = LatencyCache(tmp_path / "c.json").get_or_measure("mlp", ARCH, build, (16,), **FAST)
    assert first == second and len(builds) == 1


def test_floor_is_the_undisturbed_speed_when_the_machine_has_slow_phases():
    """A core that runs 1.7x slower for most of a measurement (as a shared VM's do): the median
    follows the slow phase, the floor (what trials record) stays at the undisturbed speed."""
    from nasforge.hardware.latency import _summarise
    fast, slow = 1.0e-3, 1.7e-3
    rounds = [[slow * (1 + 0.01 * (i % 3))] * 6 for i in range(70)] + [[fast * (1 + 0.01 * (i % 3))] * 6 for i in range(30)]
    r = _summarise(rounds, calls=1, batch_size=1, threads=1, device="cpu", seconds=1.0)
    assert r.floor_ms == pytest.approx(1.0, rel=0.02) and r.median_ms == pytest.approx(1.7, rel=0.02)
    steady = _summarise([[fast] * 6] * 20, calls=1, batch_size=1, threads=1, device="cpu", seconds=1.0)
    assert steady.floor_ms == pytest.approx(steady.median_ms)
