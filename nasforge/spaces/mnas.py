"""The factorised hierarchical space of MnasNet (Tan et al., "MnasNet: Platform-Aware Neural
Architecture Search for Mobile", CVPR 2019, section 4.1 and figure 4) over MobileNetV2's 7 blocks
(Sandler et al., CVPR 2018), sized to train on a laptop CPU.

Every layer of block ``i`` is the same; per block the space asks::

    block_i/kernel    3, 5
    block_i/se        0.0, 0.25                         (squeeze-excitation ratio)
    block_i/skip      pool, identity, none              (the shortcut of each layer)
    block_i/filters   0.75, 1.0, 1.25                   (x the block's base filters)
    block_i/layers    -1, 0, +1                         (+ the base layer count; only 0, +1
                                                        where the base is 1: at least one layer)
    block_i/op        conv, dwconv, mbconv3, mbconv6   (regular conv; depthwise-separable conv;
                                                        inverted residual with expansion 3 or 6)

The op is an ``arch.choice`` among the layer bodies, asked per layer (one decision per block), so
the supernet mode builds a MnasNet supernet of the blocks' ops (the other decisions pinned); it
comes last because its candidates are built with the block's kernel, SE ratio and filters (the
paper's controller emits it first; the tokens are the same).

Shortcuts (applied per layer; only the block's first layer changes shape):

* ``identity``: ``y = f(x) + x`` where the shapes allow it (stride 1 and equal channels); a layer
  whose stride is 2 or whose channels change has **no** shortcut then (as in MobileNetV2, and
  as MnasNet's "identity residual skip" implies);
* ``pool``: ``y = f(x) + proj(avgpool(x))``: average pooling with the layer's stride, then a 1x1
  convolution + batch norm if the channels differ; where the shapes already match it is the
  identity, so ``pool`` and ``identity`` differ only on a block's first layer;
* ``none``: ``y = f(x)``.

Network: stem conv 3x3 -> the 7 blocks -> head conv 1x1 -> global average pool -> linear, an
``nn.Sequential`` with children ``reshape, stem, block_0 .. block_6, head, pool, classifier``
(``model.block_i[j]`` is layer ``j`` of block ``i``, a :class:`Layer`).
Batch norm after every convolution, ReLU as in MnasNet; the last 1x1 of ``dwconv`` / ``mbconv``
is linear (MobileNetV2's linear bottleneck). The SE squeeze width is ``ratio x`` the layer's
input channels (as in MnasNet's / EfficientNet's MBConv).

CPU sizing, against MobileNetV2-1.0 (filters 16, 24, 32, 64, 96, 160, 320; layers 1, 2, 3, 4, 3,
3, 1; stem 32; head 1280; strides stem 2 and 1, 2, 2, 2, 1, 2, 1): base filters 8, 12, 16, 24,
32, 40, 48; base layers 1, 1, 2, 2, 2, 1, 1; stem 16; head 128; no dropout. MobileNetV2 halves
the resolution 5 times (224 -> 7); here only as many times as keep the smallest spatial side
>= ``min_size`` (2), dropping the earliest reductions first (as CIFAR ports of MobileNetV2 do):
28x28 keeps 4 (blocks 1, 2, 3, 5: 28 -> 14 -> 7 -> 4 -> 2), an 8x8 image 2 (blocks 3, 5:
8 -> 4 -> 2), a length-40 sequence all 5 (40 -> 20 -> 10 -> 5 -> 3 -> 2). A larger ``min_size``
keeps more resolution at more cost (28x28 with ``min_size=4``: 2-2.5x the time per step).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn

from nasforge.errors import SpaceError
from nasforge.spaces.conv_utils import ConvKit, GlobalPool, Reshape, conv_bn, conv_kit, global_pool

OPS: tuple[str, ...] = ("conv", "dwconv", "mbconv3", "mbconv6")
KERNELS: tuple[int, ...] = (3, 5)
SE_RATIOS: tuple[float, ...] = (0.0, 0.25)
SKIPS: tuple[str, ...] = ("pool", "identity", "none")
FILTER_MULTS: tuple[float, ...] = (0.75, 1.0, 1.25)
BASE_FILTERS: tuple[int, ...] = (8, 12, 16, 24, 32, 40, 48)
BASE_LAYERS: tuple[int, ...] = (1, 1, 2, 2, 2, 1, 1)
# MobileNetV2's stride-2 places, in order: the stem, then blocks 1, 2, 3 and 5.
REDUCTIONS: tuple[str, ...] = ("stem", "block_1", "block_2", "block_3", "block_5")


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: scale each channel by a gate computed from the pooled map."""

    def __init__(self, kit: ConvKit, channels: int, squeeze: int):
        super().__init__()
        self.reduce = kit.conv(channels, squeeze, 1)
        self.expand = kit.conv(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = global_pool(x, keepdim=True)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(s))))


