"""ProxylessNAS: binary gates, sampled paths, the latency table and predictor, latency in the loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nasforge
from nasforge.datasets import load_dataset
from nasforge.errors import ConfigError
from nasforge.hardware import latency as latency_module
from nasforge.hardware.cache import LatencyCache
from nasforge.hardware.predictor import LatencyPredictor, fit_predictor, measure_architectures
from nasforge.hardware.table import LatencyTable, OpEntry, measure_table
from nasforge.oneshot.latency_loss import LatencyLoss
from nasforge.oneshot.loop import build_supernet
from nasforge.oneshot.proxyless import ProxylessNas
from nasforge.space.space import Space
from nasforge.space.supernet import MixedOp
from nasforge.spaces.proxyless import proxyless
import nasforge.spaces.mlp


def _built(space: Space, method: ProxylessNas) -> nn.Module:
    model, arch = build_supernet(space, method)
    method.setup(model, dict(arch.searched), torch.Generator().manual_seed(0))
    return model


def _three_ops(arch, n_in, n_out):
    return nn.Sequential(arch.choice("op", {"a": lambda: nn.Linear(n_in, n_out), "b": lambda: nn.Linear(n_in, n_out),
                                            "c": lambda: nn.Linear(n_in, n_out)}))


def test_the_gate_gradient_is_the_gradient_of_the_expected_loss_over_the_two_paths():
    """For a loss linear in the output, E_g[L] over the two sampled paths is sum_j p_j L_j, whose
    gradient is p_i (L_i - sum_j p_j L_j): what eq. 4 must give from dL/dg (a (1 - p_2) in place
    of (1 - p_i) or a lost sign fails here)."""
    torch.manual_seed(0)
    method = ProxylessNas()
    model = _built(Space(_three_ops, {"n_in": 4, "n_out": 2}), method)
    mixer, x, c = method.mixer, torch.randn(5, 4), torch.randn(5, 2)
    with torch.no_grad():
        mixer.alpha["op"].copy_(torch.tensor([0.3, -0.5, 0.9]))
    for seed in range(5):
        mixer.resample("gates", torch.Generator().manual_seed(seed))
        (model(x) * c).sum().backward()
        pair = mixer.paths["op"]
        losses = torch.stack([(model[0].ops["abc"[i]](x) * c).sum() for i in pair]).detach()
        alpha = mixer.alpha["op"].detach().clone().requires_grad_()
        (torch.softmax(alpha[pair], -1) * losses).sum().backward()
        got = mixer.gate_gradients()["op"]
        assert torch.allclose(got, alpha.grad, atol=1e-5), (pair, got, alpha.grad)
        assert got[[i for i in range(3) if i not in pair]].abs().sum() == 0  # a masked path gets nothing


def test_a_weight_step_runs_one_path_and_an_architecture_step_two():
    data = load_dataset("mnist5k")
    space = Space(proxyless, data.context(), args={"stages": [[8, 2], [12, 2]], "stem": 8, "first": 4, "head": 16})
    method = ProxylessNas()
    model = _built(space, method)
    calls: dict[int, int] = {}
    mixed = [m for m in model.modules() if isinstance(m, MixedOp)]
    for i, m in enumerate(mixed):
        for op in m.ops.values():
            op.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls.get(i, 0) + 1))
    generator = torch.Generator().manual_seed(0)
    for mode, paths in (("path", 1), ("gates", 2), ("argmax", 1)):
        calls.clear()
        method.mixer.resample(mode, generator) if mode != "argmax" else setattr(method.mixer, "mode", "argmax")
        model(data.x_train[:4])
        assert calls == {i: paths for i in range(len(mixed))}, (mode, calls)


def test_an_architecture_step_leaves_the_unsampled_paths_probabilities_as_they_were():
    data = load_dataset("digits")
    space = Space(_three_ops, {"n_in": 64, "n_out": 10})
    method = ProxylessNas(batch_size=32, alpha_lr=0.1)
    model = _built(space, method)
    from nasforge.oneshot.base import Batches
    batches = Batches(data, 32, torch.Generator().manual_seed(0))
    iter(batches.train())
    for _ in range(5):
        before = torch.softmax(method.mixer.alpha["op"].detach(), -1).clone()
        method._arch_step(model, batches)
        after = torch.softmax(method.mixer.alpha["op"].detach(), -1)
        out = [i for i in range(3) if i not in method.mixer.paths["op"]][0]
        assert torch.isclose(before[out], after[out], atol=1e-6)
        assert not torch.allclose(before, after)


def test_the_expected_latency_is_the_table_weighted_by_the_path_probabilities():
    table = LatencyTable([OpEntry("a", ("x", "y"), (1.0, 3.0), (4,)), OpEntry("a", ("x", "y"), (2.0, 2.0), (4,)),
                          OpEntry("b", ("x", "y", "none"), (5.0, 1.0, 0.0), (4,))], 0.5, "m", {})
    assert table.latency_ms({"a": "y", "b": "none"}) == 0.5 + 3.0 + 2.0 + 0.0
    alpha = torch.zeros(2, requires_grad=True)
    probabilities = {"a": torch.softmax(alpha, -1), "b": torch.tensor([1.0, 0.0, 0.0])}
    expected = table.expected(probabilities)
    assert float(expected.detach()) == pytest.approx(0.5 + 2.0 + 2.0 + 5.0)
    expected.backward()
    assert alpha.grad[1] > 0 > alpha.grad[0]  # y is the slower op of the first entry
    assert table.span() == (0.5 + 1 + 2 + 0, 0.5 + 3 + 2 + 5)
    assert LatencyTable.from_dict(table.to_dict()).to_dict() == table.to_dict()


def test_the_table_times_every_candidate_once_per_machine(tmp_path, monkeypatch):
    data = load_dataset("mnist5k")
    space = Space(proxyless, data.context(), args={"stages": [[8, 2]], "stem": 8, "first": 4, "head": 16})
    model = _built(space, ProxylessNas())
    measured: list = []
    real = latency_module.measure_latency
    monkeypatch.setattr(latency_module, "measure_latency", lambda *a, **k: measured.append(a[1]) or real(*a, **k))
    path = tmp_path / "ops.json"
    table = measure_table(model, data.input_shape, min_seconds=0.01, repeats=3, passes=2, calibrate=2,
                          cache=LatencyCache(path))
    assert [e.label for e in table.entries] == ["stage_0/layer_0", "stage_0/layer_1"]
    assert table.entries[1].candidates[-1] == "none" and "none" not in table.entries[0].candidates
    assert all(ms > 0 for e in table.entries for ms in e.ms) and table.fixed_ms > 0
    assert table.entries[0].input_shape == (4, 14, 14) and table.entries[1].input_shape == (8, 7, 7)
    # every candidate, the network without them and two sampled child networks, best of 2 passes
    assert len(measured) == 2 * (6 + 7 + 1 + 2)
    assert 0.5 < table.scale < 2
    measured.clear()
    again = measure_table(_built(space, ProxylessNas()), data.input_shape, min_seconds=0.01, repeats=3, passes=2,
                          calibrate=2, cache=LatencyCache(path))
    assert measured == [] and again.to_dict() == table.to_dict()  # read from the cache file


def _fast_or_accurate(arch, n_in, n_out):
    """One choice: a wide hidden layer (accurate on digits) or a 1-unit bottleneck (poor)."""
    return nn.Sequential(arch.choice("body", {
        "wide": lambda: nn.Sequential(nn.Linear(n_in, 64), nn.ReLU(), nn.Linear(64, n_out)),
        "narrow": lambda: nn.Sequential(nn.Linear(n_in, 1), nn.ReLU(), nn.Linear(1, n_out))}))


@pytest.mark.parametrize("gate_update", ["gradient", "reinforce"])
def test_a_latency_target_steers_the_search_to_the_fast_op_and_none_keeps_the_accurate_one(tmp_path, gate_update):
    """With a made-up table (wide 10 ms, narrow 1 ms) the latency term must win under a 2 ms
    target; without a target accuracy must (the narrow op's bottleneck loses on digits)."""
    data = load_dataset("digits")
    space = Space(_fast_or_accurate, data.context())
    table = LatencyTable([OpEntry("body", ("wide", "narrow"), (10.0, 1.0), (64,))], 0.0, "m", {})
    found = {}
    for target in (None, 2.0):
        method = ProxylessNas(epochs=6, batch_size=64, alpha_lr=0.05, gate_update=gate_update, latency_target=target,
                              latency_weight=2.0, latency_form="add", latency_kind="soft")
        method.table = table if target else None
        from nasforge.oneshot.loop import OneShotSearch
        found[target] = OneShotSearch(method, space, data, tmp_path / f"{gate_update}{target}", seed=0).run()["body"]
    assert found == {None: "wide", 2.0: "narrow"}


def test_the_latency_loss_forms():
    ce, lat = torch.tensor(2.0), torch.tensor(3.0)
    assert float(LatencyLoss(2.0, 0.5, "add", "soft")(ce, lat)) == pytest.approx(2.0 + 0.5 * 1.5)
    assert float(LatencyLoss(2.0, 0.5, "add", "hard")(ce, lat)) == pytest.approx(2.0 + 0.5 * 0.5)
    assert float(LatencyLoss(2.0, 0.5, "mul", "soft")(ce, lat)) == pytest.approx(2.0 * 1.5 ** 0.5)
    assert float(LatencyLoss(4.0, 0.5, "mul", "hard")(ce, lat)) == pytest.approx(2.0)  # under the target: free
    with pytest.raises(ConfigError, match="latency_form.*allowed: add, mul"):
        LatencyLoss(2.0, 0.5, "exp")
    with pytest.raises(ConfigError, match="gate_update.*allowed: gradient, reinforce"):
        ProxylessNas(gate_update="sgd")
    with pytest.raises(ConfigError, match="latency_target"):
        ProxylessNas(latency_target=-1)


def test_a_predictor_learns_latency_from_measured_architectures_and_is_checked_on_load(tmp_path):
    space = Space(nasforge.spaces.mlp.mlp, {"n_in": 64, "n_out": 10})
    measured = measure_architectures(space, 40, (64,), seed=0, repeats=5, min_seconds=0.02)
    assert len({repr(sorted(a.items())) for a, _, _ in measured}) == 40
    predictor = fit_predictor(space, measured, (64,), seed=0)
    assert predictor.n_train == 30 and predictor.n_test == 10 and 0 <= predictor.mape < 1.0
    path = tmp_path / "p.pkl"
    predictor.save(path)
    loaded = LatencyPredictor.load(path).bind(space)
    arch, model, _ = measured[0]
    assert loaded.latency_ms(arch, model) == predictor.latency_ms(arch, model) > 0
    with pytest.raises(ConfigError, match="trained on space"):
        loaded.bind(Space(proxyless, {"input_shape": (1, 8, 8), "n_out": 3}))
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="cannot be read"):
        LatencyPredictor.load(tmp_path / "bad.pkl")
    with pytest.raises(ConfigError, match="does not exist"):
        LatencyPredictor.load(tmp_path / "missing.pkl")


