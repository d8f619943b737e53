"""The MobileNetV2-style space of ProxylessNAS (Cai, Zhu & Han, "ProxylessNAS: Direct Neural
Architecture Search on Target Task and Hardware", ICLR 2019, section 4 and figure 4), sized to
train on a laptop CPU.

The network: stem conv 3x3 -> a fixed MBConv (expansion 1, kernel 3) -> stages of searched
layers -> head conv 1x1 -> global average pool -> linear. Every searched layer asks one choice,
``stage_i/layer_j``, among MBConv blocks (inverted residuals) of kernel 3, 5 or 7 and expansion
3 or 6 (``mb3_k3`` .. ``mb6_k7``), plus ``none`` (the zero op: the layer is skipped) on every
layer but a stage's first, whose stride or channels change the shape. A layer whose shapes match
has MobileNetV2's identity shortcut, so ``none`` leaves the identity.

One departure from MobileNetV2 and ProxylessNAS: a stage's first layer has a projection shortcut
(average pooling with its stride, then a 1x1 convolution and batch norm: MnasNet's ``pool``
skip) where they have none. A one-shot search trains the supernet on one sampled path per layer;
when every candidate of a layer re-bases the features, the layers after it meet a different
basis at every step, and the supernet learns about ten times slower (mnist5k, 240 steps of
batch 64: training loss 2.15 without it, 0.99 with it, 0.34 for one fixed network); the
projection keeps one shared path through every layer.

CPU sizing, against ProxylessNAS's mobile network (stem 32, stages of 24, 40, 80, 96, 192 and
320 filters with 4 layers each, 224x224 input): stem 16, first block 8, stages of 12, 16, 24 and
32 filters with 2, 3, 3 and 2 layers, head 96. The resolution is halved at the stem and at each
stage's first layer while the smallest side stays >= ``min_size`` (2), the earliest reductions
dropped first: 28x28 keeps 4 (stem, stages 1-3: 28 -> 14 -> 7 -> 4 -> 2). Each choice is one
decision per layer, so the space has 10 decisions of 6 or 7 candidates.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

from torch import nn

from nasforge.errors import SpaceError
from nasforge.spaces.cell_ops import Zero
from nasforge.spaces.conv_utils import ConvKit, GlobalPool, Reshape, conv_bn, conv_kit
from nasforge.spaces.mnas import Layer, layer_body, layer_shortcut

KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANSIONS: tuple[int, ...] = (3, 6)
STAGES: tuple[tuple[int, int], ...] = ((12, 2), (16, 3), (24, 3), (32, 2))  # (filters, layers)


def mbconv_candidates(kit: ConvKit, c_in: int, c_out: int, stride: int, skippable: bool) -> dict[str, Any]:
    """One layer's candidates: ``mb{e}_k{k}`` for every expansion and kernel (+ ``none``)."""
    ops: dict[str, Any] = {}
    for e in EXPANSIONS:
        for k in KERNELS:
            ops[f"mb{e}_k{k}"] = lambda e=e, k=k: layer_body(kit, f"mbconv{e}", c_in, c_out, k, stride, 0.0)
    if skippable:
        ops["none"] = lambda: Zero(1)
    return ops


def _strides(spatial: Sequence[int], n_stages: int, min_size: int) -> list[int]:
    """Stride of the stem and of each stage's first layer: 2 at as many of them as keep the
    smallest side >= ``min_size``, the earliest dropped first."""
    side, halvings = min(spatial), 0
    while halvings < n_stages + 1 and -(-side // 2) >= min_size:
        side, halvings = -(-side // 2), halvings + 1
    return [1] * (n_stages + 1 - halvings) + [2] * halvings


def proxyless(arch: Any, input_shape: Sequence[int], n_out: int, stages: Sequence[Sequence[int]] = STAGES,
              stem: int = 16, first: int = 8, head: int = 96, min_size: int = 2) -> nn.Module:
    """ProxylessNAS's per-layer MBConv space (Cai et al., 2019), CPU sized (see the module).

    ``stages``: (filters, layers) per stage; ``stem``, ``first`` and ``head``: the fixed layers'
    filters; ``min_size`` bounds the resolution reductions.
    """
    stages = [tuple(s) for s in stages]
    if not stages or any(len(s) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in s)
                         for s in stages):
        raise SpaceError(f"Invalid stages for the proxyless space: {stages!r} (a non-empty list of "
                         "[filters, layers] pairs of ints >= 1)")
    for name, value in (("n_out", n_out), ("stem", stem), ("first", first), ("head", head), ("min_size", min_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpaceError(f"Invalid {name} for the proxyless space: {value!r} (must be an int >= 1)")
    kit = conv_kit(input_shape, "proxyless")
    strides = _strides(kit.spatial, len(stages), min_size)
    parts: dict[str, nn.Module] = {"reshape": Reshape(kit.shape), "stem": conv_bn(kit, kit.channels, stem, 3, strides[0]),
                                   "first": Layer(layer_body(kit, "dwconv", stem, first, 3, 1, 0.0), None)}
    c = first
    for i, ((filters, n_layers), stride) in enumerate(zip(stages, strides[1:])):
        layers: list[nn.Module] = []
        for j in range(n_layers):
            s = stride if j == 0 else 1
            same = s == 1 and c == filters
            op = arch.choice(f"stage_{i}/layer_{j}", mbconv_candidates(kit, c, filters, s, skippable=same))
            layers.append(Layer(op, layer_shortcut(kit, "pool", c, filters, s)))
            c = filters
        parts[f"stage_{i}"] = nn.Sequential(*layers)
    parts.update(head=conv_bn(kit, c, head, 1), pool=GlobalPool(), classifier=nn.Linear(head, n_out))
    return nn.Sequential(OrderedDict(parts))