class Layer(nn.Module):
    """One layer of a block: ``body(x)``, plus ``shortcut(x)`` when it has one."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y if self.shortcut is None else y + self.shortcut(x)


def layer_body(kit: ConvKit, op: str, c_in: int, c_out: int, kernel: int, stride: int, se: float) -> nn.Sequential:
    squeeze = max(1, int(c_in * se)) if se > 0 else 0
    parts: list[nn.Module] = []
    if op == "conv":
        parts.append(conv_bn(kit, c_in, c_out, kernel, stride))
        mid = c_out
    else:  # dwconv / mbconv: [1x1 expand,] depthwise k x k, [SE,] 1x1 linear projection
        mid = c_in * (1 if op == "dwconv" else int(op[len("mbconv"):]))
        if mid != c_in:
            parts.append(conv_bn(kit, c_in, mid, 1))
        parts.append(conv_bn(kit, mid, mid, kernel, stride, groups=mid))
    if squeeze:
        parts.append(SqueezeExcite(kit, mid, squeeze))
    if op != "conv":
        parts.append(conv_bn(kit, mid, c_out, 1, act=False))
    return nn.Sequential(*parts)


def layer_shortcut(kit: ConvKit, skip: str, c_in: int, c_out: int, stride: int) -> nn.Module | None:
    same = stride == 1 and c_in == c_out
    if skip == "none" or (skip == "identity" and not same):
        return None  # identity needs equal shapes; otherwise the layer has no shortcut
    if same:
        return nn.Identity()
    parts: list[nn.Module] = []
    if stride > 1:
        parts.append(kit.avg_pool(stride, stride, ceil_mode=True))  # ceil(n / stride), as the conv
    if c_in != c_out:
        parts.append(conv_bn(kit, c_in, c_out, 1, act=False))
    return nn.Sequential(*parts)


def reduction_places(spatial: Sequence[int], min_size: int = 2, n_blocks: int = 7) -> set[str]:
    """Where to halve the resolution: MobileNetV2's places (those of the first ``n_blocks``
    blocks), earliest dropped first, as many as keep the smallest side >= ``min_size`` (an input
    already smaller keeps none)."""
    candidates = [p for p in REDUCTIONS if p == "stem" or int(p.split("_")[1]) < n_blocks]
    side, n = min(spatial), 0
    while n < len(candidates) and -(-side // 2) >= min_size:
        side, n = -(-side // 2), n + 1
    return set(candidates[len(candidates) - n:])


def _channels(base: int, mult: float) -> int:
    return max(1, int(round(base * mult)))


def mnas(arch: Any, input_shape: Sequence[int], n_out: int, width_mult: float = 1.0,
         base_filters: Sequence[int] = BASE_FILTERS, base_layers: Sequence[int] = BASE_LAYERS,
         stem: int = 16, head: int = 128, min_size: int = 2) -> nn.Module:
    """MnasNet's factorised hierarchical space on MobileNetV2's blocks (Tan et al., 2019), CPU sized.

    ``width_mult`` scales every filter count but the head's (as MobileNetV2's width multiplier);
    ``base_filters`` / ``base_layers`` give one entry per block; ``min_size`` bounds the resolution
    reductions (see :func:`reduction_places`).
    """
    base_filters, base_layers = tuple(base_filters), tuple(base_layers)
    if len(base_filters) != len(base_layers) or not base_filters:
        raise SpaceError(f"Invalid mnas blocks: base_filters {list(base_filters)} and base_layers "
                         f"{list(base_layers)} must be non-empty and of equal length (one entry per block)")
    for name, values in (("base_filters", base_filters), ("base_layers", base_layers),
                         ("n_out", (n_out,)), ("stem", (stem,)), ("head", (head,)), ("min_size", (min_size,))):
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise SpaceError(f"Invalid {name} for the mnas space: {values if len(values) > 1 else values[0]!r} "
                             f"(must be ints >= 1)")
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not width_mult > 0:
        raise SpaceError(f"Invalid width_mult for the mnas space: {width_mult!r} (must be a number > 0)")
    kit = conv_kit(input_shape, "mnas")
    places = reduction_places(kit.spatial, min_size, len(base_filters))

    c = _channels(stem, width_mult)
    stride = 2 if "stem" in places else 1
    parts: dict[str, nn.Module] = {"reshape": Reshape(kit.shape), "stem": conv_bn(kit, kit.channels, c, 3, stride)}
    for i, (filters, n_base) in enumerate(zip(base_filters, base_layers)):
        kernel = arch.categorical(f"block_{i}/kernel", list(KERNELS))
        se = arch.categorical(f"block_{i}/se", list(SE_RATIOS))
        skip = arch.categorical(f"block_{i}/skip", list(SKIPS))
        c_out = _channels(filters, width_mult * arch.categorical(f"block_{i}/filters", list(FILTER_MULTS)))
        n = n_base + arch.int(f"block_{i}/layers", -1 if n_base > 1 else 0, 1)
        layers: list[nn.Module] = []
        for j in range(n):
            s = 2 if j == 0 and f"block_{i}" in places else 1
            bodies = {op: (lambda op=op, c=c, s=s: layer_body(kit, op, c, c_out, kernel, s, se)) for op in OPS}
            layers.append(Layer(arch.choice(f"block_{i}/op", bodies), layer_shortcut(kit, skip, c, c_out, s)))
            c = c_out
        parts[f"block_{i}"] = nn.Sequential(*layers)
    parts.update(head=conv_bn(kit, c, head, 1), pool=GlobalPool(), classifier=nn.Linear(head, n_out))
    return nn.Sequential(OrderedDict(parts))
