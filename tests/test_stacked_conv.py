"""NAS-RL CNNs of one conv key, stacked as grouped convolutions, must train as each one alone.

Widths, kernels and skip sets mix in one group; states move between the stacked group and the
one-by-one trainer both ways; padded weights stay exactly zero; candidates whose feature-map
sizes differ never share a group; a study trains the same batched as serial."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nasforge
from nasforge.datasets import load_dataset
from nasforge.engine import conv_grouping
from nasforge.engine import population as population_module
from nasforge.engine.conv_grouping import conv_groups, step_cost
from nasforge.engine.conv_layout import conv_shape
from nasforge.engine.population import PopulationTrainer
from nasforge.engine.stacked_conv import StackedConvNet
from nasforge.space import Space
from nasforge.spaces.nasrl import nasrl_cnn
from nasforge.train.trainer import SupervisedTrainer
from rounding import LOSS, assert_trains_as_alone

STUDY_LOSS = dict(rel=1e-3)  # whole studies: more epochs, and rounding compounds


@pytest.fixture(scope="module")
def mnist1d():
    return load_dataset("mnist1d")


@pytest.fixture(scope="module")
def diabetes():
    return load_dataset("diabetes")  # regression, 10 features: a 1-D input of length 10


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def layer(i, skip, kernel, filters, stride, dims):
    arch = {f"layer_{i}/stride": stride, f"layer_{i}/filters": filters}
    if i:
        arch[f"layer_{i}/skip"] = [f"layer_{j}" for j in skip]
    if dims == 1:
        arch[f"layer_{i}/kernel"] = kernel
    else:
        arch[f"layer_{i}/kernel_h"], arch[f"layer_{i}/kernel_w"] = kernel
    return arch


def mixed_archs(dims):
    """Four 3-layer candidates of one key (strides 1, 2, 1; layer 2 reads a 40-long (or 8x8)
    map): widths, kernels and skip sets differ; layer 1 reads the image in one of them, and the
    classifier reads one layer in some and two of different sizes in others."""
    k = (lambda a, b: a) if dims == 1 else (lambda a, b: (a, b))
    specs = [  # per layer: (skip, kernel, filters)
        [([], k(3, 5), 4), ([0], k(5, 1), 8), ([0, 1], k(3, 3), 4)],
        [([], k(1, 3), 8), ([], k(3, 7), 4), ([0], k(7, 1), 8)],
        [([], k(7, 7), 8), ([0], k(1, 1), 8), ([0, 1], k(5, 3), 8)],
        [([], k(5, 5), 4), ([0], k(5, 5), 4), ([0], k(5, 5), 4)],
    ]
    strides = [1, 2, 1]
    return [{key: v for i, (skip, kern, f) in enumerate(spec) for key, v in layer(i, skip, kern, f, strides[i], dims).items()}
            for spec in specs]


def space_for(data):
    return Space(nasrl_cnn, {**data.context(), "n_layers": 3, "filters": (4, 8)})


def alone(space, data, trainer, arch, seed, budget, state=None, edit=lambda model: model):
    torch.manual_seed(seed)
    return trainer(edit(space.build(arch)), data, budget, state)


def together(space, data, trainer, archs, budget, states=None, one_group=True):
    pop = PopulationTrainer(trainer)
    cands = []
    for i, arch in enumerate(archs):
        torch.manual_seed(i)
        cands.append(pop.candidate(space.build(arch), budget, states[i] if states else None))
    assert len({pop.key(c, data) for c in cands}) == 1
    if one_group:
        assert len(pop._conv_groups(cands)) == 1
    pop.train(cands, data)
    for cand in cands:
        assert cand.error is None
    return [c.result for c in cands]


@pytest.fixture
def one_group(monkeypatch):
    """Every merge 'saves': the whole key trains as one group."""
    monkeypatch.setattr(conv_grouping, "step_cost", lambda shapes, batch: 1.0 if shapes else 0.0)


ADAM_LR = 0.003
"""At lr 0.01 Adam turns sub-resolution gradients of these tiny BatchNorm nets into steps of lr
(see tests/rounding.py): one-ulp nudges alone then move a candidate's validation loss by up to
1.6e-2 after 1.3 epochs, and elementwise weight checks become a lottery. At 0.003 stacked and
alone agree to ~1e-7 in loss (5e-4 in the weights of one candidate)."""


@pytest.mark.parametrize("name,optimizer,lr,decay", [("mnist1d", "adam", ADAM_LR, 0.0), ("mnist1d", "sgd", 0.01, 0.01),
                                                     ("digits", "adamw", ADAM_LR, 0.01), ("diabetes", "adam", ADAM_LR, 0.0)])
def test_a_mixed_group_trains_as_each_alone(request, one_group, name, optimizer, lr, decay):
    data = request.getfixturevalue(name)
    space = space_for(data)
    archs = mixed_archs(2 if name == "digits" else 1)
    trainer = SupervisedTrainer(optimizer=optimizer, lr=lr, batch_size=64, weight_decay=decay, device="cpu")
    budget = 1.3  # an epoch's end and a stop mid-epoch
    got = together(space, data, trainer, archs, budget)
    for i, (arch, result) in enumerate(zip(archs, got)):
        ref = alone(space, data, trainer, arch, i, budget)
        assert_trains_as_alone(result, ref, lambda edit, a=arch, s=i: alone(space, data, trainer, a, s, budget, edit=edit))
        for key in ("steps", "position", "seen"):
            assert result.state[key] == ref.state[key]
        for key in [k for k in ref.state["model"] if k.endswith("num_batches_tracked")]:
            assert int(result.state["model"][key]) == int(ref.state["model"][key])


def test_states_move_between_the_group_and_the_one_by_one_trainer(mnist1d, one_group):
    """Alone 0.4 epochs -> stacked to 0.9; stacked 0.4 -> alone to 0.9: both as alone all the way
    (Adam's moments, the step count, BatchNorm's running statistics and the data order carry over)."""
    space, archs = space_for(mnist1d), mixed_archs(1)
    trainer = SupervisedTrainer(optimizer="adam", lr=ADAM_LR, batch_size=64, device="cpu")
    first_alone = [alone(space, mnist1d, trainer, a, i, 0.4) for i, a in enumerate(archs)]
    then_stacked = together(space, mnist1d, trainer, archs, 0.9, [r.state for r in first_alone])
    first_stacked = together(space, mnist1d, trainer, archs, 0.4)
    for i, arch in enumerate(archs):
        ref = alone(space, mnist1d, trainer, arch, i, 0.9, first_alone[i].state)
        assert_trains_as_alone(then_stacked[i], ref, lambda edit, a=arch, s=i: alone(
            space, mnist1d, trainer, a, s, 0.9, alone(space, mnist1d, trainer, a, s, 0.4, edit=edit).state))
        continued = alone(space, mnist1d, trainer, arch, 99, 0.9, first_stacked[i].state)
        assert_trains_as_alone(continued, ref, lambda edit, a=arch, s=i: alone(
            space, mnist1d, trainer, a, s, 0.9, alone(space, mnist1d, trainer, a, s, 0.4, edit=edit).state))
        assert set(continued.state["optimizer"]["state"]) == set(ref.state["optimizer"]["state"])


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_padded_weights_stay_exactly_zero(mnist1d, optimizer):
    space, archs = space_for(mnist1d), mixed_archs(1)
    trainer = SupervisedTrainer(optimizer=optimizer, lr=0.05, weight_decay=0.1, device="cpu")
    models = []
    for i, arch in enumerate(archs):
        torch.manual_seed(i)
        models.append(space.build(arch))
    net = StackedConvNet(trainer, models, [conv_shape(m) for m in models], [None] * len(models), mnist1d)
    padded = net.mask == 0
    assert padded.sum() > 0.3 * padded.numel()  # widths, kernels and inputs really are padded
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        rows = torch.randint(0, len(mnist1d.x_train), (len(models), 32), generator=gen)
        net.step(mnist1d.x_train[rows], mnist1d.y_train[rows])
        assert bool((net.flat.detach()[padded] == 0).all())
        assert bool((net.flat.grad[padded] == 0).all())
    assert bool((net.flat.detach()[~padded] != 0).any())


def test_candidates_whose_sizes_differ_are_never_stacked(mnist1d):
    space = space_for(mnist1d)
    base = mixed_archs(1)[0]
    other_stride = {**base, "layer_1/stride": 1}  # layer 1's output: 40 long, not 20
    other_skip = {**base, "layer_2/skip": ["layer_1"]}  # layer 2 reads a 20-long map, not 40
    models = [space.build(a) for a in (base, other_stride, other_skip)]
    shapes = [conv_shape(m) for m in models]
    assert len({s.key() for s in shapes}) == 3
    pop = PopulationTrainer(SupervisedTrainer(device="cpu"))
    cands = [pop.candidate(m, 1, None) for m in models]
    assert len({pop.key(c, mnist1d) for c in cands}) == 3
    assert not pop.pays(pop.key(cands[0], mnist1d), 1)  # a lone candidate of its key goes one by one
    with pytest.raises(ValueError, match="sizes differ"):
        StackedConvNet(pop.trainer, models[:2], shapes[:2], [None, None], mnist1d)


def test_the_cost_model_groups_only_where_a_merge_saves(mnist1d, digits):
    """Groups are a local optimum of the fitted step cost: every merge made saves, no further
    merge would; identical candidates of a 1-D key share a group; a tiny candidate does not pay
    for a large one's 7-wide kernels and widths; 2-D candidates, where stacking saves no fixed
    cost on this kind of CPU, stay single."""
    space = Space(nasrl_cnn, {**mnist1d.context(), "n_layers": 3, "filters": (4, 64)})
    small = {**mixed_archs(1)[3], **layer(0, [], 1, 4, 1, 1), **layer(1, [0], 1, 4, 2, 1), **layer(2, [0], 1, 4, 1, 1)}
    large = {**small, **layer(0, [], 7, 64, 1, 1), **layer(1, [0], 7, 64, 2, 1), **layer(2, [0, 1], 7, 64, 1, 1)}
    shapes = [conv_shape(space.build(a)) for a in (small, small, small, large)]
    groups = conv_groups(shapes, 32, 32)
    assert groups == [[0, 1, 2], [3]]
    for g in groups:
        for h in groups:
            if g < h:
                merged = step_cost([shapes[i] for i in g + h], 32)
                assert merged >= step_cost([shapes[i] for i in g], 32) + step_cost([shapes[i] for i in h], 32)
    shapes_2d = [conv_shape(space_for(digits).build(a)) for a in mixed_archs(2)]
    assert conv_groups(shapes_2d, 32, 32) == [[0], [1], [2], [3]]


def test_a_study_of_nasrl_cnns_runs_batched_as_serial(tmp_path, monkeypatch):
    """Successive halving over NAS-RL CNNs on MNIST-1D: the batched study stacks CNNs (counted)
    and makes the serial study's decisions with its losses."""
    stacked: list[tuple[int, bool]] = []  # (candidates, continued from checkpoints)

    class Counting(StackedConvNet):
        def __init__(self, trainer, models, shapes, states, data):
            stacked.append((len(models), states[0] is not None))
            super().__init__(trainer, models, shapes, states, data)

    monkeypatch.setattr(population_module, "StackedConvNet", Counting)
    kw = dict(space="nasrl", data="mnist1d", strategy="random", budget=0.5, seed=3,
              space_args={"n_layers": 2, "filters": [4, 8], "kernels": [1, 3], "strides": [1]},
              scheduler={"name": "successive_halving", "args": {"n_configs": 9, "eta": 3, "rungs": [0.1, 0.15, 0.25]}},
              trainer={"batch_size": 64})
    batched = nasforge.search(out=tmp_path / "b", executor="batched", **kw)
    serial = nasforge.search(out=tmp_path / "s", executor="serial", **kw)
    assert stacked and max(stacked)[0] > 1
    assert any(continued for _, continued in stacked), stacked  # a promoted rung stacked from checkpoints
    assert [(t.arch, t.state, len(t.rungs)) for t in batched.trials] == [(t.arch, t.state, len(t.rungs)) for t in serial.trials]
    for b, s in zip(batched.trials, serial.trials):
        assert b.loss == pytest.approx(s.loss, **STUDY_LOSS)


