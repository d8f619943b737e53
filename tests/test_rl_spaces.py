"""The built-in spaces of the RL methods: NAS-RL's layer-wise CNN and MnasNet's factorised blocks."""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import nasforge
from nasforge.errors import SpaceError
from nasforge.space import CategoricalDomain, InputsDomain, IntDomain, Space
from nasforge.spaces import SPACES
from nasforge.spaces.conv_utils import conv_kit, pad_cat
from nasforge.spaces.mnas import OPS, mnas, reduction_places
from nasforge.spaces.nasrl import nasrl_cnn

SHAPES = [(1, 28, 28), (64,), (40,)]  # mnist5k, digits, mnist1d
SPACE_FNS = {"nasrl": nasrl_cnn, "mnas": mnas}
PREFIX = {"nasrl": re.compile(r"^layer_\d+/(skip|kernel|kernel_h|kernel_w|stride|filters)$"),
          "mnas": re.compile(r"^block_[0-6]/(op|kernel|se|skip|filters|layers)$")}


def make_space(fn, shape, **args) -> Space:
    context = {"n_in": math.prod(shape), "n_out": 10, "input_shape": shape, "task": "classification", "n_classes": 10}
    return Space(fn, context, args=args)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registered():
    assert SPACES.get("nasrl") is nasrl_cnn and SPACES.get("mnas") is mnas


@pytest.mark.parametrize("shape, expected", [((1, 28, 28), (1, 28, 28)), ((64,), (1, 8, 8)), ((40,), (1, 40)),
                                             ((784,), (1, 28, 28)), ((1, 40), (1, 40)), ((4,), (1, 4))])
def test_conv_kit_reads_the_input_shape(shape, expected):
    kit = conv_kit(shape)
    assert kit.shape == expected
    assert kit.conv is (nn.Conv2d if len(expected) == 3 else nn.Conv1d)


@pytest.mark.parametrize("name", SPACE_FNS)
@pytest.mark.parametrize("shape", SHAPES)
def test_schema_is_small_tokens_grouped_by_layer(name, shape):
    schema = make_space(SPACE_FNS[name], shape).schema
    assert schema.exact and schema.labels
    for d in schema:
        assert PREFIX[name].match(d.label), d.label
        assert isinstance(d.domain, (CategoricalDomain, IntDomain, InputsDomain)), d.label
        assert isinstance(d.domain, InputsDomain) == d.label.endswith("/skip") or name == "mnas", d.label
        assert d.domain.size <= 16, (d.label, d.domain.describe())
        assert not d.conditions  # every decision is always asked: a fixed-length token sequence
    groups = [d.label.split("/")[0] for d in schema]
    assert groups == sorted(groups, key=lambda g: int(g.split("_")[1]))  # one layer's tokens together
    kernel_labels = {d.label.split("/")[1] for d in schema} & {"kernel", "kernel_h", "kernel_w"}
    if name == "nasrl":
        assert kernel_labels == ({"kernel"} if len(conv_kit(shape).spatial) == 1 else {"kernel_h", "kernel_w"})


@pytest.mark.parametrize("name", SPACE_FNS)
@pytest.mark.parametrize("shape", SHAPES)
def test_random_architectures_build_and_run(name, shape):
    space = make_space(SPACE_FNS[name], shape)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    for _ in range(20):
        arch = space.schema.sample(rng)
        assert space.canonical(arch, rng) == arch
        model = space.build(arch)
        out = model(torch.randn(2, *shape))
        assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_nasrl_skip_candidates():
    schema = make_space(nasrl_cnn, (1, 28, 28)).schema
    assert "layer_0/skip" not in schema.labels  # layer 0 always reads the image: no decision
    for i in range(1, 4):
        domain = schema[f"layer_{i}/skip"].domain
        assert isinstance(domain, InputsDomain)
        assert domain.candidates == tuple(f"layer_{j}" for j in range(i)) and domain.k is None
    assert [d.label for d in schema if d.label.startswith("layer_2/")] == [
        "layer_2/skip", "layer_2/kernel_h", "layer_2/kernel_w", "layer_2/stride", "layer_2/filters"]


def _nasrl_arch(shape, skips, strides, filters=8):
    arch: dict[str, Any] = {}
    for i, (skip, stride) in enumerate(zip(skips, strides)):
        if i:
            arch[f"layer_{i}/skip"] = skip
        for k in (["kernel"] if len(shape) == 1 else ["kernel_h", "kernel_w"]):
            arch[f"layer_{i}/{k}"] = 3
        arch[f"layer_{i}/stride"] = stride
        arch[f"layer_{i}/filters"] = filters
    return arch


