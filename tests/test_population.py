"""The population trainer: many MLPs trained together must match training each one alone.

"Match" is float tolerance: batched products sum in another order than single ones. LOSS and
WEIGHT are the floor; where a training is ill-conditioned under Adam, tests/rounding.py widens
them to what one-ulp nudges of the same training alone do (see its docstring for why)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nasforge
from nasforge.datasets import load_dataset
from nasforge.space import Space
from nasforge.spaces.mlp import mlp
from nasforge.engine.population import PopulationTrainer, mlp_shape
from nasforge.train.trainer import SupervisedTrainer
from rounding import LOSS, WEIGHT, assert_trains_as_alone, rounding_spread


@pytest.fixture(scope="module")
def iris():
    return load_dataset("iris")


STUDY_LOSS = dict(rel=1e-3)  # whole studies: more epochs, and rounding compounds


def archs(data, n, seed=0):
    space = Space(mlp, data.context())
    rng = np.random.default_rng(seed)
    return space, [space.schema.sample(rng) for _ in range(n)]


def alone(space, data, trainer, arch, seed, budget, state=None, edit=lambda model: model):
    torch.manual_seed(seed)
    return trainer(edit(space.build(arch)), data, budget, state)


def together(space, data, trainer, items):
    """items: (arch, seed, budget, state); built exactly as the batching executor builds them."""
    pop = PopulationTrainer(trainer)
    cands = []
    for arch, seed, budget, state in items:
        torch.manual_seed(seed)
        cands.append(pop.candidate(space.build(arch), budget, state))
    pop.train(cands, data)
    return cands, pop


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_same_losses_as_training_each_alone(iris, optimizer):
    space, population = archs(iris, 12)
    trainer = SupervisedTrainer(optimizer=optimizer, lr=0.01, device="cpu")
    cands, pop = together(space, iris, trainer, [(a, i, 4, None) for i, a in enumerate(population)])
    assert len(pop._mlp_groups(cands)) < len(cands)  # they really were trained in groups
    for i, (arch, cand) in enumerate(zip(population, cands)):
        ref = alone(space, iris, trainer, arch, i, 4)
        assert cand.error is None
        got = cand.result
        assert_trains_as_alone(got, ref, lambda edit, a=arch, s=i: alone(space, iris, trainer, a, s, 4, edit=edit))
        assert got.state["steps"] == ref.state["steps"] and got.state["position"] == ref.state["position"]


def test_rounding_spread_measures_adams_amplification_of_subresolution_gradients(iris):
    """Candidate 5 of the population above (5 tanh layers, a 4-wide one) has, at its first step,
    a gradient of -2.3e-9 that float32 cannot resolve and Adam still steps on: one-ulp nudges of
    its initial weights move its epoch-2 loss (0.89) by the order of the fixed floor (0.85-1.27e-4
    on three kernels of one machine), while a well-conditioned candidate (0) moves by ~1e-7. This
    is why the floor alone fails on other CPUs."""
    space, population = archs(iris, 12)
    trainer = SupervisedTrainer(optimizer="adam", lr=0.01, device="cpu")
    spreads = []
    for i in (0, 5):
        ref = alone(space, iris, trainer, population[i], i, 4)
        curve, _ = rounding_spread(lambda edit, i=i: alone(space, iris, trainer, population[i], i, 4, edit=edit), ref)
        spreads.append(max(point["val_loss"] for point in curve))
    assert spreads[1] > 0.5 * LOSS["rel"] * 0.89
    assert spreads[1] > 100 * spreads[0]


def test_every_hand_differentiated_activation_matches_autograd(iris):
    """One group mixing every activation with a hand-written backward (rows of each written into
    one buffer) trains as each network alone under autograd."""
    acts = [nn.ReLU, nn.Tanh, nn.GELU, lambda: nn.GELU(approximate="tanh"), nn.SiLU, lambda: nn.ELU(0.7),
            lambda: nn.LeakyReLU(0.2), nn.Identity]

    def build(i):
        torch.manual_seed(i)
        act = acts[i % len(acts)]
        return nn.Sequential(nn.Flatten(), nn.Linear(4, 6 + i), act(), nn.Linear(6 + i, 5), act(), nn.Linear(5, 3))

    trainer = SupervisedTrainer(device="cpu")
    pop = PopulationTrainer(trainer)
    cands = []
    for i in range(len(acts)):
        build(i)  # the same draws as below: the shuffling seed follows the build
        cands.append(pop.candidate(build(i), 3, None))
    assert len(pop._mlp_groups(cands)) == 1
    pop.train(cands, iris)
    for i, cand in enumerate(cands):
        build(i)
        ref = trainer(build(i), iris, 3)
        assert cand.error is None
        for a, b in zip(cand.result.curve, ref.curve):
            assert a["val_loss"] == pytest.approx(b["val_loss"], **LOSS), i


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_group_of_mixed_depths_trains_as_each_alone(iris, monkeypatch, optimizer):
    """Depths 0 to 4 in one group (forced: every merge 'saves'), widths and activations mixed,
    a shallow candidate wider than the deep ones: each trains, exports and continues as alone,
    and states trained alone load into such a group."""
    from nasforge.engine import grouping

    monkeypatch.setattr(grouping, "step_cost", lambda shapes, batch: 1.0 if shapes else 0.0)
    specs = [[], [30], [5, 7], [9, 4, 6], [3, 8, 2, 5], [12, 3], [40], [6, 6, 6, 6]]
    acts = [nn.Tanh, nn.ReLU, nn.GELU, nn.Tanh, nn.ReLU, nn.GELU, nn.Tanh, nn.ReLU]

    def build(i):
        torch.manual_seed(i)
        layers, width = [nn.Flatten()], 4
        for w in specs[i]:
            layers += [nn.Linear(width, w), acts[i]()]
            width = w
        return nn.Sequential(*layers, nn.Linear(width, 3))

    trainer = SupervisedTrainer(optimizer=optimizer, device="cpu")
    pop = PopulationTrainer(trainer)

    def group(budget, states):
        cands = []
        for i, state in enumerate(states):
            build(i)  # the same draws as alone: the shuffling seed follows the build
            cands.append(pop.candidate(build(i), budget, state))
        assert len(pop._mlp_groups(cands)) == 1
        pop.train(cands, iris)
        return cands

    first = group(2, [None] * len(specs))
    def alone_built(i, budget, edit=lambda model: model):
        build(i)
        return trainer(edit(build(i)), iris, budget)

    for i, cand in enumerate(first):
        assert cand.error is None, i
        assert_trains_as_alone(cand.result, alone_built(i, 2), lambda edit, i=i: alone_built(i, 2, edit))
        build(i)
        straight = trainer(build(i), iris, 4).metrics["val_loss"]
        assert trainer(build(i), iris, 4, cand.result.state).metrics["val_loss"] == pytest.approx(straight, **LOSS), i
    singles = []
    for i in range(len(specs)):
        build(i)
        singles.append(trainer(build(i), iris, 2).state)
    for i, cand in enumerate(group(4, singles)):
        build(i)
        assert cand.result.metrics["val_loss"] == pytest.approx(trainer(build(i), iris, 4).metrics["val_loss"], **LOSS), i


def for_each(tensor, count):
    """The same rows for each of ``count`` stacked candidates: (count, *tensor.shape)."""
    return tensor.unsqueeze(0).expand(count, *tensor.shape).contiguous()


def stacked_nets(specs, acts, task="classification", n_out=3, count=2):
    """``count`` MLPNets of one group from the same start: hidden widths ``specs[i]`` with
    activation ``acts[i]`` (seed i), rows in stacking order."""
    from types import SimpleNamespace

    from nasforge.engine.mlp_layout import stack_order
    from nasforge.engine.stacked_mlp import MLPNet

    shapes = []
    for i, (widths, act) in enumerate(zip(specs, acts)):
        torch.manual_seed(i)
        layers, width = [nn.Flatten()], 4
        for w in widths:
            layers += [nn.Linear(width, w), act()]
            width = w
        shapes.append(mlp_shape(nn.Sequential(*layers, nn.Linear(width, n_out))))
    shapes.sort(key=stack_order)
    y_train = torch.zeros(8) if task == "regression" else torch.zeros(8, dtype=torch.long)
    data = SimpleNamespace(task=task, y_train=y_train)
    trainer = SupervisedTrainer(optimizer="adam", lr=0.01, device="cpu")
    return [MLPNet(trainer, [None] * len(specs), shapes, [None] * len(specs), data) for _ in range(count)]


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_step_predicts_extra_inputs_with_the_weights_it_started_from(iris, task):
    """The validation of an epoch's end rides on the next step's forward pass: the outputs on
    the extra rows equal predict() before the step, and the step itself (losses, new weights)
    equals one without them."""
    # depths mix: the output layer's input is assembled
    nets = stacked_nets([[7, 5, 3], [6, 9], [4], [8, 2]], [nn.Tanh, nn.ReLU, nn.GELU, nn.ReLU], task,
                        3 if task == "classification" else 1)
    x = for_each(iris.x_train[:32], 4)
    y = for_each(iris.y_train[:32] if task == "classification" else iris.x_train[:32, 0], 4)
    for _ in range(2):
        with torch.no_grad():  # as the training loop calls it
            before = nets[0].predict(iris.x_val)
        losses, predicted = nets[0].step(x, y, iris.x_val)
        plain, nothing = nets[1].step(x, y)
        assert nothing is None and predicted.shape == before.shape
        assert torch.allclose(predicted, before, atol=1e-6)
        assert torch.allclose(losses, plain, atol=1e-6)
        assert torch.allclose(nets[0].stack.flat, nets[1].stack.flat, atol=1e-6)
    with torch.no_grad():
        assert not torch.allclose(nets[0].predict(iris.x_val), before, atol=1e-3)  # the steps did move the weights


def test_small_validation_sets_ride_on_the_next_step_and_large_ones_do_not(iris, monkeypatch):
    """An epoch's validation is computed in the next step's forward pass when the validation set
    is small, in a pass of its own otherwise (the last epoch's always): the curves agree."""
    from nasforge.engine import population
    from nasforge.engine.stacked_mlp import MLPNet

    space, population_archs = archs(iris, 6, seed=4)
    trainer = SupervisedTrainer(optimizer="adam", lr=0.01, device="cpu")
    passes = []
    real_predict = MLPNet.predict
    monkeypatch.setattr(MLPNet, "predict", lambda self, x: passes.append(len(x)) or real_predict(self, x))
    items = [(a, i, 4, None) for i, a in enumerate(population_archs)]
    riding, pop = together(space, iris, trainer, items)
    groups = len(pop._mlp_groups(riding))
    assert len(passes) == groups  # one pass per group: the 4th epoch's
    monkeypatch.setattr(population, "VALIDATION_RIDES_ROWS", len(iris.x_val) - 1)
    passes.clear()
    alone_passes, _ = together(space, iris, trainer, items)
    assert len(passes) == 4 * groups  # a pass per epoch
    for a, b in zip(riding, alone_passes):
        assert [p["epoch"] for p in a.result.curve] == [p["epoch"] for p in b.result.curve] == [1, 2, 3, 4]
        for pa, pb in zip(a.result.curve, b.result.curve):
            assert pa["val_loss"] == pytest.approx(pb["val_loss"], **LOSS)
            assert pa["val_accuracy"] == pytest.approx(pb["val_accuracy"], abs=1e-6)


def test_a_vmap_step_predicts_extra_inputs_with_the_weights_it_started_from(iris):
    from nasforge.engine.vmap_net import VmapNet

    trainer = SupervisedTrainer(optimizer="adam", lr=0.01, device="cpu")
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)))
    net = VmapNet(trainer, models, [None] * 3, iris)
    x, y = for_each(iris.x_train[:32], 3), for_each(iris.y_train[:32], 3)
    for _ in range(2):
        before = net.predict(iris.x_val)
        _, predicted = net.step(x, y, iris.x_val)
        assert torch.equal(predicted, before)
    assert not torch.allclose(net.predict(iris.x_val), before, atol=1e-3)


