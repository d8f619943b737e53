"""A group of same-depth MLP candidates as one padded, stacked network in a single flat buffer.

Layer ``l`` holds every candidate's ``l``-th Linear, zero-padded to the widest of them. All
weights and biases are views of one flat tensor (and all gradients of one flat gradient), so one
optimiser step over one tensor updates every candidate: Adam and SGD are elementwise, so each
candidate's update is exactly the one its own optimiser would make.

Forward and backward are written out with batched matrix products when every activation has a
known derivative (the usual case): no autograd graph, which for small networks costs more than
the arithmetic. Other activations fall back to autograd over the same buffers.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

Backward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(gradient w.r.t. the activation's output, its input z, its output h) -> gradient w.r.t. z."""
_A = torch.ops.aten  # the same backward kernels autograd runs, one call each


def derivative(act: nn.Module) -> Backward | None:
    """The backward of the activations we differentiate by hand; None: use autograd."""
    if isinstance(act, nn.ReLU):
        return lambda g, z, h: _A.threshold_backward(g, h, 0)
    if isinstance(act, nn.Tanh):
        return lambda g, z, h: _A.tanh_backward(g, h)
    if isinstance(act, nn.GELU):
        approximate = act.approximate
        return lambda g, z, h: _A.gelu_backward(g, z, approximate=approximate)
    if isinstance(act, nn.SiLU):
        return lambda g, z, h: _A.silu_backward(g, z)
    if isinstance(act, nn.ELU):
        alpha = float(act.alpha)
        return lambda g, z, h: _A.elu_backward(g, alpha, 1, 1, False, h)
    if isinstance(act, nn.LeakyReLU):
        slope = float(act.negative_slope)
        return lambda g, z, h: _A.leaky_relu_backward(g, z, slope, False)
    if isinstance(act, nn.Identity):
        return lambda g, z, h: g
    return None


