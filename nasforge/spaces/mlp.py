"""The chapter's MLP space: 1 to 6 hidden layers of 2 to 100 units, one activation for all."""
from __future__ import annotations

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "elu": nn.ELU, "silu": nn.SiLU}


def mlp(arch, n_in: int, n_out: int, max_depth: int = 6, min_width: int = 2, max_width: int = 100,
        activations: tuple[str, ...] | list[str] = ("relu", "tanh", "gelu")) -> nn.Module:
    """Multi-layer perceptron: depth, a width per layer (conditional on depth), one activation."""
    depth = arch.int("depth", 1, max_depth)
    widths = [arch.int(f"width_{i}", min_width, max_width) for i in range(depth)]
    activation = arch.categorical("activation", list(activations))
    layers: list[nn.Module] = [nn.Flatten()]
    previous = n_in
    for width in widths:
        layers += [nn.Linear(previous, width), ACTIVATIONS[activation]()]
        previous = width
    layers.append(nn.Linear(previous, n_out))
    return nn.Sequential(*layers)
