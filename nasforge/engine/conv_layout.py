"""The shape of a NAS-RL CNN candidate (:class:`~nasforge.spaces.nasrl.NASRLNet`), which such
candidates stack exactly, and how a group of them is laid out.

A group stacks candidates whose feature maps have the same spatial sizes everywhere (the key,
:meth:`ConvShape.key`); everything else may differ and is zero-padded:

* widths (filters): every layer holds each candidate's channels padded to the group's widest;
* kernels: each candidate's kernel sits centred in the group's largest (odd kernels, padding
  ``k // 2``: a centred, zero-padded kernel computes exactly the same outputs);
* skip sets: a layer's sources are gathered per candidate, so each candidate's convolution
  reads its own concatenation of sources (padded to the group's largest by channels its zero
  weights ignore), not the union of the group's sources: the union of widths padded to the
  widest cost up to 10x the arithmetic in random groups.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasforge.spaces.nasrl import NASRLNet

IMAGE = -1
"""The source index of the input image (a layer that reads no earlier layer reads it)."""


@dataclass(frozen=True)
class ConvLayer:
    sources: tuple[int, ...]  # layers read, in the order their channels are concatenated; (IMAGE,): the image
    kernel: tuple[int, ...]  # odd, per spatial dimension
    stride: tuple[int, ...]
    c_in: int
    c_out: int
    size_in: tuple[int, ...]  # spatial size of the (padded, concatenated) input
    size_out: tuple[int, ...]


@dataclass(frozen=True)
class ConvShape:
    """One candidate: its image (channels, *spatial), layers, the layers its classifier reads
    (``final``), the size they are padded to before global pooling, and BatchNorm settings."""

    image: tuple[int, ...]
    layers: tuple[ConvLayer, ...]
    final: tuple[int, ...]
    pooled: tuple[int, ...]
    n_out: int
    eps: float
    momentum: float

    @property
    def dims(self) -> int:
        return len(self.image) - 1

    def key(self) -> tuple[Any, ...]:
        """Candidates with equal keys stack exactly: the same image and outputs, and per layer the
        same stride and spatial sizes (so the union of skip sets pads to the same size), the same
        pooled size (global pooling averages over the padded maps) and BatchNorm settings."""
        per_layer = tuple((layer.stride, layer.size_in, layer.size_out) for layer in self.layers)
        return (self.image, per_layer, self.pooled, self.n_out, self.eps, self.momentum)

    def width(self, source: int) -> int:
        return self.image[0] if source == IMAGE else self.layers[source].c_out


def conv_shape(model: nn.Module) -> ConvShape | None:
    """The structure of a NASRLNet (1-D or 2-D), or None for anything else (including variants
    the stack cannot reproduce exactly: biased, grouped or dilated convolutions, even kernels,
    other paddings, BatchNorm without affine weights or running statistics)."""
    if type(model) is not NASRLNet:
        return None
    image = tuple(model.reshape.shape)
    dims = len(image) - 1
    if dims not in (1, 2):
        return None
    sizes: list[tuple[int, ...]] = []
    layers: list[ConvLayer] = []
    bn_settings = set()
    for block, sources in zip(model.layers, model.sources):
        conv_bn = _conv_bn(block, dims)
        if conv_bn is None:
            return None
        conv, bn = conv_bn
        src = tuple(sources) if sources else (IMAGE,)
        c_in = sum(image[0] if s == IMAGE else layers[s].c_out for s in src)
        if conv.in_channels != c_in:
            return None
        size_in = tuple(image[1:]) if src == (IMAGE,) else tuple(max(sizes[s][d] for s in src) for d in range(dims))
        stride = tuple(conv.stride)
        size_out = tuple(-(-n // s) for n, s in zip(size_in, stride))
        layers.append(ConvLayer(src, tuple(conv.kernel_size), stride, c_in, conv.out_channels, size_in, size_out))
        sizes.append(size_out)
        bn_settings.add((bn.eps, bn.momentum))
    final = tuple(model.final)
    fc = model.classifier
    if (not final or len(bn_settings) != 1 or type(fc) is not nn.Linear or fc.bias is None
            or fc.in_features != sum(layers[j].c_out for j in final)):
        return None
    pooled = tuple(max(sizes[j][d] for j in final) for d in range(dims))
    eps, momentum = bn_settings.pop()
    if momentum is None:  # a cumulative average: the stack keeps the exponential one only
        return None
    return ConvShape(image, tuple(layers), final, pooled, fc.out_features, eps, momentum)


def _conv_bn(block: nn.Module, dims: int) -> tuple[nn.Module, nn.Module] | None:
    conv_cls, bn_cls = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
    if not isinstance(block, nn.Sequential) or len(block) != 3:
        return None
    conv, bn, act = block
    if type(conv) is not conv_cls or type(bn) is not bn_cls or type(act) is not nn.ReLU:
        return None
    if (conv.bias is not None or conv.groups != 1 or any(d != 1 for d in conv.dilation)
            or conv.padding_mode != "zeros" or isinstance(conv.padding, str)
            or any(k % 2 == 0 or p != k // 2 for k, p in zip(conv.kernel_size, conv.padding))):
        return None
    if not (bn.affine and bn.track_running_stats) or bn.num_features != conv.out_channels:
        return None
    return conv, bn


@dataclass(frozen=True)
class GroupLayer:
    """One stacked layer: the union of the group's sources (sorted, the image first) and each
    one's channel offset in the pool the candidates' inputs are gathered from (each source
    padded to the group's widest), the largest input, the widest output and the largest kernel."""

    sources: tuple[int, ...]
    offsets: tuple[int, ...]
    pool: int  # channels of the pool
    c_in: int
    width: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    size_in: tuple[int, ...]
    size_out: tuple[int, ...]


@dataclass(frozen=True)
class GroupLayout:
    layers: tuple[GroupLayer, ...]
    final: tuple[int, ...]  # the union of the layers the classifiers read, sorted
    final_offsets: tuple[int, ...]
    features: int  # the classifier's padded input width
    C: int

    def padded_macs(self) -> float:
        """Multiply-adds of one sample's forward pass through the padded group (all candidates)."""
        macs = sum(L.width * L.c_in * math.prod(L.kernel) * math.prod(L.size_out) for L in self.layers)
        return float(self.C * macs)


def group_layout(shapes: list[ConvShape]) -> GroupLayout:
    """The padded layout of candidates that share one :meth:`ConvShape.key`."""
    first = shapes[0]
    widths = [max(s.layers[l].c_out for s in shapes) for l in range(len(first.layers))]

    def width(source: int) -> int:
        return first.image[0] if source == IMAGE else widths[source]

    layers = []
    for l, base in enumerate(first.layers):
        sources = tuple(sorted({j for s in shapes for j in s.layers[l].sources}))
        offsets = tuple(sum(width(j) for j in sources[:n]) for n in range(len(sources)))
        kernel = tuple(max(s.layers[l].kernel[d] for s in shapes) for d in range(first.dims))
        c_in = max(s.layers[l].c_in for s in shapes)
        layers.append(GroupLayer(sources, offsets, sum(width(j) for j in sources), c_in, widths[l], kernel,
                                 base.stride, base.size_in, base.size_out))
    final = tuple(sorted({j for s in shapes for j in s.final}))
    final_offsets = tuple(sum(widths[j] for j in final[:n]) for n in range(len(final)))
    return GroupLayout(tuple(layers), final, final_offsets, sum(widths[j] for j in final), len(shapes))


def input_channels(layout: GroupLayer, shape: ConvShape, layer: int) -> torch.Tensor:
    """Where a candidate's input channels of ``layer`` sit in the layer's pool, in its own order,
    padded to ``layout.c_in`` with channel 0 (read by zero weights only)."""
    own = shape.layers[layer].sources
    index = torch.cat([layout.offsets[layout.sources.index(j)] + torch.arange(shape.width(j)) for j in own])
    return torch.cat([index, index.new_zeros(layout.c_in - len(index))])


def feature_channels(layout: GroupLayout, shape: ConvShape) -> torch.Tensor:
    """Where a candidate's classifier inputs sit in the group's pooled features (own order)."""
    return torch.cat([layout.final_offsets[layout.final.index(j)] + torch.arange(shape.layers[j].c_out)
                      for j in shape.final])


def kernel_slices(big: tuple[int, ...], small: tuple[int, ...]) -> tuple[slice, ...]:
    """A kernel of size ``small`` centred in one of size ``big`` (both odd per dimension)."""
    return tuple(slice((b - s) // 2, (b - s) // 2 + s) for b, s in zip(big, small))