class StackedMLP:
    """Weights ``W[l]`` (C, out, in) and biases ``b[l]`` (C, out) of C candidates, views of ``flat``.

    ``linears[i]`` are candidate i's Linear layers; ``activations[i]`` its activations.
    Rows must be sorted so candidates sharing an activation are adjacent (fewer kernel calls).
    """

    def __init__(self, linears: list[list[nn.Linear]], activations: list[list[nn.Module]], device: torch.device):
        self.C = len(linears)
        self.depth = len(linears[0]) - 1
        self.n_in = linears[0][0].in_features
        self.widths = [max(lin[j].out_features for lin in linears) for j in range(self.depth + 1)]
        dims = [(w, self.n_in if l == 0 else self.widths[l - 1]) for l, w in enumerate(self.widths)]
        sizes = [self.C * o * i for o, i in dims] + [self.C * o for o, _ in dims]
        self.flat = torch.zeros(sum(sizes), device=device, requires_grad=True)
        self.flat.grad = torch.zeros_like(self.flat)
        self.offsets = [sum(sizes[:k]) for k in range(len(sizes))]
        self.W = [self._view(self.flat, l, dims) for l in range(self.depth + 1)]
        self.b = [self._view(self.flat, self.depth + 1 + l, dims) for l in range(self.depth + 1)]
        self.gW = [self._view(self.flat.grad, l, dims) for l in range(self.depth + 1)]
        self.gb = [self._view(self.flat.grad, self.depth + 1 + l, dims) for l in range(self.depth + 1)]
        self.dims = dims
        self.linears = linears
        with torch.no_grad():
            for i, lins in enumerate(linears):
                for l, lin in enumerate(lins):
                    self.W[l][i, :lin.out_features, :lin.in_features] = lin.weight.detach().to(device)
                    self.b[l][i, :lin.out_features] = lin.bias.detach().to(device)
        self.segments = _segments(activations, self.depth)
        self.manual = all(derivative(act) is not None for layer in self.segments for act, _, _ in layer)

    def _view(self, buffer: torch.Tensor, k: int, dims: list[tuple[int, int]]) -> torch.Tensor:
        l = k if k <= self.depth else k - self.depth - 1
        o, i = dims[l]
        shape = (self.C, o, i) if k <= self.depth else (self.C, o)
        return buffer[self.offsets[k]: self.offsets[k] + math.prod(shape)].view(shape)

    # --- forward / backward ------------------------------------------------------------------
    def forward(self, x: torch.Tensor, keep: bool = False) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """x (C, B, n_in) -> (C, B, n_out); with ``keep`` also each layer's (input, pre-activation)."""
        saved = []
        h = x
        for l in range(self.depth):
            z = torch.baddbmm(self.b[l].unsqueeze(1), h, self.W[l].transpose(1, 2))
            if keep:
                saved.append((h, z))
            runs = self.segments[l]
            h = runs[0][0](z) if len(runs) == 1 else torch.cat([act(z[a:e]) for act, a, e in runs])
        if keep:
            saved.append((h, h))
        return torch.baddbmm(self.b[self.depth].unsqueeze(1), h, self.W[self.depth].transpose(1, 2)), saved

    def backward(self, delta: torch.Tensor, saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Write the gradients of sum-over-candidates of the loss into ``flat.grad``, given
        ``delta`` = d loss / d output (C, B, n_out)."""
        for l in range(self.depth, -1, -1):
            h_in = saved[l][0]
            torch.bmm(delta.transpose(1, 2), h_in, out=self.gW[l])
            torch.sum(delta, dim=1, out=self.gb[l])
            if l == 0:
                break
            z_prev = saved[l - 1][1]  # pre-activation of the hidden layer below
            out_prev = saved[l][0]  # its activation output, which fed layer l
            grad_h = torch.bmm(delta, self.W[l])
            runs = self.segments[l - 1]
            if len(runs) == 1:
                delta = derivative(runs[0][0])(grad_h, z_prev, out_prev)  # type: ignore[misc]
            else:
                delta = torch.cat([derivative(act)(grad_h[a:e], z_prev[a:e], out_prev[a:e])  # type: ignore[misc]
                                   for act, a, e in runs])

    # --- per-candidate views -----------------------------------------------------------------
    def layer_slices(self, i: int) -> list[tuple[torch.Tensor, torch.Tensor, nn.Linear]]:
        """Candidate i's (weight, bias) inside the padded buffers, with its Linear."""
        out = []
        for l, lin in enumerate(self.linears[i]):
            out.append((self.W[l][i, :lin.out_features, :lin.in_features], self.b[l][i, :lin.out_features], lin))
        return out

    def slot_slices(self, buffer: torch.Tensor, i: int) -> list[torch.Tensor]:
        """Candidate i's parameter-shaped slices of a flat buffer (e.g. Adam's exp_avg), in the
        order of its model's parameters (weight, bias per Linear)."""
        out: list[torch.Tensor] = []
        for l, lin in enumerate(self.linears[i]):
            w = self._view(buffer, l, self.dims)[i, :lin.out_features, :lin.in_features]
            b = self._view(buffer, self.depth + 1 + l, self.dims)[i, :lin.out_features]
            out += [w, b]
        return out


def _segments(activations: list[list[nn.Module]], depth: int) -> list[list[tuple[nn.Module, int, int]]]:
    """Per hidden layer: runs of consecutive rows with the same activation."""
    out = []
    for l in range(depth):
        runs: list[tuple[nn.Module, int, int]] = []
        for i, acts in enumerate(activations):
            if runs and repr(runs[-1][0]) == repr(acts[l]):
                runs[-1] = (runs[-1][0], runs[-1][1], i + 1)
            else:
                runs.append((acts[l], i, i + 1))
        out.append(runs)
    return out


def loss_and_delta(out: torch.Tensor, y: torch.Tensor, task: str, flat_targets: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-candidate mean loss (C,) and its gradient w.r.t. ``out`` for the sum over candidates."""
    C, B = y.shape[:2]
    if task == "classification":
        logp = torch.log_softmax(out, dim=-1)
        losses = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(1)
        delta = torch.exp(logp)
        delta.scatter_add_(-1, y.unsqueeze(-1), torch.full((C, B, 1), -1.0, dtype=out.dtype, device=out.device))
        return losses, delta / B
    pred = out[..., 0] if flat_targets else out
    diff = pred - y.to(pred.dtype)
    per_row = diff.pow(2).reshape(C, B, -1).mean(-1)
    losses = per_row.mean(1)
    k = 1 if flat_targets else diff.shape[-1]
    delta = (2.0 / (B * k)) * diff
    return losses, delta.unsqueeze(-1) if flat_targets else delta

