"""The NAS-Bench-201 space: one cell (a 4-node DAG, 6 edges, 5 ops per edge) repeated in a fixed
ResNet-like macro network (Dong & Yang, ICLR 2020).

Each edge is one categorical decision labelled ``edge_{i}_{j}`` (from node ``j`` into node ``i``),
asked in the order of the official architecture string::

    |op~0|+|op~0|op~1|+|op~0|op~1|op~2|        labels: edge_1_0, edge_2_0, edge_2_1,
     node1   node2           node3                       edge_3_0, edge_3_1, edge_3_2

so :func:`to_arch_str` / :func:`from_arch_str` convert between an architecture dict and the
string the NAS-Bench-201 tables are keyed by. With ``materialize=True`` the space builds the real,
trainable network; with ``materialize=False`` a parameter-free stub that only carries the cell,
for tabular lookups (:class:`nasforge.train.tabular.NB201Lookup`), which read ``model.arch_str``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from nasforge.errors import SpaceError
from nasforge.spaces.conv_utils import Reshape, conv_kit

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), official order
LABELS: tuple[str, ...] = tuple(f"edge_{i}_{j}" for i, j in EDGES)
N_NODES = 4


# --- the architecture string -----------------------------------------------------------------
def to_arch_str(arch: Mapping[str, Any]) -> str:
    """``{"edge_1_0": op, ...}`` -> ``"|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"``."""
    missing = [label for label in LABELS if label not in arch]
    if missing:
        raise SpaceError(f"Not an NB201 architecture: no value for {', '.join(missing)}; it needs {', '.join(LABELS)}")
    bad = {label: arch[label] for label in LABELS if arch[label] not in OPS}
    if bad:
        raise SpaceError(f"Invalid NB201 op(s) {bad}; allowed: {', '.join(OPS)}")
    nodes = ["|" + "|".join(f"{arch[f'edge_{i}_{j}']}~{j}" for j in range(i)) + "|" for i in range(1, N_NODES)]
    return "+".join(nodes)


def from_arch_str(s: str) -> dict[str, str]:
    """``"|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"`` -> ``{"edge_1_0": op, ...}`` (in label order)."""
    shape = "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'"
    if not isinstance(s, str):
        raise SpaceError(f"An NB201 architecture string must be a str like {shape}, got {type(s).__name__}")
    nodes = s.split("+")
    if len(nodes) != N_NODES - 1:
        raise SpaceError(f"Invalid NB201 string {s!r}: {len(nodes)} node(s), expected 3 joined by '+' as in {shape}")
    arch: dict[str, str] = {}
    for i, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")):
            raise SpaceError(f"Invalid NB201 string {s!r}: node {i} {node!r} must start and end with '|'")
        edges = node[1:-1].split("|")
        if len(edges) != i:
            raise SpaceError(f"Invalid NB201 string {s!r}: node {i} has {len(edges)} edge(s), expected {i}")
        for j, edge in enumerate(edges):
            op, sep, source = edge.rpartition("~")
            if not sep or source != str(j):
                raise SpaceError(f"Invalid NB201 string {s!r}: edge {edge!r} of node {i} must read 'op~{j}'")
            if op not in OPS:
                raise SpaceError(f"Invalid NB201 op {op!r} in {s!r}; allowed: {', '.join(OPS)}")
            arch[f"edge_{i}_{j}"] = op
    return {label: arch[label] for label in LABELS}


# --- the network -----------------------------------------------------------------------------
class ReLUConvBN(nn.Sequential):
    """NB201's ``nor_conv``: ReLU, convolution (no bias), batch norm."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out))


