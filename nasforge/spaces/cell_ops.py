"""The op vocabularies of the cell spaces (DARTS, ENAS), for 1-D or 2-D inputs (a :class:`ConvKit`).

Each vocabulary maps an op name to a factory ``(kit, channels, stride) -> nn.Module`` that keeps
the channel count and divides the spatial size by ``stride`` (rounding up).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.spaces.conv_utils import ConvKit

OpFactory = Callable[[ConvKit, int, int], nn.Module]


def _max_pool(kit: ConvKit) -> type[nn.Module]:
    return nn.MaxPool2d if kit.dims == 2 else nn.MaxPool1d


class Zero(nn.Module):
    """The ``none`` op: zeros of the output's shape (the stride's subsampling of the input)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        index = (slice(None), slice(None)) + (slice(None, None, self.stride),) * (x.dim() - 2)
        return x[index].mul(0.0)


class ReLUConvBN(nn.Sequential):
    def __init__(self, kit: ConvKit, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1):
        pad = dilation * (kernel - 1) // 2
        super().__init__(nn.ReLU(), kit.conv(c_in, c_out, kernel, stride, pad, dilation=dilation, bias=False), kit.bn(c_out))


class DilConv(nn.Sequential):
    """ReLU, depthwise (dilated) convolution, pointwise convolution, batch norm."""

    def __init__(self, kit: ConvKit, c: int, kernel: int, stride: int, dilation: int):
        pad = dilation * (kernel - 1) // 2
        super().__init__(nn.ReLU(), kit.conv(c, c, kernel, stride, pad, dilation=dilation, groups=c, bias=False),
                         kit.conv(c, c, 1, bias=False), kit.bn(c))


class SepConv(nn.Sequential):
    """DARTS's separable convolution: the depthwise-pointwise pair twice (the first with the stride)."""

    def __init__(self, kit: ConvKit, c: int, kernel: int, stride: int):
        super().__init__(DilConv(kit, c, kernel, stride, 1), DilConv(kit, c, kernel, 1, 1))


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two stride-2 1x1 convolutions, one shifted by a position,
    concatenated (DARTS's reduction of an input that is not subsampled otherwise)."""

    def __init__(self, kit: ConvKit, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = kit.conv(c_in, c_out // 2, 1, 2, bias=False)
        self.conv_b = kit.conv(c_in, c_out - c_out // 2, 1, 2, bias=False)
        self.bn = kit.bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        dims = x.dim() - 2
        shifted = x[(slice(None), slice(None)) + (slice(1, None),) * dims]
        shifted = F.pad(shifted, (0, 1) * dims)  # the same size as x: both halves round up alike
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1))


def _skip(kit: ConvKit, c: int, stride: int) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(kit, c, c)


DARTS_OPS: dict[str, OpFactory] = {
    "none": lambda kit, c, s: Zero(s),
    "max_pool_3x3": lambda kit, c, s: _max_pool(kit)(3, s, 1),
    "avg_pool_3x3": lambda kit, c, s: kit.avg_pool(3, s, 1, count_include_pad=False),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda kit, c, s: SepConv(kit, c, 3, s),
    "sep_conv_5x5": lambda kit, c, s: SepConv(kit, c, 5, s),
    "dil_conv_3x3": lambda kit, c, s: DilConv(kit, c, 3, s, 2),
    "dil_conv_5x5": lambda kit, c, s: DilConv(kit, c, 5, s, 2),
}

ENAS_MICRO_OPS: dict[str, OpFactory] = {
    "identity": _skip,
    "sep_conv_3x3": lambda kit, c, s: SepConv(kit, c, 3, s),
    "sep_conv_5x5": lambda kit, c, s: SepConv(kit, c, 5, s),
    "avg_pool_3x3": lambda kit, c, s: kit.avg_pool(3, s, 1, count_include_pad=False),
    "max_pool_3x3": lambda kit, c, s: _max_pool(kit)(3, s, 1),
}


class ConvBNReLU(nn.Sequential):
    def __init__(self, kit: ConvKit, c: int, kernel: int, separable: bool):
        convs = ([kit.conv(c, c, kernel, 1, kernel // 2, groups=c, bias=False), kit.conv(c, c, 1, bias=False)]
                 if separable else [kit.conv(c, c, kernel, 1, kernel // 2, bias=False)])
        super().__init__(*convs, kit.bn(c), nn.ReLU())


ENAS_MACRO_OPS: dict[str, OpFactory] = {
    "conv_3x3": lambda kit, c, s: ConvBNReLU(kit, c, 3, False),
    "conv_5x5": lambda kit, c, s: ConvBNReLU(kit, c, 5, False),
    "sep_conv_3x3": lambda kit, c, s: ConvBNReLU(kit, c, 3, True),
    "sep_conv_5x5": lambda kit, c, s: ConvBNReLU(kit, c, 5, True),
    "max_pool_3x3": lambda kit, c, s: _max_pool(kit)(3, 1, 1),
    "avg_pool_3x3": lambda kit, c, s: kit.avg_pool(3, 1, 1, count_include_pad=False),
}


def candidates(ops: dict[str, OpFactory], kit: ConvKit, channels: int, stride: int = 1) -> dict[str, Callable[[], nn.Module]]:
    """``arch.choice`` candidates: each op of a vocabulary as a factory of a fresh module."""
    return {name: (lambda f=f: f(kit, channels, stride)) for name, f in ops.items()}


class FactorisedConv(nn.Sequential):
    """PNAS's "1x7 followed by 7x1 convolution": ReLU, a 1xk and a kx1 convolution, batch norm.
    On 1-D inputs the pair has one spatial axis: a k-wide convolution, then a 1-wide one."""

    def __init__(self, kit: ConvKit, c: int, kernel: int, stride: int):
        pad = kernel // 2
        if kit.dims == 2:
            first = kit.conv(c, c, (1, kernel), (1, stride), (0, pad), bias=False)
            second = kit.conv(c, c, (kernel, 1), (stride, 1), (pad, 0), bias=False)
        else:
            first = kit.conv(c, c, kernel, stride, pad, bias=False)
            second = kit.conv(c, c, 1, bias=False)
        super().__init__(nn.ReLU(), first, second, kit.bn(c))


PNAS_OPS: dict[str, OpFactory] = {  # Liu et al. 2018, section 3.1: the eight ops of a block
    "identity": _skip,
    "sep_conv_3x3": lambda kit, c, s: SepConv(kit, c, 3, s),
    "sep_conv_5x5": lambda kit, c, s: SepConv(kit, c, 5, s),
    "sep_conv_7x7": lambda kit, c, s: SepConv(kit, c, 7, s),
    "avg_pool_3x3": lambda kit, c, s: kit.avg_pool(3, s, 1, count_include_pad=False),
    "max_pool_3x3": lambda kit, c, s: _max_pool(kit)(3, s, 1),
    "conv_1x7_7x1": lambda kit, c, s: FactorisedConv(kit, c, 7, s),
    "dil_conv_3x3": lambda kit, c, s: DilConv(kit, c, 3, s, 2),
}