def test_a_diverging_candidate_fails_alone(mnist1d, one_group):
    """Candidate 1's classifier starts at 1e30: its loss is not finite, it fails, and the others
    (whose weights are other slices of the same stacked tensors) train as alone."""
    space, archs = space_for(mnist1d), mixed_archs(1)
    trainer = SupervisedTrainer(optimizer="sgd", lr=0.01, batch_size=64, device="cpu")
    pop = PopulationTrainer(trainer)
    cands = []
    for i, arch in enumerate(archs):
        torch.manual_seed(i)
        model = space.build(arch)
        if i == 1:
            with torch.no_grad():
                model.classifier.weight.fill_(1e30)
        cands.append(pop.candidate(model, 1.3, None))
    assert len(pop._conv_groups(cands)) == 1
    pop.train(cands, mnist1d)
    assert cands[1].result is None and "FloatingPointError" in cands[1].error
    for i in (0, 2, 3):
        ref = alone(space, mnist1d, trainer, archs[i], i, 1.3)
        assert cands[i].error is None
        for a, b in zip(cands[i].result.curve, ref.curve):
            assert a["val_loss"] == pytest.approx(b["val_loss"], **LOSS)


def test_a_candidate_the_grouping_leaves_alone_trains_exactly_as_one_by_one(digits):
    """2-D candidates stay single (the cost model): each then trains through the one-by-one
    trainer's own loop, bitwise as the serial executor would."""
    space, archs = space_for(digits), mixed_archs(2)
    trainer = SupervisedTrainer(optimizer="adam", lr=0.01, batch_size=64, device="cpu")
    got = together(space, digits, trainer, archs[:2], 0.5, one_group=False)
    for i, result in enumerate(got):
        ref = alone(space, digits, trainer, archs[i], i, 0.5)
        assert [p["val_loss"] for p in result.curve] == [p["val_loss"] for p in ref.curve]
        for k, v in ref.state["model"].items():
            assert torch.equal(result.state["model"][k], v), k
