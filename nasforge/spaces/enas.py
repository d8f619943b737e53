"""The ENAS spaces (Pham et al., "Efficient Neural Architecture Search via Parameter Sharing",
ICML 2018): macro search (section 2.3) and micro search (section 2.4), for 1-D or 2-D inputs,
sized for a laptop CPU.

**Macro** (:func:`enas_macro`): a chain of ``layers`` nodes of ``C`` channels. Node ``k`` asks::

    node{k}/op      conv 3x3 / 5x5, depthwise-separable conv 3x3 / 5x5, max pool 3x3, avg pool 3x3
    node{k}/skips   any subset of node0 .. node{k-2}      (arch.inputs, k=None; from node 2 on)

and computes ``op(previous node)``, concatenated along depth with the outputs of its skips (maps
of a larger size average-pooled to its size), then a 1x1 convolution back to ``C`` channels,
batch norm and ReLU. Average pooling halves the size after a third and two thirds of the nodes.

**Micro** (:func:`enas_micro`): ``N`` normal cells with a reduction cell between each group.
A cell of ``nodes`` nodes has the two previous cells' outputs as inputs ``c0``, ``c1``; node
``i`` sums two slots ``x`` and ``y``, each an op applied to one earlier state::

    normal/node{i}/x/input  one of c0, c1, node0 .. node{i-1}   (arch.inputs, k=1)
    normal/node{i}/x/op     identity, sep conv 3x3 / 5x5, avg pool 3x3, max pool 3x3
    normal/node{i}/y/...    the same
    reduce/...              the reduction cell, from the same controller

A reduction cell first halves both inputs (factorised reduction, as ENAS's code does) and
doubles the channels; a cell outputs its nodes concatenated and reduced to its width by a 1x1
convolution. Shared weights are keyed by (node, slot, op), as the mixed op of each slot.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.space.supernet import concat_inputs, sum_inputs
from nasforge.spaces.cell_ops import ENAS_MACRO_OPS, ENAS_MICRO_OPS, FactorizedReduce, ReLUConvBN, candidates
from nasforge.spaces.conv_utils import ConvKit, Reshape, conv_kit, global_pool
from nasforge.spaces.darts import _positive, cell_inputs, run_cells


def _pool_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.adaptive_avg_pool2d(x, size) if x.dim() == 4 else F.adaptive_avg_pool1d(x, size)


class MacroNode(nn.Module):
    def __init__(self, arch: Any, k: int, kit: ConvKit, c: int):
        super().__init__()
        self.op = arch.choice(f"node{k}/op", candidates(ENAS_MACRO_OPS, kit, c))
        self.skips: Sequence[str] = arch.inputs(f"node{k}/skips", [f"node{j}" for j in range(k - 1)], k=None) if k >= 2 else []
        self.merge = nn.Sequential(kit.conv(c * (1 + len(self.skips)), c, 1, bias=False), kit.bn(c), nn.ReLU())

    def forward(self, previous: torch.Tensor, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.op(previous)
        if len(self.skips):
            size = out.shape[2:]
            skips = concat_inputs(self.skips, {j: _pool_to(outputs[j], size) for j in self.skips})
            out = torch.cat([out, skips], dim=1)
        return self.merge(out)


class MacroNetwork(nn.Module):
    def __init__(self, arch: Any, kit: ConvKit, n_out: int, C: int, layers: int, stem_stride: int):
        super().__init__()
        self.reshape = Reshape(kit.shape)
        self.stem = nn.Sequential(kit.conv(kit.channels, C, 3, stem_stride, 1, bias=False), kit.bn(C))
        self.nodes = nn.ModuleList(MacroNode(arch, k, kit, C) for k in range(layers))
        self.pool_after = {layers // 3 - 1, 2 * layers // 3 - 1} if layers >= 3 else set()
        self.pool = kit.avg_pool(2, 2, ceil_mode=True)
        self.classifier = nn.Linear(C, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(self.reshape(x))
        outputs: dict[str, torch.Tensor] = {}
        for k, node in enumerate(self.nodes):
            h = node(h, outputs)
            outputs[f"node{k}"] = h
            if k in self.pool_after:
                h = self.pool(h)
        return self.classifier(global_pool(h))


def enas_macro(arch: Any, input_shape: Sequence[int], n_out: int, C: int = 16, layers: int = 6,
               stem_stride: int = 1) -> nn.Module:
    """ENAS's macro space (Pham et al. 2018): a chain of conv/pool nodes with skip connections.

    ``layers`` nodes of ``C`` channels (see the module); ``stem_stride=2`` halves the input first."""
    for name, value in (("n_out", n_out), ("C", C), ("layers", layers), ("stem_stride", stem_stride)):
        _positive(name, value)
    return MacroNetwork(arch, conv_kit(input_shape, "enas_macro"), n_out, C, layers, stem_stride)


class MicroCell(nn.Module):
    def __init__(self, arch: Any, kind: str, kit: ConvKit, c_pp: int, c_p: int, c: int, nodes: int, halve_c0: bool):
        super().__init__()
        reduction = kind == "reduce"
        self.pre0 = FactorizedReduce(kit, c_pp, c) if halve_c0 or reduction else ReLUConvBN(kit, c_pp, c, 1)
        self.pre1 = FactorizedReduce(kit, c_p, c) if reduction else ReLUConvBN(kit, c_p, c, 1)
        self.slots: list[Sequence[str]] = []
        self.ops = nn.ModuleList()
        for i in range(nodes):
            for slot in ("x", "y"):
                label = f"{kind}/node{i}/{slot}"
                self.slots.append(arch.inputs(f"{label}/input", cell_inputs(i), k=1))
                self.ops.append(arch.choice(f"{label}/op", candidates(ENAS_MICRO_OPS, kit, c)))
        self.merge = nn.Sequential(nn.ReLU(), kit.conv(nodes * c, c, 1, bias=False), kit.bn(c))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = {"c0": self.pre0(s0), "c1": self.pre1(s1)}
        for i in range(len(self.slots) // 2):
            x, y = 2 * i, 2 * i + 1
            states[f"node{i}"] = (self.ops[x](sum_inputs(self.slots[x], states))
                                  + self.ops[y](sum_inputs(self.slots[y], states)))
        return self.merge(torch.cat([states[f"node{i}"] for i in range(len(self.slots) // 2)], dim=1))


class MicroNetwork(nn.Module):
    def __init__(self, arch: Any, kit: ConvKit, n_out: int, C: int, N: int, nodes: int, stem_stride: int):
        super().__init__()
        self.reshape = Reshape(kit.shape)
        self.stem = nn.Sequential(kit.conv(kit.channels, C, 3, stem_stride, 1, bias=False), kit.bn(C))
        self.cells = nn.ModuleList()
        c_pp = c_p = c = C
        halve_c0 = False
        for group in range(3):
            if group:
                c *= 2
                self.cells.append(MicroCell(arch, "reduce", kit, c_pp, c_p, c, nodes, False))
                c_pp, c_p, halve_c0 = c_p, c, True
            for _ in range(N):
                self.cells.append(MicroCell(arch, "normal", kit, c_pp, c_p, c, nodes, halve_c0))
                c_pp, c_p, halve_c0 = c_p, c, False
        self.classifier = nn.Linear(c, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(global_pool(run_cells(self.cells, self.stem(self.reshape(x)))))


def enas_micro(arch: Any, input_shape: Sequence[int], n_out: int, C: int = 8, N: int = 1, nodes: int = 3,
               stem_stride: int = 1) -> nn.Module:
    """ENAS's micro space (Pham et al. 2018): normal and reduction cells from one controller.

    ``N`` normal cells per group, 3 groups with a reduction cell between, cells of ``nodes`` nodes, first width ``C`` (see the module); ``stem_stride=2``
    halves the input first."""
    for name, value in (("n_out", n_out), ("C", C), ("N", N), ("nodes", nodes), ("stem_stride", stem_stride)):
        _positive(name, value)
    return MicroNetwork(arch, conv_kit(input_shape, "enas_micro"), n_out, C, N, nodes, stem_stride)