def test_workspaces_of_several_batch_shapes_give_the_results_of_fresh_buffers(iris):
    """A stacked group keeps its activations in a workspace per batch shape (the batch, an epoch's
    last one, a batch with the validation rows, the validation set); steps interleaving those
    shapes equal steps that allocate every buffer afresh (one workspace at a time, so each
    shape's is rebuilt)."""
    kept, fresh = stacked_nets([[7, 5, 3], [6, 9], [], [4], [8, 2]], [nn.Tanh, nn.ReLU, nn.ReLU, nn.GELU, nn.ReLU])
    fresh.stack.max_workspaces = 1

    with torch.no_grad():
        for rows, extra in [(32, None), (32, iris.x_val), (4, None), (32, None), (32, iris.x_val), (4, None)]:
            x, y = for_each(iris.x_train[:rows], 5), for_each(iris.y_train[:rows], 5)
            a, b = kept.step(x, y, extra), fresh.step(x, y, extra)
            assert torch.equal(a[0], b[0]) and torch.equal(kept.stack.flat, fresh.stack.flat)
            assert torch.equal(kept.predict(iris.x_val), fresh.predict(iris.x_val))
    assert len(kept.stack._workspaces) == 4 and len(fresh.stack._workspaces) == 1


def test_stacked_rows_must_go_deepest_first():
    from nasforge.engine.mlp_layout import layout

    shallow, deep = [nn.Linear(4, 3)], [nn.Linear(4, 5), nn.Linear(5, 3)]
    assert layout([deep, shallow]).rows == [1, 2]
    with pytest.raises(ValueError, match="deepest first"):
        layout([shallow, deep])


