from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import nested_space
from nasforge.errors import SpaceError
from nasforge.space import Encoder, FixedArch, IntDomain, RecordingArch, Space
from nasforge.spaces.mlp import mlp


def mlp_space() -> Space:
    return Space(mlp, {"n_in": 4, "n_out": 3, "input_shape": (4,)})


def test_fixed_mode_builds_exactly_the_architecture():
    model = mlp_space().build({"depth": 2, "width_0": 7, "width_1": 5, "activation": "tanh"})
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 7), (7, 5), (5, 3)]
    assert any(isinstance(m, nn.Tanh) for m in model)


@pytest.mark.parametrize("arch, message", [
    ({"depth": 2, "width_0": 7, "activation": "tanh"}, "no value for decision 'width_1'"),
    ({"depth": 2, "width_0": 7, "width_1": 500, "activation": "tanh"}, "Invalid value 500 for decision 'width_1': allowed int in [2, 100]"),
    ({"depth": 1, "width_0": 7, "activation": "sigmoid"}, "allowed one of ['relu', 'tanh', 'gelu']"),
    ({"depth": 1, "width_0": 7, "width_1": 9, "activation": "relu"}, "never asked: 'width_1'"),
    ({"depth": 1.5, "width_0": 7, "activation": "relu"}, "decision 'depth'"),
])
def test_fixed_mode_errors_name_the_label_and_domain(arch, message):
    with pytest.raises(SpaceError) as err:
        mlp_space().build(arch)
    assert message in str(err.value)


def test_recording_finds_conditional_widths():
    schema = mlp_space().schema
    assert schema.labels == ["depth"] + [f"width_{i}" for i in range(6)] + ["activation"]
    assert schema["width_0"].conditions == ()
    cond = schema["width_3"].conditions
    assert len(cond) == 1 and cond[0].parent == "depth" and list(cond[0].values) == [4, 5, 6]
    assert schema.exact
    # 3 activations x sum over depth d of 99^d widths
    assert schema.size() == 3 * sum(99 ** d for d in range(1, 7))


def test_recording_returns_defaults_and_overrides():
    arch = RecordingArch({"depth": 3})
    mlp(arch, 4, 3)
    assert arch.values["depth"] == 3 and arch.values["width_0"] == 2 and arch.values["activation"] == "relu"
    assert isinstance(arch.domains["width_2"], IntDomain)


def test_nested_conditions_in_recording_and_fixed_mode(rng):
    space = Space(nested_space)
    schema = space.schema
    assert schema.exact
    units = schema["units_1"]
    parents = {c.parent: c for c in units.conditions}
    assert set(parents) == {"n_blocks", "kind_1"}
    assert list(parents["kind_1"].values) == ["linear"]
    act = {c.parent: c for c in schema["act_2"].conditions}
    assert list(act["kind_2"].values) == ["residual"]
    kind = {c.parent: c for c in schema["kind_2"].conditions}
    assert list(kind["n_blocks"].values) == [3]  # act_2 needs kind_2 active, so n_blocks == 3 too
    active = [d.label for d in schema.active({"n_blocks": 2, "kind_0": "linear", "kind_2": "residual"})]
    assert "act_2" not in active and "kind_2" not in active
    for _ in range(50):  # every schema sample is exactly what the space asks for
        arch = schema.sample(rng)
        assert space.canonical(arch, rng) == arch
        space.build(arch)


def test_same_label_twice():
    def shared(arch):
        a = arch.int("w", 1, 4)
        b = arch.int("w", 1, 4)  # same domain: one shared decision
        assert a == b
        return nn.Linear(a, b)

    def clash(arch):
        arch.int("w", 1, 4)
        arch.int("w", 1, 8)
        return nn.Linear(1, 1)

    assert Space(shared).schema.labels == ["w"]
    with pytest.raises(SpaceError, match="asked twice with different domains"):
        clash(FixedArch({"w": 2}))


