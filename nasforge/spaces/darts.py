"""The DARTS cell space (Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR
2019, section 2.1), for 1-D or 2-D inputs, sized for a laptop CPU.

A cell has two inputs (the outputs of the two cells before it, ``c0`` and ``c1``) and ``nodes``
intermediate nodes; node ``i`` sums two ops, each applied to one earlier state, and the cell
outputs the concatenation of its nodes. Normal cells keep the size; reduction cells (at a third
and two thirds of the network) halve it with stride-2 ops on the cell inputs and double the
channels. Every normal cell shares one set of decisions, every reduction cell another::

    normal/node0              two of c0, c1                      (arch.inputs, k=2)
    normal/node0/c0           an op for the edge from c0         (asked where c0 is chosen)
    ...
    normal/node3              two of c0, c1, node0, node1, node2
    reduce/...                the same for reduction cells

Ops (:data:`~nasforge.spaces.cell_ops.DARTS_OPS`): none, max and avg pool 3x3, skip, separable
convolutions 3x3 and 5x5, dilated convolutions 3x3 and 5x5. In supernet mode every edge exists
and carries a mixed op (see :mod:`nasforge.space.supernet`), which is the DARTS supernet.

CPU sizing against the paper's search network (C=16, 8 cells, 4 nodes): ``C=8``, ``cells=5``
(reduction cells second and fourth), ``nodes=3``, stem multiplier 3 as in the paper.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from nasforge.errors import SpaceError
from nasforge.space.supernet import sum_inputs
from nasforge.spaces.cell_ops import DARTS_OPS, FactorizedReduce, ReLUConvBN, candidates
from nasforge.spaces.conv_utils import ConvKit, Reshape, conv_kit, global_pool


def cell_inputs(i: int) -> list[str]:
    return ["c0", "c1"] + [f"node{j}" for j in range(i)]


class DartsCell(nn.Module):
    def __init__(self, arch: Any, kind: str, kit: ConvKit, c_pp: int, c_p: int, c: int, nodes: int,
                 reduce_prev: bool):
        super().__init__()
        reduction = kind == "reduce"
        self.pre0 = FactorizedReduce(kit, c_pp, c) if reduce_prev else ReLUConvBN(kit, c_pp, c, 1)
        self.pre1 = ReLUConvBN(kit, c_p, c, 1)
        self.chosen: list[Sequence[str]] = []
        self.edges = nn.ModuleList()
        for i in range(nodes):
            label = f"{kind}/node{i}"
            chosen = arch.inputs(label, cell_inputs(i), k=2)
            self.chosen.append(chosen)
            self.edges.append(nn.ModuleDict({
                j: arch.choice(f"{label}/{j}", candidates(DARTS_OPS, kit, c, 2 if reduction and j in ("c0", "c1") else 1))
                for j in chosen
            }))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = {"c0": self.pre0(s0), "c1": self.pre1(s1)}
        for i, (chosen, edges) in enumerate(zip(self.chosen, self.edges)):
            states[f"node{i}"] = sum_inputs(chosen, {j: (lambda j=j: edges[j](states[j])) for j in chosen})
        return torch.cat([states[f"node{i}"] for i in range(len(self.chosen))], dim=1)


class DartsNetwork(nn.Module):
    def __init__(self, arch: Any, kit: ConvKit, n_out: int, C: int, cells: int, nodes: int, stem_multiplier: int,
                 stem_stride: int):
        super().__init__()
        self.reshape = Reshape(kit.shape)
        c_curr = stem_multiplier * C
        self.stem = nn.Sequential(kit.conv(kit.channels, c_curr, 3, stem_stride, 1, bias=False), kit.bn(c_curr))
        c_pp, c_p, c = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduce_prev = False
        reductions = {cells // 3, 2 * cells // 3} if cells >= 3 else set()
        for k in range(cells):
            reduction = k in reductions
            if reduction:
                c *= 2
            self.cells.append(DartsCell(arch, "reduce" if reduction else "normal", kit, c_pp, c_p, c, nodes, reduce_prev))
            reduce_prev = reduction
            c_pp, c_p = c_p, nodes * c
        self.classifier = nn.Linear(c_p, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(global_pool(run_cells(self.cells, self.stem(self.reshape(x)))))


def run_cells(cells: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """A stack of cells each reading the outputs of the two cells before it (the stem's at first)."""
    s0 = s1 = x
    for cell in cells:
        s0, s1 = s1, cell(s0, s1)
    return s1


def _positive(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpaceError(f"Invalid {name} for a cell space: {value!r} (must be an int >= {low})")
    return value


def darts(arch: Any, input_shape: Sequence[int], n_out: int, C: int = 8, cells: int = 5, nodes: int = 3,
          stem_multiplier: int = 3, stem_stride: int = 1) -> nn.Module:
    """The DARTS cell space (Liu et al. 2019): normal and reduction cells, CPU sized.

    ``cells`` cells of ``nodes`` nodes, first width ``C`` (see the module); ``stem_stride=2`` halves the input first (28x28 images: ~4x cheaper steps)."""
    kit = conv_kit(input_shape, "darts")
    for name, value in (("n_out", n_out), ("C", C), ("cells", cells), ("nodes", nodes), ("stem_multiplier", stem_multiplier),
                        ("stem_stride", stem_stride)):
        _positive(name, value)
    return DartsNetwork(arch, kit, n_out, C, cells, nodes, stem_multiplier, stem_stride)