@pytest.mark.parametrize("make_act", [nn.ReLU, nn.Tanh, nn.GELU, lambda: nn.GELU(approximate="tanh"), nn.SiLU,
                                      lambda: nn.ELU(0.7), lambda: nn.LeakyReLU(0.2), nn.Identity])
def test_layers_of_one_activation_match_autograd(iris, make_act):
    """A group whose rows share one activation takes the out-of-place path (and GELU, being
    small, ATen's kernels with oneDNN switched off for the call): the same training as alone."""
    def build(i):
        torch.manual_seed(i)
        return nn.Sequential(nn.Flatten(), nn.Linear(4, 6 + i), make_act(), nn.Linear(6 + i, 5), make_act(), nn.Linear(5, 3))

    trainer = SupervisedTrainer(device="cpu")
    pop = PopulationTrainer(trainer)
    cands = []
    for i in range(3):
        build(i)
        cands.append(pop.candidate(build(i), 3, None))
    pop.train(cands, iris)
    assert torch._C._get_mkldnn_enabled()  # the switch is back where it was
    for i, cand in enumerate(cands):
        build(i)
        ref = trainer(build(i), iris, 3)
        for a, b in zip(cand.result.curve, ref.curve):
            assert a["val_loss"] == pytest.approx(b["val_loss"], **LOSS), i


