"""The PNAS cell space (Liu et al., "Progressive Neural Architecture Search", ECCV 2018, section
3.1), for 1-D or 2-D inputs, sized for a laptop CPU.

A cell has the outputs of the two cells before it as inputs (``c0``, ``c1``) and ``blocks``
blocks, itself a decision (1 to ``max_blocks``), so the space grows one block at a time, as the
progressive strategy searches it, and every other strategy samples the size too. Block ``b``
applies an op to each of two inputs and combines the results::

    blocks            1 .. max_blocks
    block{b}/input1   one of c0, c1, block0 .. block{b-1}      (asked while b < blocks)
    block{b}/input2   the same
    block{b}/op1      an op of ``ops`` for input 1
    block{b}/op2      an op for input 2
    block{b}/combine  add or concat (asked only when ``combine`` lists both)

The cell outputs the concatenation of its blocks that no other block reads. Ops
(:data:`~nasforge.spaces.cell_ops.PNAS_OPS`): identity, separable convolutions 3x3 / 5x5 / 7x7,
average and max pool 3x3, a 1x7 then 7x1 convolution, dilated convolution 3x3. The default
``ops`` are the five cheapest (no 7x7, factorised or dilated convolution) and ``combine`` is
addition only, as in the paper, which dropped concatenation because NASNet's search never chose
it; a one-block cell then has 2 x 2 x 5 x 5 = 100 variants, which a CPU can train in minutes.

Cells stack as in the paper: ``N`` normal cells, a reduction cell, ``N`` normal, a reduction,
``N`` normal. Every cell shares the same decisions; in a reduction cell the ops that read the
cell's inputs have stride 2 and the channels double.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from nasforge.errors import SpaceError
from nasforge.spaces.cell_ops import PNAS_OPS, FactorizedReduce, ReLUConvBN, candidates
from nasforge.spaces.conv_utils import ConvKit, Reshape, conv_kit, global_pool
from nasforge.spaces.darts import _positive, run_cells

DEFAULT_OPS = ("identity", "sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3")
COMBINE = ("add", "concat")


class Block(nn.Module):
    def __init__(self, arch: Any, b: int, kit: ConvKit, c: int, ops: Sequence[str], combine: Sequence[str],
                 reduction: bool):
        super().__init__()
        sources = ["c0", "c1"] + [f"block{j}" for j in range(b)]
        self.inputs: list[str] = []
        self.ops = nn.ModuleList()
        for side in ("1", "2"):
            source = arch.inputs(f"block{b}/input{side}", sources, k=1)[0]
            stride = 2 if reduction and source in ("c0", "c1") else 1
            self.inputs.append(source)
            self.ops.append(arch.choice(f"block{b}/op{side}", candidates({o: PNAS_OPS[o] for o in ops}, kit, c, stride)))
        how = arch.categorical(f"block{b}/combine", list(combine)) if len(combine) > 1 else combine[0]
        self.merge = ReLUConvBN(kit, 2 * c, c, 1) if how == "concat" else None

    def forward(self, states: dict[str, torch.Tensor]) -> torch.Tensor:
        a, b = (op(states[source]) for op, source in zip(self.ops, self.inputs))
        return a + b if self.merge is None else self.merge(torch.cat([a, b], dim=1))


class PnasCell(nn.Module):
    def __init__(self, arch: Any, kit: ConvKit, c_pp: int, c_p: int, c: int, ops: Sequence[str],
                 combine: Sequence[str], max_blocks: int, reduction: bool, reduce_prev: bool):
        super().__init__()
        self.pre0 = FactorizedReduce(kit, c_pp, c) if reduce_prev else ReLUConvBN(kit, c_pp, c, 1)
        self.pre1 = ReLUConvBN(kit, c_p, c, 1)
        n = arch.int("blocks", 1, max_blocks)
        self.blocks = nn.ModuleList(Block(arch, b, kit, c, ops, combine, reduction) for b in range(n))
        read = {source for block in self.blocks for source in block.inputs}
        self.outputs = [f"block{b}" for b in range(n) if f"block{b}" not in read]
        self.channels = c * len(self.outputs)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = {"c0": self.pre0(s0), "c1": self.pre1(s1)}
        for b, block in enumerate(self.blocks):
            states[f"block{b}"] = block(states)
        return torch.cat([states[name] for name in self.outputs], dim=1)


class PnasNetwork(nn.Module):
    def __init__(self, arch: Any, kit: ConvKit, n_out: int, C: int, N: int, ops: Sequence[str],
                 combine: Sequence[str], max_blocks: int, stem_multiplier: int, stem_stride: int):
        super().__init__()
        self.reshape = Reshape(kit.shape)
        c_stem = stem_multiplier * C
        self.stem = nn.Sequential(kit.conv(kit.channels, c_stem, 3, stem_stride, 1, bias=False), kit.bn(c_stem))
        self.cells = nn.ModuleList()
        c_pp = c_p = c_stem
        c, reduce_prev = C, False
        for group in range(3):
            kinds = ([True] if group else []) + [False] * N
            for reduction in kinds:
                if reduction:
                    c *= 2
                cell = PnasCell(arch, kit, c_pp, c_p, c, ops, combine, max_blocks, reduction, reduce_prev)
                self.cells.append(cell)
                c_pp, c_p, reduce_prev = c_p, cell.channels, reduction
        self.classifier = nn.Linear(c_p, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(global_pool(run_cells(self.cells, self.stem(self.reshape(x)))))


def _names(name: str, value: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise SpaceError(f"Invalid {name} for the pnas space: {value!r} (must be a non-empty list of {', '.join(allowed)})")
    bad = [v for v in value if v not in allowed]
    if bad or len(set(value)) != len(value):
        raise SpaceError(f"Invalid {name} for the pnas space: {bad or list(value)} ({'unknown' if bad else 'repeated'}; "
                         f"allowed: {', '.join(allowed)})")
    return tuple(value)


def pnas(arch: Any, input_shape: Sequence[int], n_out: int, C: int = 8, N: int = 1, max_blocks: int = 5,
         ops: Sequence[str] = DEFAULT_OPS, combine: Sequence[str] = ("add",), stem_multiplier: int = 2,
         stem_stride: int = 1) -> nn.Module:
    """The PNAS cell space (Liu et al. 2018): cells of 1 to ``max_blocks`` blocks, CPU sized.

    ``N`` normal cells per group, three groups with a reduction cell between, first width ``C``;
    ``ops`` from identity, sep_conv_3x3/5x5/7x7, avg_pool_3x3, max_pool_3x3, conv_1x7_7x1, dil_conv_3x3
    (see the module); ``stem_stride=2`` halves the input first."""
    kit = conv_kit(input_shape, "pnas")
    for name, value in (("n_out", n_out), ("C", C), ("N", N), ("max_blocks", max_blocks),
                        ("stem_multiplier", stem_multiplier), ("stem_stride", stem_stride)):
        _positive(name, value)
    return PnasNetwork(arch, kit, n_out, C, N, _names("ops", ops, list(PNAS_OPS)), _names("combine", combine, COMBINE),
                       max_blocks, stem_multiplier, stem_stride)
