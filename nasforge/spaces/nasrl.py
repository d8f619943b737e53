"""The layer-wise CNN space of NAS-RL (Zoph & Le, "Neural Architecture Search with Reinforcement
Learning", ICLR 2017, section 3.3 "Increase architecture complexity with skip connections").

Per layer ``i`` the space asks, in the order the paper's controller emits them (an anchor point,
then the layer's hyperparameters)::

    layer_i/skip       any subset of layer_0 .. layer_{i-1}   (arch.inputs, k=None; not for layer 0)
    layer_i/kernel_h   1, 3, 5, 7                              (2-D inputs; 1-D inputs ask
    layer_i/kernel_w   1, 3, 5, 7                               one ``layer_i/kernel`` instead)
    layer_i/stride     1, 2
    layer_i/filters    8, 16, 32, 64

so a controller finds each layer's anchor point and tokens by the ``layer_i/`` prefix.

The graph follows the paper:

* layer ``i`` reads the concatenation (along channels) of the layers its anchor chose; maps of
  different spatial sizes are zero-padded (at the bottom / right) to the largest before the
  concatenation. The previous layer is no implicit input: it is one of the candidates (the
  paper's anchor at layer N has N-1 sigmoids, one per earlier layer, layer N-1 included). A layer
  that chose no inputs reads the image (so layer 0 always does, and has no skip decision: an
  inputs decision needs at least one candidate);
* every layer is convolution -> batch norm -> ReLU;
* every layer that no later layer reads (always the last one) feeds the classifier: those maps are
  zero-padded and concatenated, globally average-pooled and fed to a linear layer (the paper
  connects all layers without outputs to the final layer).

Where this differs from the paper, for training on a laptop CPU: 4 layers by default (the paper
grew to 15), filters 8/16/32/64 (the paper: 24/36/48/64), one stride for both dimensions (the
paper predicted stride height and width in one of its experiments), and a linear classifier on
globally pooled features (the paper's final layer is a softmax over the concatenated maps).
A typical random architecture on 28x28 has ~40k parameters and ~7 M multiply-adds per sample;
the largest corner (64 filters, 7x7, stride 1, every skip) has 1.2 M and ~950 M: pass
``filters=(8, 16, 24, 32)`` for a tighter CPU budget.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from nasforge.errors import SpaceError
from nasforge.spaces.conv_utils import ConvKit, Reshape, conv_bn, conv_kit, conv_out, global_pool, pad_cat

FILTERS: tuple[int, ...] = (8, 16, 32, 64)
KERNELS: tuple[int, ...] = (1, 3, 5, 7)
STRIDES: tuple[int, ...] = (1, 2)


class NASRLNet(nn.Module):
    """The layer graph: ``sources[i]`` are the layers layer ``i`` reads (empty: the image),
    ``final`` the layers the classifier reads. Layer outputs are kept in a list in ``forward``."""

    def __init__(self, kit: ConvKit, layers: Sequence[nn.Module], sources: Sequence[Sequence[int]],
                 final: Sequence[int], final_channels: int, n_out: int):
        super().__init__()
        self.reshape = Reshape(kit.shape)
        self.layers = nn.ModuleList(layers)
        self.sources = [list(s) for s in sources]
        self.final = list(final)
        self.classifier = nn.Linear(final_channels, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = self.reshape(x)
        outputs: list[torch.Tensor] = []
        for layer, sources in zip(self.layers, self.sources):
            inputs = pad_cat([outputs[j] for j in sources]) if sources else image
            outputs.append(layer(inputs))
        return self.classifier(global_pool(pad_cat([outputs[j] for j in self.final])))

    def extra_repr(self) -> str:
        return f"sources={self.sources}, final={self.final}"


def _check(name: str, values: Sequence[int], allowed: str, ok: Any) -> tuple[int, ...]:
    out = tuple(values)
    if not out or any(isinstance(v, bool) or not isinstance(v, int) or not ok(v) for v in out):
        raise SpaceError(f"Invalid {name} for the nasrl space: {list(out)} (must be a non-empty list of {allowed})")
    return out


def nasrl_cnn(arch: Any, input_shape: Sequence[int], n_out: int, n_layers: int = 4,
              filters: Sequence[int] = FILTERS, kernels: Sequence[int] = KERNELS,
              strides: Sequence[int] = STRIDES) -> nn.Module:
    """NAS-RL's layer-wise CNN with skip connections (Zoph & Le, 2017), CPU sized.

    ``n_layers`` layers (layer ``i``'s skip decision has ``2**i`` subsets: keep ``n_layers <= 5``
    for domains of at most 16 values); ``input_shape`` picks 1-D or 2-D convolutions (see :func:`~nasforge.spaces.conv_utils.conv_kit`);
    ``filters``, ``kernels`` (odd sizes) and ``strides`` are the per-layer options.
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise SpaceError(f"Invalid n_layers for the nasrl space: {n_layers!r} (must be an int >= 1)")
    if isinstance(n_out, bool) or not isinstance(n_out, int) or n_out < 1:
        raise SpaceError(f"Invalid n_out for the nasrl space: {n_out!r} (must be an int >= 1)")
    filters = _check("filters", filters, "ints >= 1", lambda v: v >= 1)
    kernels = _check("kernels", kernels, "odd ints >= 1", lambda v: v >= 1 and v % 2 == 1)
    strides = _check("strides", strides, "ints >= 1", lambda v: v >= 1)
    kit = conv_kit(input_shape, "nasrl")

    layers: list[nn.Module] = []
    sources: list[list[int]] = []
    channels: list[int] = []  # each layer's output channels
    sizes: list[tuple[int, ...]] = []  # and spatial size
    for i in range(n_layers):
        chosen = arch.inputs(f"layer_{i}/skip", [f"layer_{j}" for j in range(i)], k=None) if i else []
        src = [int(name.split("_")[1]) for name in chosen]
        if kit.dims == 2:
            kernel = [arch.categorical(f"layer_{i}/kernel_h", list(kernels)),
                      arch.categorical(f"layer_{i}/kernel_w", list(kernels))]
        else:
            kernel = [arch.categorical(f"layer_{i}/kernel", list(kernels))]
        stride = arch.categorical(f"layer_{i}/stride", list(strides))
        c_out = arch.categorical(f"layer_{i}/filters", list(filters))
        if src:
            c_in = sum(channels[j] for j in src)
            size_in = tuple(max(sizes[j][d] for j in src) for d in range(kit.dims))
        else:
            c_in, size_in = kit.channels, kit.spatial
        layers.append(conv_bn(kit, c_in, c_out, kernel, stride))
        sources.append(src)
        channels.append(c_out)
        sizes.append(conv_out(size_in, stride))  # ceil(n / stride) >= 1: never below one position

    read = {j for src in sources for j in src}
    final = [i for i in range(n_layers) if i not in read]
    return NASRLNet(kit, layers, sources, final, sum(channels[i] for i in final), n_out)