@pytest.mark.parametrize("shape, full, half", [((1, 28, 28), (28, 28), (14, 14)), ((40,), (40,), (20,))])
def test_nasrl_zero_pads_smaller_maps_before_concatenating(shape, full, half):
    # layer 1 halves layer 0's map; layer 2 reads both; layer 3 reads the image with stride 2
    arch = _nasrl_arch(shape, [[], ["layer_0"], ["layer_0", "layer_1"], []], [1, 2, 1, 2])
    model: Any = make_space(nasrl_cnn, shape).build(arch)
    assert model.sources == [[], [0], [0, 1], []] and model.final == [2, 3]
    assert model.classifier.in_features == 16
    assert model.layers[3][0].in_channels == 1  # no inputs: the image
    seen: dict[str, torch.Tensor] = {}
    model.layers[1].register_forward_hook(lambda m, i, out: seen.update(layer_1=out))
    model.layers[2].register_forward_pre_hook(lambda m, inputs: seen.update(layer_2_in=inputs[0]))
    assert model(torch.randn(2, *shape)).shape == (2, 10)
    x = seen["layer_2_in"]
    assert x.shape == (2, 16, *full)
    from_layer_1 = x[:, 8:]
    inside = from_layer_1[(slice(None), slice(None), *(slice(0, h) for h in half))]
    assert torch.equal(inside, seen["layer_1"])  # the map itself, at the top left
    mask = torch.ones(full, dtype=torch.bool)
    mask[tuple(slice(0, h) for h in half)] = False
    assert mask.any() and torch.all(from_layer_1[..., mask] == 0)  # bottom / right padding is zero
    assert seen["layer_1"].abs().sum() > 0


def test_pad_cat_pads_every_dimension_at_the_end():
    a, b = torch.ones(1, 2, 5, 3), torch.ones(1, 1, 3, 4)
    out = pad_cat([a, b])
    assert out.shape == (1, 3, 5, 4)
    assert out[:, :2, :, 3].eq(0).all() and out[:, 2, 3:, :].eq(0).all() and out[:, 2, :3, :].eq(1).all()


def test_nasrl_stride_never_shrinks_below_one():
    arch = _nasrl_arch((1, 28, 28), [[], [], [], []], [2, 2, 2, 2])
    arch.update({f"layer_{i}/skip": [f"layer_{i - 1}"] for i in range(1, 4)})
    space = make_space(nasrl_cnn, (1, 28, 28), n_layers=4)
    assert space.build(arch)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    tiny = make_space(nasrl_cnn, (1, 2, 2), n_layers=4)
    assert tiny.build(arch)(torch.randn(2, 1, 2, 2)).shape == (2, 10)


def _mnas_arch(op="mbconv6", skip="identity", kernel=3, se=0.0, filters=1.0, layers=0):
    arch: dict[str, Any] = {}
    for i in range(7):
        arch.update({f"block_{i}/op": op, f"block_{i}/kernel": kernel, f"block_{i}/se": se, f"block_{i}/skip": skip,
                     f"block_{i}/filters": filters, f"block_{i}/layers": layers})
    return arch