def test_inputs_and_float_decisions(rng):
    def space(arch):
        picked = arch.inputs("skip", ["a", "b", "c", "d"], k=2)
        any_ = arch.inputs("any", ["x", "y"], k=None)
        lr = arch.float("scale", 1e-3, 1.0, log=True)
        assert len(picked) == 2 and 1e-3 <= lr <= 1.0 and len(any_) <= 2
        return nn.Identity()

    s = Space(space)
    for _ in range(20):
        arch = s.sample(rng)
        assert s.canonical(arch, rng) == arch
    with pytest.raises(SpaceError, match="Invalid value"):
        s.build({"skip": ["b", "a"], "any": [], "scale": 0.1})  # not in candidate order
    enc = Encoder(s.schema)
    arch = {"skip": ["b", "d"], "any": ["y"], "scale": 0.01}
    vec = enc.encode(arch)
    assert vec.shape == (enc.dim,) == (4 + 2 + 1,)
    decoded = enc.decode(vec)
    assert decoded["skip"] == ["b", "d"] and decoded["any"] == ["y"]
    assert decoded["scale"] == pytest.approx(0.01)


def test_encoder_pads_absent_widths_with_zero_and_round_trips(rng):
    schema = mlp_space().schema
    enc = Encoder(schema)
    arch = {"depth": 2, "width_0": 2, "width_1": 100, "activation": "gelu"}
    vec = enc.encode(arch)
    names = enc.column_names()
    assert dict(zip(names, vec))["width_0"] == 0.0 and dict(zip(names, vec))["width_1"] == 1.0
    assert all(dict(zip(names, vec))[f"width_{i}"] == 0.0 for i in range(2, 6))
    assert all(dict(zip(names, vec))[f"width_{i}?"] == 0.0 for i in range(2, 6))
    assert dict(zip(names, vec))["activation=gelu"] == 1.0
    for _ in range(100):
        a = schema.sample(rng)
        assert enc.decode(enc.encode(a)) == a


def test_bad_domains_are_rejected_with_clear_messages():
    with pytest.raises(SpaceError, match="low=5 > high=1"):
        IntDomain(5, 1)
    with pytest.raises(SpaceError, match="not a multiple of step"):
        IntDomain(0, 5, step=2)
    with pytest.raises(SpaceError, match="Duplicate categorical option"):
        FixedArch({"a": "x"}).categorical("a", ["x", "x"])
    with pytest.raises(SpaceError, match="options must be a list"):
        FixedArch({"a": "x"}).categorical("a", "xy")
    with pytest.raises(SpaceError, match="returned int"):
        Space(lambda arch: arch.int("a", 1, 2)).schema


def test_canonical_fills_missing_and_drops_inactive(rng):
    space = mlp_space()
    arch = space.canonical({"depth": 1, "width_0": 9, "width_4": 3, "activation": "relu"}, rng)
    assert arch == {"depth": 1, "width_0": 9, "activation": "relu"}
    grown = space.canonical({"depth": 3, "width_0": 9, "activation": "relu"}, rng)
    assert set(grown) == {"depth", "width_0", "width_1", "width_2", "activation"} and grown["width_0"] == 9


def test_build_uses_no_meta_tensors():
    model = mlp_space().build({"depth": 1, "width_0": 3, "activation": "relu"})
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert model(torch.zeros(2, 4)).shape == (2, 3)


def test_dry_runs_skip_initialisation_only_in_their_own_thread():
    import threading

    from nasforge.space.dry import dry_run

    def init_is_random() -> bool:
        torch.manual_seed(0)
        return bool(nn.Linear(50, 50).weight.abs().sum() > 0) and not torch.equal(
            nn.Linear(50, 50).weight, nn.Linear(50, 50).weight)

    other: list[bool] = []
    with dry_run():
        weight = torch.zeros(50, 50)
        assert torch.nn.init.kaiming_uniform_(weight) is weight and not weight.any()  # skipped here
        thread = threading.Thread(target=lambda: other.append(init_is_random()))
        thread.start()
        thread.join()
    assert other == [True]  # another thread initialises as usual, even during the dry run
    assert init_is_random()  # and so does this one after it
    fixed = torch.zeros(4, 4)
    torch.nn.init.uniform_(fixed, 1.0, 2.0)
    assert bool((fixed >= 1).all())