def test_a_study_can_use_predicted_latency_and_measure_only_its_final_trials(tmp_path):
    from nasforge.api import train_latency_predictor
    from nasforge.config import parse_config
    cfg = {"space": "mlp", "dataset": "iris", "hardware": {"repeats": 3, "min_seconds": 0.02}}
    predictor_path = tmp_path / "p.pkl"
    train_latency_predictor(parse_config(cfg), 12, 0, predictor_path)
    hardware = {"repeats": 3, "min_seconds": 0.02, "predictor": str(predictor_path)}
    predicted = nasforge.search("mlp", "iris", "random", trials=3, budget=2, hardware=hardware, out=tmp_path / "a")
    for t in predicted.trials:
        assert t.metrics["latency_ms"] == t.metrics["latency_predicted_ms"] and "latency_median_ms" not in t.metrics
    final = nasforge.search("mlp", "iris", "random", "successive_halving", trials=4, budget=4, out=tmp_path / "b",
                            hardware={**hardware, "measure_final": True})
    full = [t for t in final.trials if t.budget >= 4]
    early = [t for t in final.trials if t.budget < 4]
    assert full and early
    assert all("latency_median_ms" in t.metrics and "latency_predicted_ms" in t.metrics for t in full)
    assert all(t.metrics["latency_ms"] == t.metrics["latency_predicted_ms"] for t in early)
    with pytest.raises(ConfigError, match="measure_final"):
        nasforge.search("mlp", "iris", hardware={"measure_final": True}, out=tmp_path / "c")
    with pytest.raises(ConfigError, match="latency_median_ms"):
        nasforge.search("mlp", "iris", objective="latency_median_ms", hardware=hardware, out=tmp_path / "d")