class Zero(nn.Module):
    """NB201's ``none``: the edge carries nothing (an all-zero tensor of the input's shape)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


OP_FACTORIES: dict[str, Callable[[int], nn.Module]] = {
    "none": lambda c: Zero(),
    "skip_connect": lambda c: nn.Identity(),
    "nor_conv_1x1": lambda c: ReLUConvBN(c, c, 1),
    "nor_conv_3x3": lambda c: ReLUConvBN(c, c, 3),
    "avg_pool_3x3": lambda c: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
}


def _named(name: str, module: nn.Module) -> nn.Module:
    module.op_name = name  # type: ignore[assignment]  # the cell's string is read from its edges
    return module


class OpToken(nn.Module):
    """A parameter-free stand-in for an op, for the stub: only its name matters."""

    def __init__(self, name: str):
        super().__init__()
        self.op_name = name


def edge_ops(channels: int, materialize: bool = True) -> dict[str, Callable[[], nn.Module]]:
    """The candidates of one edge (``arch.choice``), as modules of ``channels`` channels."""
    if not materialize:
        return {op: (lambda op=op: OpToken(op)) for op in OPS}
    return {op: (lambda op=op: _named(op, OP_FACTORIES[op](channels))) for op in OPS}


class Cell(nn.Module):
    """Node ``i`` is the sum over ``j < i`` of ``op_{i,j}(node j)``; node 0 is the input, node 3 the output.
    Each edge is ``arch.choice``: in supernet mode it is a mixed op, and the same code builds the
    supernet of the space."""

    def __init__(self, arch: Any, channels: int):
        super().__init__()
        self.edges = nn.ModuleList(arch.choice(label, edge_ops(channels)) for label in LABELS)

    @property
    def ops(self) -> tuple[str, ...] | None:
        names = tuple(getattr(edge, "op_name", None) for edge in self.edges)
        return None if None in names else names  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        k = 0
        for i in range(1, N_NODES):
            total = self.edges[k](nodes[0])
            for j in range(1, i):
                total = total + self.edges[k + j](nodes[j])
            nodes.append(total)
            k += i
        return nodes[-1]


class ResidualReduction(nn.Module):
    """NB201's reduction block between stages: a stride-2 basic residual block that doubles channels."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """Stem conv, 3 stages of ``N`` cells (C, 2C, 4C channels) with residual reductions between,
    BN-ReLU, global average pool, linear classifier. ``arch_str`` is None for a supernet."""

    def __init__(self, arch: Any, image: Sequence[int], n_out: int, C: int, N: int):
        super().__init__()
        self.reshape = Reshape(image)  # flat square inputs (digits' 64 features) as images
        self.stem = nn.Sequential(nn.Conv2d(image[0], C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        channels = C
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(channels, channels * 2))
                channels *= 2
            layers.extend(Cell(arch, channels) for _ in range(N))
        self.cells = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels, n_out)
        ops = layers[0].ops
        self.arch_str = to_arch_str(dict(zip(LABELS, ops))) if ops else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.cells(self.stem(self.reshape(x)))))


class NB201Stub(nn.Module):
    """A parameter-free stand-in that only carries the cell (``arch_str``, ``ops``): for lookups."""

    def __init__(self, ops: Sequence[str]):
        super().__init__()
        self.ops = tuple(ops)
        self.arch_str = to_arch_str(dict(zip(LABELS, ops)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(f"The NB201 stub of {self.arch_str} cannot run; build the space with materialize=True to train it")


def nb201(arch: Any, n_out: int = 10, C: int = 16, N: int = 5, materialize: bool = True,
          input_shape: Sequence[int] = (3, 32, 32)) -> nn.Module:
    """The NAS-Bench-201 cell space (5^6 = 15,625 cells). ``input_shape`` is ``(channels, H, W)``
    or a square number of features (from the data when it has one); ``C`` is the first stage's
    width and ``N`` the cells per stage (NB201 used C=16, N=5). Every edge is an ``arch.choice``,
    so the supernet mode builds the space's supernet. ``materialize=False`` returns :class:`NB201Stub` for tabular lookups."""
    if not materialize:
        return NB201Stub([arch.choice(label, edge_ops(0, materialize=False)).op_name for label in LABELS])
    kit = conv_kit(input_shape, "nb201")
    if kit.dims != 2:
        raise SpaceError(f"The nb201 space needs images: input_shape (channels, height, width) or a square number "
                         f"of features, got {tuple(input_shape)}")
    for name, value in (("n_out", n_out), ("C", C), ("N", N)):
        if not isinstance(value, int) or value < 1:
            raise SpaceError(f"Invalid {name} for the nb201 space: {value!r} (must be an int >= 1)")
    return NB201Network(arch, kit.shape, n_out, C, N)