def test_the_onednn_switch_is_restored_when_a_kernel_fails():
    from nasforge.engine.activations import _native_if_small
    from nasforge.private_api import onednn_switch

    def fails(x):
        assert not torch._C._get_mkldnn_enabled()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _native_if_small(fails, onednn_switch(), torch.zeros(10))
    assert torch._C._get_mkldnn_enabled()


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_states_interoperate_with_the_one_by_one_trainer(iris, optimizer):
    """Train 2.5 epochs together, continue alone to 5 (and the reverse): as if trained straight.
    SGD keeps no step count, Adam does: both states must load into a group."""
    space, population = archs(iris, 6, seed=1)
    trainer = SupervisedTrainer(optimizer=optimizer, device="cpu")
    first, _ = together(space, iris, trainer, [(a, i, 2.5, None) for i, a in enumerate(population)])
    for i, (arch, cand) in enumerate(zip(population, first)):
        straight = alone(space, iris, trainer, arch, i, 5)
        continued = alone(space, iris, trainer, arch, 99, 5, cand.result.state)
        assert continued.metrics["val_loss"] == pytest.approx(straight.metrics["val_loss"], **LOSS)
    singles = [alone(space, iris, trainer, a, i, 2.5) for i, a in enumerate(population)]
    second, _ = together(space, iris, trainer, [(a, 50 + i, 5, s.state) for i, (a, s) in enumerate(zip(population, singles))])
    for i, (arch, cand) in enumerate(zip(population, second)):
        straight = alone(space, iris, trainer, arch, i, 5)
        assert cand.result.metrics["val_loss"] == pytest.approx(straight.metrics["val_loss"], **LOSS)