def test_the_proxyless_space_samples_and_builds_with_skippable_layers_only_where_shapes_match():
    space = Space(proxyless, {"input_shape": (1, 28, 28), "n_out": 10})
    assert len(space.schema) == 10
    for d in space.schema:
        options = d.domain.options
        assert ("none" in options) == (not d.label.endswith("layer_0")), d.label
    for seed in range(3):
        model = space.build(space.sample(np.random.default_rng(seed)))
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_latency_three_ways_answer_through_one_interface():
    from nasforge.hardware import LatencyEstimator, MeasuredLatency
    data = load_dataset("mnist5k")
    space = Space(proxyless, data.context(), name="proxyless", args={"stages": [[8, 2]], "stem": 8, "first": 4, "head": 16})
    options = {"repeats": 5, "min_seconds": 0.05}
    table = measure_table(_built(space, ProxylessNas()), data.input_shape, passes=1, calibrate=1, **options)
    measured = measure_architectures(space, 10, data.input_shape, passes=1, **options)
    predictor = fit_predictor(space, measured, data.input_shape)
    end_to_end = MeasuredLatency(space.name, data.input_shape, **options)
    arch, model, _ = measured[0]
    answers = {e.name: e.latency_ms(arch, model) for e in (end_to_end, table, predictor)}
    assert all(isinstance(e, LatencyEstimator) for e in (end_to_end, table, predictor))
    assert set(answers) == {"measured", "table", "predictor"}
    for name, ms in answers.items():  # the same network, three estimates of one magnitude
        assert 0.3 < ms / answers["measured"] < 3, answers


def test_the_most_probable_architecture_within_the_target_is_the_brute_force_one():
    import itertools
    from nasforge.oneshot.proxyless import most_probable_within
    rng = np.random.default_rng(0)
    names = ("p", "q", "r")
    entries = [OpEntry(label, names, tuple(rng.uniform(0.1, 1.0, 3)), (4,)) for label in ("a", "b", "c", "a")]
    table = LatencyTable(entries, 0.3, "m", {}, scale=1.1)
    log_p = {label: torch.log_softmax(torch.tensor(rng.normal(size=3)), -1) for label in "abc"}
    for target in (1.5, 2.0, 2.5, 3.0):
        got = most_probable_within(table, log_p, target)
        assert table.latency_ms(got) <= target
        feasible = [dict(zip("abc", combo)) for combo in itertools.product(names, repeat=3)
                    if table.latency_ms(dict(zip("abc", combo))) <= target]
        best = max(feasible, key=lambda a: sum(float(log_p[k][names.index(v)]) for k, v in a.items()))
        assert got == best, target
    fastest = most_probable_within(table, log_p, 0.1)  # nothing meets it: the fastest choices
    assert table.latency_ms(fastest) == table.span()[0]
