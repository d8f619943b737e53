"""The shape of an MLP candidate, where candidates sit in a stacked group, and what a group's
training step costs: what the grouping decides with and the stack is built from."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from torch import nn

from nasforge.engine.activations import kernels

STEP_US, LAYER_US, ROW_LAYER_US, SEGMENT_US, MIXED_US, EXIT_US, US_PER_MFLOP = 95.0, 2.0, 1.5, 11.5, 0.0, 16.0, 22.0
"""A group's training step, in microseconds: a fixed part (Python, op dispatch, loss, the
optimiser call, the training loop around the step); a part per stacked layer (its kernel calls);
a part per candidate and layer (the batched products run one small product per candidate); a
part per activation run of each hidden layer (a kernel call forward and one backward); when
depths mix, a part for assembling the output layer's input and its gradient, and one per depth;
and the padded arithmetic. Fitted by ``benchmarks/fit_step_cost.py`` (non-negative least
squares on relative error, 300 random groups of 1-16 candidates at iris', MNIST-1D's and
digits' input sizes, batches of 10 and 32, one thread), plus the training loop's own ~30 us a
step (measured apart); see benchmarks/README.md. Only the ratios matter: they choose the groups."""


@dataclass
class MLPShape:
    flatten: bool
    linears: list[nn.Linear]
    activations: list[nn.Module]

    @property
    def depth(self) -> int:
        return len(self.linears) - 1

    @property
    def flops(self) -> float:
        """Multiply-adds of one sample's forward pass (unpadded): the candidate's size."""
        return float(sum(lin.in_features * lin.out_features for lin in self.linears))

    @functools.cached_property
    def activation_keys(self) -> list[str]:
        """e.g. "GELU(approximate='none')" per layer; cached: grouping compares them often."""
        return [repr(a) for a in self.activations]


def mlp_shape(model: nn.Module) -> MLPShape | None:
    """The MLP structure of ``model``, or None if it is anything else."""
    if not isinstance(model, nn.Sequential):
        return None
    mods = list(model)
    flatten = bool(mods) and isinstance(mods[0], nn.Flatten) and mods[0].start_dim == 1 and mods[0].end_dim == -1
    mods = mods[1:] if flatten else mods
    if not mods or len(mods) % 2 == 0:
        return None
    linears, acts = mods[0::2], mods[1::2]
    if not all(type(m) is nn.Linear and m.bias is not None for m in linears):
        return None
    if not all(kernels(a) is not None for a in acts):
        return None
    if any(a.out_features != b.in_features for a, b in zip(linears, linears[1:])):
        return None
    return MLPShape(flatten, list(linears), list(acts))  # type: ignore[arg-type]


def stack_order(shape: MLPShape) -> tuple[int, list[str]]:
    """Sort key of a candidate's row in a stacked group: deepest first (what :class:`Layout`
    requires), then by activation (adjacent rows share kernel calls). :func:`step_cost` prices
    the group in this order, so it must be the order the group is built in."""
    return -shape.depth, shape.activation_keys


@dataclass(frozen=True)
class Layout:
    """Where C candidates of depths up to D sit in one stacked group. Rows are sorted deepest
    first, so hidden layer ``l`` holds the first ``rows[l]`` candidates (those deeper than ``l``)
    and the output layer (index D) holds all C: a shallow candidate costs nothing in the layers
    it lacks. Each layer is padded to its widest row. A candidate's output layer reads its last
    hidden layer, zero-padded to the output layer's input width ``dims[D][1]``."""

    rows: list[int]  # per layer 0..D
    dims: list[tuple[int, int]]  # per layer: padded (out, in)
    depths: list[int]  # per candidate (row)

    @property
    def padded_macs(self) -> int:
        """Multiply-adds of one sample's forward pass through the whole padded group."""
        return sum(r * o * i for r, (o, i) in zip(self.rows, self.dims))

    @property
    def exits(self) -> list[tuple[int, int, int]]:
        """(depth, first row, end row) of each run of rows of one depth."""
        out: list[tuple[int, int, int]] = []
        for i, d in enumerate(self.depths):
            if out and out[-1][0] == d:
                out[-1] = (d, out[-1][1], i + 1)
            else:
                out.append((d, i, i + 1))
        return out


def layout(linears: list[list[nn.Linear]]) -> Layout:
    """The layout of candidates with these Linear layers, given deepest first."""
    depths = [len(lins) - 1 for lins in linears]
    if depths != sorted(depths, reverse=True):
        raise ValueError(f"stacked MLP rows must be sorted deepest first, got depths {depths}")
    D = depths[0]
    rows = [sum(d > l for d in depths) for l in range(D)] + [len(linears)]
    widths = [max(lins[l].out_features for lins in linears[:rows[l]]) for l in range(D)]
    ins = [linears[0][0].in_features] + widths  # ins[d]: the padded width a depth-d row's output layer reads
    n_out = max(lins[-1].out_features for lins in linears)
    return Layout(rows, [(widths[l], ins[l]) for l in range(D)] + [(n_out, max(ins[d] for d in set(depths)))], depths)


def activation_runs(keys: list[list[str]], rows: list[int]) -> list[list[tuple[int, int]]]:
    """Per hidden layer ``l``: (first row, end row) of each run of consecutive rows with one
    activation among the layer's ``rows[l]`` rows (``keys[i][l]``: row i's activation there).
    A stacked group calls each activation kernel once per run; :func:`step_cost` prices them."""
    out = []
    for l, n in enumerate(rows[:-1]):
        runs: list[tuple[int, int]] = []
        for i in range(n):
            if runs and keys[i][l] == keys[i - 1][l]:
                runs[-1] = (runs[-1][0], i + 1)
            else:
                runs.append((i, i + 1))
        out.append(runs)
    return out


def step_cost(shapes: list[MLPShape], batch: int) -> float:
    """Estimated time of one training step of these candidates as one group (µs)."""
    if not shapes:
        return 0.0
    rows = sorted(shapes, key=stack_order)
    lay = layout([s.linears for s in rows])
    runs = sum(len(layer) for layer in activation_runs([s.activation_keys for s in rows], lay.rows))
    exits = len(lay.exits)
    return (STEP_US + LAYER_US * (len(lay.rows) - 1) + ROW_LAYER_US * sum(lay.rows[:-1]) + SEGMENT_US * runs
            + ((MIXED_US + EXIT_US * exits) if exits > 1 else 0.0) + US_PER_MFLOP * 6.0 * lay.padded_macs * batch / 1e6)
