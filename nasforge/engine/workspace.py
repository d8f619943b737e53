"""Preallocated activations of a stacked MLP group, with every per-run view bound once.

A step of a group whose layers mix activations calls each activation kernel on a run of rows,
which took a split of every buffer into runs (~5 us each) and fresh buffers per layer, forward
and backward: ~10% of such a step. A workspace holds those buffers and their runs for one batch
shape, so a step makes neither (steps 7-17% faster on groups of 5-20 mixed candidates; the same
kernels on the same values, so bitwise the same results).
"""
from __future__ import annotations

from typing import Any

import torch


class Workspace:
    """Buffers for batches of ``rows`` inputs, of which backward sees the first ``trained`` (a
    step can also predict extra rows in its forward pass). ``stack`` is the
    :class:`~nasforge.engine.stacked_mlp.StackedMLP`; ``like`` gives dtype and device."""

    def __init__(self, stack: Any, rows: int, trained: int, like: torch.Tensor):
        self.stack, self.rows, self.trained = stack, rows, trained
        self.options = {"dtype": like.dtype, "device": like.device}  # not ``like`` itself: a batch would stay alive
        depth, runs = stack.depth, stack.run_sizes
        self.z = [torch.empty(stack.rows[l], rows, stack.shapes[l][1], **self.options) for l in range(depth)]  # pre-activations
        self.h = [torch.empty(stack.rows[l], rows, stack.shapes[l][1], **self.options) for l in range(depth)]  # activations
        self.z_runs = [z.split_with_sizes(runs[l]) for l, z in enumerate(self.z)]
        self.h_runs = [h.split_with_sizes(runs[l]) for l, h in enumerate(self.h)]
        # each hidden layer's input from layer 1 on: the previous layer's activations, its own rows
        self.inputs = [None] + [self.h[l - 1][:stack.rows[l]] for l in range(1, depth)]
        self.final: torch.Tensor | None = None  # mixed depths: the output layer's input, zero-padded
        self.exits: list[tuple[torch.Tensor, torch.Tensor | None, int, int]] = []  # (into final, from h or x: None, rows)
        if stack.mixed:
            self.final = torch.zeros(stack.C, rows, stack.shapes[depth][2], **self.options)
            for d, a, e in stack.exits:
                source = self.h[d - 1][a:e] if d else None
                width = stack.shapes[d - 1][1] if d else stack.shapes[0][2]
                self.exits.append((self.final[a:e, :, :width], source, a, e))
        self._backward: _BackwardBuffers | None = None

    def final_input(self, x: torch.Tensor) -> torch.Tensor:
        """The output layer's input after a forward pass of ``x``."""
        if self.final is None:
            return self.h[-1] if self.h else x
        for into, source, a, e in self.exits:
            into.copy_(source if source is not None else x[a:e])
        return self.final

    @property
    def backward(self) -> "_BackwardBuffers":
        """The buffers backward needs (made on first use: a workspace that only predicts has none)."""
        if self._backward is None:
            self._backward = _BackwardBuffers(self)
        return self._backward


class _BackwardBuffers:
    """Gradients w.r.t. each hidden layer's pre-activation (``g``) and w.r.t. the output layer's
    input (``g_final``), and views of the forward buffers' trained rows, all split into runs."""

    def __init__(self, ws: Workspace):
        stack, B, options = ws.stack, ws.trained, ws.options
        depth, runs = stack.depth, stack.run_sizes
        self.g = [torch.empty(stack.rows[l], B, stack.shapes[l][1], **options) for l in range(depth)]
        self.g_t = [g.transpose(1, 2) for g in self.g]
        self.g_runs = [g.split_with_sizes(runs[l]) for l, g in enumerate(self.g)]
        predicted_rows = ws.trained < ws.rows  # rows past the trained ones: views of the trained rows only
        self.z_runs = [z[:, :B].split_with_sizes(runs[l]) for l, z in enumerate(ws.z)] if predicted_rows else ws.z_runs
        self.h_runs = [h[:, :B].split_with_sizes(runs[l]) for l, h in enumerate(ws.h)] if predicted_rows else ws.h_runs
        self.inputs = [None] + [inputs[:, :B] for inputs in ws.inputs[1:]]  # the forward pass's, trained rows
        if ws.final is not None:
            self.final = ws.final[:, :B]
            self.g_final = torch.empty(stack.C, B, stack.shapes[depth][2], **options)
            # per hidden layer l: where the gradient w.r.t. its output comes from: layer l + 1 for
            # the rows that go on (``on``), the output layer for those that end at l (``ends``)
            self.on: list[torch.Tensor | None] = []
            self.ends: list[tuple[torch.Tensor, torch.Tensor] | None] = []
            for l, g in enumerate(self.g):
                on, n = stack.rows[l + 1] if l + 1 < depth else 0, stack.rows[l]
                self.on.append(g[:on] if on else None)
                self.ends.append((g[on:], self.g_final[on:n, :, :g.shape[2]]) if n > on else None)
        else:  # one depth: the output layer reads the last hidden layer, and its gradient is that layer's
            self.final = ws.h[-1][:, :B] if depth else None
            self.g_final = self.g[-1] if depth else None
