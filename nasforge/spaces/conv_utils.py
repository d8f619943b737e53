"""Shared pieces of the convolutional spaces: 1-D or 2-D ops picked from the data's input shape.

:func:`conv_kit` maps ``input_shape`` to the shape a model works on and the op classes to use:

* ``(C, H, W)`` -> 2-D, as is (``mnist5k``: ``(1, 28, 28)``);
* ``(C, L)`` -> 1-D, as is (``mnist1d(channels=True)``: ``(1, 40)``);
* ``(n,)`` with ``n = s * s`` a square of a side ``s >= 4`` -> a ``(1, s, s)`` image
  (``digits``: 64 features are an 8x8 image; a flattened 784-feature MNIST is 28x28);
* any other ``(n,)`` -> a ``(1, n)`` sequence for 1-D convolutions (``mnist1d``: 40 features).

The model itself reshapes its input (:class:`Reshape`), so flat datasets need no change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.errors import SpaceError

_MIN_IMAGE_SIDE = 4  # a flat square input of at least 4x4 features is read as an image


@dataclass(frozen=True)
class ConvKit:
    """The shape a conv model sees and the op classes of its dimensionality (1 or 2)."""

    channels: int
    spatial: tuple[int, ...]  # (H, W) or (L,)
    conv: type[nn.Module]  # nn.Conv1d / nn.Conv2d
    bn: type[nn.Module]  # nn.BatchNorm1d / nn.BatchNorm2d
    avg_pool: type[nn.Module]  # nn.AvgPool1d / nn.AvgPool2d

    @property
    def dims(self) -> int:
        return len(self.spatial)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels, *self.spatial)


def conv_kit(input_shape: Sequence[int], space: str = "conv") -> ConvKit:
    """The :class:`ConvKit` for one sample's shape (without the batch dimension)."""
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise SpaceError(f"Invalid input_shape {input_shape!r} for the {space} space: "
                         f"expected a tuple of ints") from None
    if not shape or len(shape) > 3 or any(s < 1 for s in shape):
        raise SpaceError(f"Invalid input_shape {shape} for the {space} space: expected (n,), (channels, length) "
                         f"or (channels, height, width) with every size >= 1")
    if len(shape) == 1:
        side = math.isqrt(shape[0])
        shape = (1, side, side) if side * side == shape[0] and side >= _MIN_IMAGE_SIDE else (1, shape[0])
    if len(shape) == 3:
        return ConvKit(shape[0], shape[1:], nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d)
    return ConvKit(shape[0], shape[1:], nn.Conv1d, nn.BatchNorm1d, nn.AvgPool1d)


class Reshape(nn.Module):
    """``(N, *anything) -> (N, *shape)``: flat features to the image or sequence a conv model reads."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


def conv_out(size: Sequence[int], stride: int) -> tuple[int, ...]:
    """Spatial size after a 'same'-padded (``kernel // 2``, odd kernel) convolution: ``ceil(n / stride)``."""
    return tuple(-(-n // stride) for n in size)


def conv_bn(kit: ConvKit, c_in: int, c_out: int, kernel: int | Sequence[int], stride: int = 1, groups: int = 1,
            act: bool = True) -> nn.Sequential:
    """Convolution (no bias, 'same' padding), batch norm, and ReLU unless ``act=False``."""
    ks = (kernel,) * kit.dims if isinstance(kernel, int) else tuple(kernel)
    layers: list[nn.Module] = [
        kit.conv(c_in, c_out, ks, stride=stride, padding=tuple(k // 2 for k in ks), groups=groups, bias=False),
        kit.bn(c_out),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def global_pool(x: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """``(N, C, *spatial) -> (N, C)``: the mean over every spatial position (``keepdim``: the
    spatial dimensions stay, each of size 1)."""
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=keepdim)


class GlobalPool(nn.Module):
    """:func:`global_pool` as a module."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_pool(x)


def pad_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Zero-pad the spatial dimensions of ``x`` at their end (bottom / right) up to ``size``."""
    extra = [target - have for have, target in zip(x.shape[2:], size)]
    if not any(extra):
        return x
    pads: list[int] = []
    for e in reversed(extra):  # F.pad takes the last dimension first
        pads += [0, e]
    return F.pad(x, pads)


def pad_cat(xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate feature maps along channels, zero-padding the smaller ones to the largest size
    in every spatial dimension (Zoph & Le, 2017: "we pad the small layers with zeros")."""
    if len(xs) == 1:
        return xs[0]
    size = [max(x.shape[d] for x in xs) for d in range(2, xs[0].dim())]
    return torch.cat([pad_to(x, size) for x in xs], dim=1)