def test_a_candidates_state_holds_only_its_own_values(iris):
    """A state is copied out of the group's padded buffers into storage of just the candidate's
    values (a checkpoint file must not carry the whole group), in the one-by-one trainer's format."""
    space, population = archs(iris, 8, seed=2)
    trainer = SupervisedTrainer(device="cpu")
    cands, pop = together(space, iris, trainer, [(a, i, 2, None) for i, a in enumerate(population)])
    assert len(pop._mlp_groups(cands)) < len(cands)
    for i, (arch, cand) in enumerate(zip(population, cands)):
        state, ref = cand.result.state, alone(space, iris, trainer, arch, i, 2).state
        assert list(state["model"]) == list(ref["model"])
        assert [v.shape for v in state["model"].values()] == [v.shape for v in ref["model"].values()]
        assert state["optimizer"]["param_groups"] == ref["optimizer"]["param_groups"]
        for slot, ref_slot in zip(state["optimizer"]["state"].values(), ref["optimizer"]["state"].values()):
            assert {k: v.shape for k, v in slot.items()} == {k: v.shape for k, v in ref_slot.items()}
        n_params = sum(v.numel() for v in state["model"].values())
        model_storages = {v.untyped_storage().data_ptr(): v.untyped_storage().nbytes() for v in state["model"].values()}
        assert sum(model_storages.values()) == 4 * n_params
        for name in ("exp_avg", "exp_avg_sq"):
            slots = [slot[name] for slot in state["optimizer"]["state"].values()]
            assert sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in slots}.values()) == 4 * n_params
    before = [v.clone() for v in cands[0].result.state["model"].values()]
    together(space, iris, trainer, [(a, i, 3, c.result.state) for i, (a, c) in enumerate(zip(population, cands))])
    assert all(torch.equal(a, b) for a, b in zip(before, cands[0].result.state["model"].values()))


def test_a_diverging_candidate_fails_alone(iris):
    space, population = archs(iris, 5, seed=2)
    trainer = SupervisedTrainer(device="cpu")
    pop = PopulationTrainer(trainer)
    cands = []
    for i, arch in enumerate(population):
        torch.manual_seed(i)
        model = space.build(arch)
        if i == 2:
            with torch.no_grad():
                model[1].weight.fill_(float("nan"))
        cands.append(pop.candidate(model, 2, None))
    pop.train(cands, iris)
    assert cands[2].error and "loss became nan" in cands[2].error and cands[2].result is None
    for i, cand in enumerate(cands):
        if i != 2:
            ref = alone(space, iris, trainer, population[i], i, 2)
            assert_trains_as_alone(cand.result, ref, lambda edit, i=i: alone(space, iris, trainer, population[i], i, 2,
                                                                           edit=edit))


def test_regression_and_data_fraction_budgets():
    data = load_dataset("diabetes")
    space, population = archs(data, 4, seed=3)
    trainer = SupervisedTrainer(device="cpu", budget_unit="data_fraction", epochs=2)
    cands, _ = together(space, data, trainer, [(a, i, 0.5, None) for i, a in enumerate(population)])
    for i, (arch, cand) in enumerate(zip(population, cands)):
        ref = alone(space, data, trainer, arch, i, 0.5)
        assert_trains_as_alone(cand.result, ref, lambda edit, a=arch, s=i: alone(space, data, trainer, a, s, 0.5, edit=edit),
                               metrics=("val_loss", "val_rmse"))
        assert cand.result.state["seen"] == ref.state["seen"]


def test_only_mlps_of_zero_preserving_activations_are_taken():
    assert mlp_shape(nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 3))) is not None
    assert mlp_shape(nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 3))) is None  # sigmoid(0) != 0
    assert mlp_shape(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 3))) is None
    assert mlp_shape(nn.Sequential(nn.Conv1d(1, 2, 3))) is None
    assert mlp_shape(nn.Linear(4, 3)) is None