def test_mnas_identity_skip_only_where_shapes_allow():
    """``identity`` on a stride-2 or channel-changing layer falls back to no shortcut; ``pool``
    pools (and projects) there; both are the identity where the shapes already match."""
    space = make_space(mnas, (1, 28, 28))
    assert reduction_places((28, 28)) == {"block_1", "block_2", "block_3", "block_5"}
    model: Any = space.build(_mnas_arch(skip="identity", layers=1))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model.block_1[0].body[1][0].stride == (2, 2) and model.block_1[0].shortcut is None  # stride 2
    assert model.block_0[0].shortcut is None  # stride 1, but 16 -> 8 channels
    assert isinstance(model.block_1[1].shortcut, nn.Identity)  # same shape: the identity residual
    assert model.block_4[0].shortcut is None  # 24 -> 32 channels at stride 1
    pooled: Any = space.build(_mnas_arch(skip="pool", layers=1))
    assert pooled(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    kinds = [type(m).__name__ for m in pooled.block_1[0].shortcut.modules()]
    assert "AvgPool2d" in kinds and "Conv2d" in kinds and isinstance(pooled.block_1[1].shortcut, nn.Identity)
    none: Any = space.build(_mnas_arch(skip="none", layers=1))
    assert all(layer.shortcut is None for i in range(7) for layer in getattr(none, f"block_{i}"))


@pytest.mark.parametrize("shape, places", [((1, 28, 28), 4), ((64,), 2), ((40,), 5), ((1, 1, 1), 0)])
def test_mnas_reductions_follow_the_input_size(shape, places):
    kit = conv_kit(shape)
    assert len(reduction_places(kit.spatial)) == places
    model: Any = make_space(mnas, shape).build(_mnas_arch(op="dwconv"))
    feats: dict[str, torch.Tensor] = {}
    model.head.register_forward_pre_hook(lambda m, inputs: feats.update(x=inputs[0]))
    assert model(torch.randn(2, *shape)).shape == (2, 10)
    assert min(feats["x"].shape[2:]) >= 1 and min(feats["x"].shape[2:]) == (2 if places else 1)


def test_mnas_layers_and_filters_are_relative_to_the_base():
    space = make_space(mnas, (1, 28, 28))
    assert space.schema["block_0/layers"].domain == IntDomain(0, 1)  # base 1: never 0 layers
    assert space.schema["block_2/layers"].domain == IntDomain(-1, 1)
    model: Any = space.build({**_mnas_arch(), "block_2/layers": -1, "block_3/layers": 1, "block_3/filters": 1.25})
    assert len(model.block_2) == 1 and len(model.block_3) == 3 and len(model.block_0) == 1
    assert model.block_3[0].body[-1][0].out_channels == 30  # 24 x 1.25


def test_parameter_counts_fit_cpu_training():
    largest: dict[str, int] = {}
    for op in OPS:
        arch = _mnas_arch(op=op, skip="pool", kernel=5, se=0.25, filters=1.25, layers=1)
        largest[op] = n_params(make_space(mnas, (1, 28, 28)).build(arch))
    assert max(largest.values()) < 600_000, largest
    fewest = {f"block_{i}/layers": -1 for i in (2, 3, 4)}
    smallest = make_space(mnas, (1, 28, 28)).build({**_mnas_arch(op="dwconv", skip="none", filters=0.75), **fewest})
    assert 5_000 < n_params(smallest) < max(largest.values())
    biggest_nasrl = _nasrl_arch((1, 28, 28), [[f"layer_{j}" for j in range(i)] for i in range(4)], [1] * 4, filters=64)
    biggest_nasrl.update({f"layer_{i}/{k}": 7 for i in range(4) for k in ("kernel_h", "kernel_w")})
    assert n_params(make_space(nasrl_cnn, (1, 28, 28)).build(biggest_nasrl)) < 1_500_000


def test_bad_arguments_name_the_field():
    with pytest.raises(SpaceError, match="n_layers"):
        _ = make_space(nasrl_cnn, (1, 28, 28), n_layers=0).schema
    with pytest.raises(SpaceError, match="kernels"):
        _ = make_space(nasrl_cnn, (1, 28, 28), kernels=[2, 3]).schema
    with pytest.raises(SpaceError, match="input_shape"):
        _ = make_space(mnas, (1, 2, 3, 4)).schema
    with pytest.raises(SpaceError, match="width_mult"):
        _ = make_space(mnas, (1, 28, 28), width_mult=0).schema
    with pytest.raises(SpaceError, match="base_filters"):
        _ = make_space(mnas, (1, 28, 28), base_filters=[8, 8]).schema
    with pytest.raises(SpaceError, match="never asked: 'layer_0/skip'"):
        arch = {**_nasrl_arch((1, 28, 28), [[]] * 4, [1] * 4), "layer_0/skip": []}
        make_space(nasrl_cnn, (1, 28, 28)).build(arch)


@pytest.mark.parametrize("name", SPACE_FNS)
def test_short_search_on_digits_learns(name, tmp_path):
    study = nasforge.search(SPACE_FNS[name], "digits", "random", budget=1, trials=2, seed=0, out=tmp_path,
                            trainer={"device": "cpu"})
    assert len(study.trials) == 2
    accuracies = [t.metrics["val_accuracy"] for t in study.trials]
    assert all(a > 0.15 for a in accuracies) and max(accuracies) > 0.5, accuracies  # chance: 0.1
