"""Which NAS-RL CNN candidates of one conv key train together as one stacked group.

A stacked group pays for its padding (every candidate computes the group's widest output,
largest input and largest kernel, :func:`~nasforge.engine.conv_layout.group_layout`) and saves
the fixed cost of the steps it replaces. :func:`step_cost` prices both; groups merge, the pair
that saves most first, while a merge saves (candidates of different kernel sizes share a group
only where the padded kernel arithmetic costs less than the other group's fixed cost).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from nasforge.engine.conv_layout import ConvShape, group_layout
from nasforge.engine.grouping import merge_while_saving


@dataclass(frozen=True)
class StepCost:
    """A group's training step in microseconds: ``step_us`` once, ``candidate_us`` per candidate,
    ``mmac_us`` per million padded multiply-adds of the batch's forward pass and ``mact_us`` per
    million padded activation elements (inputs and outputs of every layer, for the batch)."""

    step_us: float
    candidate_us: float
    mmac_us: float
    mact_us: float


COSTS = {1: StepCost(1620.0, 714.0, 100.8, 0.0), 2: StepCost(0.0, 2524.0, 56.9, 0.0)}
"""Fitted per dimensionality (non-negative least squares on relative error) to the step times of
:class:`~nasforge.engine.stacked_conv.StackedConvNet` on one thread, batch 32, filters
(8, 16, 32): 80 random groups of 1-16 NAS-RL candidates of one key on MNIST-1D (1-D, length 40;
median error 7%; the activation term did not improve the fit) and 60 on digits (2-D, 8x8; 26%),
on a CPU shared with another process. On 2-D inputs oneDNN's grouped convolution costs about
what the candidates' own convolutions cost one after another (C=8, 16 -> 16 channels, 3x3 on
8x8: 3.8 ms against 4.1), so stacking saves no fixed cost there and the fit finds none: 2-D
candidates stay single (and train one by one). Checked on the largest keys among 400 random
1-D candidates (18, 22 and 26 of one key): the model's groups stepped 8-17% faster than the
candidates one by one (it predicted 21-25%), one group of all of them twice as slow."""


def step_cost(shapes: list[ConvShape], batch: int) -> float:
    """Estimated time of one training step of these candidates as one group (µs)."""
    if not shapes:
        return 0.0
    lay = group_layout(shapes)
    cost = COSTS[shapes[0].dims]
    acts = lay.C * batch * sum((L.c_in + L.width) * math.prod(L.size_out) for L in lay.layers)
    return (cost.step_us + cost.candidate_us * lay.C + cost.mmac_us * lay.padded_macs() * batch / 1e6
            + cost.mact_us * acts / 1e6)


def conv_groups(shapes: list[ConvShape], batch: int, max_group: int) -> list[list[int]]:
    """Indices of ``shapes`` (one conv key) partitioned into groups of at most ``max_group``,
    each in ascending order; groups in the order of their first member. Single candidates merge
    as MLP groups do (:func:`~nasforge.engine.grouping.merge_while_saving`)."""
    merged = merge_while_saving([[i] for i in range(len(shapes))],
                                lambda members: step_cost([shapes[i] for i in members], batch), max_group)
    return sorted(sorted(group) for group in merged)