def test_batched_studies_match_serial_ones(tmp_path):
    kw = dict(budget=3, trials=10, seed=5)
    batched = nasforge.search(out=tmp_path / "b", executor="batched", **kw)
    serial = nasforge.search(out=tmp_path / "s", executor="serial", **kw)
    assert [t.arch for t in batched.trials] == [t.arch for t in serial.trials]
    for b, s in zip(batched.trials, serial.trials):
        assert b.loss == pytest.approx(s.loss, **STUDY_LOSS)
    hb = dict(scheduler={"name": "hyperband", "args": {"eta": 3}}, budget=9, seed=1)
    b = nasforge.search(out=tmp_path / "hb_b", executor="batched", **hb)
    s = nasforge.search(out=tmp_path / "hb_s", executor="serial", **hb)
    assert [(t.arch, t.state, len(t.rungs)) for t in b.trials] == [(t.arch, t.state, len(t.rungs)) for t in s.trials]
    for x, y in zip(b.trials, s.trials):
        assert x.loss == pytest.approx(y.loss, **STUDY_LOSS)


def test_lost_checkpoints_are_trained_again(tmp_path, monkeypatch):
    """Checkpoints are a cache: a crash that loses them (kill -9 before a flush) costs compute,
    not results. Successive halving is stopped after its first rung with nothing on disk; the
    resumed study trains the promoted trials from scratch and ends as an uninterrupted one."""
    from nasforge.execution.batching import BatchingExecutor

    sh = dict(scheduler={"name": "successive_halving", "args": {"n_configs": 8, "rungs": [2, 2], "eta": 2}},
              budget=4, seed=3, executor="batched")
    reference = nasforge.search(out=tmp_path / "ref", **sh)

    monkeypatch.setattr(BatchingExecutor, "flush", lambda self: None)  # as if killed before any write

    def crash_after_first_rung(study, trial):
        if sum(t.state.value == "pruned" for t in study.trials) == 4:  # rung 0 is decided
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        nasforge.search(out=tmp_path / "cut", on_trial_end=crash_after_first_rung, **sh)
    assert not list(tmp_path.glob("cut/checkpoints/*.pt"))  # nothing reached the disk
    monkeypatch.undo()
    resumed = nasforge.resume(tmp_path / "cut")
    assert [(t.arch, t.state, len(t.rungs)) for t in resumed.trials] == [(t.arch, t.state, len(t.rungs)) for t in reference.trials]
    for a, b in zip(resumed.trials, reference.trials):
        assert a.loss == pytest.approx(b.loss, **STUDY_LOSS)
    best = resumed.best
    (tmp_path / "cut" / best.checkpoint).unlink()  # lost again: the best model is trained again on demand
    model = resumed.best_model()
    data = load_dataset("iris")
    with torch.no_grad():
        loss = nn.functional.cross_entropy(model(data.x_val), data.y_val).item()
    assert loss == pytest.approx(best.loss, **STUDY_LOSS)


def test_promoted_trials_reuse_their_model_objects(tmp_path, monkeypatch):
    """A promoted trial loads its state into the model object of its last job instead of building
    its model again; the results equal building it again for every job."""
    from nasforge.execution import batching
    from nasforge.space.space import Space as SpaceClass

    sh = dict(scheduler={"name": "successive_halving", "args": {"n_configs": 8, "rungs": [2, 2], "eta": 2}},
              budget=4, seed=3, executor="batched", workers=1)  # one process keeps every model
    dry_builds = []
    real_dry_build = SpaceClass.dry_build
    monkeypatch.setattr(SpaceClass, "dry_build", lambda self, arch: dry_builds.append(arch) or real_dry_build(self, arch))
    kept = nasforge.search(out=tmp_path / "kept", **sh)
    assert dry_builds == []  # all four promotions reused their model

    monkeypatch.setattr(batching, "_MODELS_KEPT_BYTES", 0)
    rebuilt = nasforge.search(out=tmp_path / "rebuilt", **sh)
    assert len(dry_builds) == 4  # each promotion built its model again
    assert [(t.arch, t.state, t.loss) for t in kept.trials] == [(t.arch, t.state, t.loss) for t in rebuilt.trials]


def test_kept_models_stay_within_their_byte_budget():
    from nasforge.execution.batching import KeptModels

    kept = KeptModels(max_bytes=3 * (4 * 4 + 4) * 4)  # three Linear(4, 4)s
    models = [nn.Linear(4, 4) for _ in range(5)]
    for i, m in enumerate(models):
        kept.keep(i, m)
    assert kept.take(0) is None and kept.take(1) is None  # the oldest went first
    assert kept.take(3) is models[3] and kept.take(3) is None  # taken means no longer kept
    kept.keep(9, nn.Linear(100, 100))  # larger than the whole budget: not kept, nothing dropped
    assert kept.take(9) is None and kept.take(2) is models[2] and kept.take(4) is models[4]


def small_cnn(arch, n_out: int = 10):
    """A tiny CNN for 8x8 digits: identical architectures train together under vmap."""
    channels = arch.categorical("channels", [4, 8])
    return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * channels, n_out))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_identical_architectures_train_together_under_vmap(optimizer):
    data = load_dataset("digits")
    space = Space(small_cnn, data.context())
    trainer = SupervisedTrainer(optimizer=optimizer, batch_size=128, device="cpu")
    arch = {"channels": 4}
    cands, _ = together(space, data, trainer, [(arch, seed, 1.5, None) for seed in range(4)])
    assert all(c.shape is None for c in cands)  # not MLPs: the vmap path
    for seed, cand in enumerate(cands):
        ref = alone(space, data, trainer, arch, seed, 1.5)
        assert cand.error is None
        assert [p["epoch"] for p in cand.result.curve] == [p["epoch"] for p in ref.curve]
        for a, b in zip(cand.result.curve, ref.curve):
            assert a["val_loss"] == pytest.approx(b["val_loss"], **LOSS)
        continued = alone(space, data, trainer, arch, 99, 3, cand.result.state)  # the state continues alone
        assert continued.metrics["val_loss"] == pytest.approx(alone(space, data, trainer, arch, seed, 3).metrics["val_loss"], **LOSS)


def test_a_study_of_repeated_cnns_runs_batched_as_serial(tmp_path):
    """Random search over a two-architecture CNN space, repeats allowed (each a new seed): the
    repeated architectures train under vmap."""
    kw = dict(space=small_cnn, data="digits", budget=1, trials=6, seed=0, trainer={"batch_size": 128}, repeats=True,
              strategy={"name": "random", "args": {"replace": True}})
    batched = nasforge.search(out=tmp_path / "b", executor="batched", **kw)
    serial = nasforge.search(out=tmp_path / "s", executor="serial", **kw)
    archs = [t.arch["channels"] for t in batched.trials]
    assert len(set(archs)) < len(archs)  # repeats, so the vmap path ran
    for b, s in zip(batched.trials, serial.trials):
        assert b.arch == s.arch and b.loss == pytest.approx(s.loss, **STUDY_LOSS)


@pytest.mark.parametrize("max_bytes", [1, 200, 1 << 20])
def test_batches_gathered_in_chunks_equal_indexing_each_step(max_bytes):
    from nasforge.engine.population import _Batches

    x, y = torch.randn(23, 3, 2), torch.arange(23)
    orders = torch.stack([torch.randperm(23, generator=torch.Generator().manual_seed(s)) for s in range(4)])
    batches = _Batches(x, y, 5, max_bytes=max_bytes)
    for position in [10, 15, 20, 0, 5, 10, 15, 20]:  # resumed mid-epoch, then a new epoch
        if position == 0:
            orders = orders.flip(1).clone()
        got_x, got_y = batches.at(orders, position)
        idx = orders[:, position:position + 5]
        assert torch.equal(got_x, x[idx]) and torch.equal(got_y, y[idx])


def test_grouping_splits_by_width_where_padding_costs_more_than_a_group():
    """One depth, narrow and wide candidates mixed: with small batches a group's fixed cost
    outweighs padding the narrow ones (one group); with large batches the padded arithmetic
    does, and the narrow ones form a group of their own."""
    from nasforge.engine import grouping

    def net(width):
        return mlp_shape(nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)))

    shapes = [net(w) for w in (2, 100, 3, 96, 4, 98, 2, 100)]
    assert len(grouping.mlp_groups(shapes, batch=1, max_group=32)) == 1
    groups = grouping.mlp_groups(shapes, batch=512, max_group=32)
    assert sorted(sorted(shapes[i].linears[0].out_features for i in g) for g in groups) == [[2, 2, 3, 4], [96, 98, 100, 100]]
