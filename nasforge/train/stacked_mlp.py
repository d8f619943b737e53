"""A group of same-depth MLP candidates as one padded, stacked network in a single flat buffer.

Layer ``l`` holds every candidate's ``l``-th Linear, zero-padded to the widest of them. All
weights and biases are views of one flat tensor (and all gradients of one flat gradient), so one
optimiser step over one tensor updates every candidate: Adam and SGD are elementwise, so each
candidate's update is exactly the one its own optimiser would make.

Forward and backward are written out with batched matrix products and ATen's activation
kernels: no autograd graph, which for small networks costs more than the arithmetic.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasforge.train.activations import kernels, native
from nasforge.train.flat_optim import flat_optimizer
from nasforge.train.state import optimizer_slots, optimizer_state, with_step

OVERHEAD_FLOPS = 1.5e7
"""What one extra group costs per training step, in floating-point operations: the fixed
per-step work (Python, op dispatch, the optimiser call) as the FLOPs that take as long. A fit of
step times against padded FLOPs on iris-sized groups (depths 1-6, 1-30 candidates, one core)
gave ~0.6 ms fixed and ~31 GFLOP/s, i.e. ~1.8e7; 1.5e7 is within its noise."""


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
        return float(sum(lin.in_features * lin.out_features for lin in self.linears))

    @property
    def activation_keys(self) -> list[str]:
        return [repr(a) for a in self.activations]  # e.g. "GELU(approximate='none')"


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




def _widths(linears: list[list[nn.Linear]]) -> list[int]:
    """Padded width of each layer's output: the widest candidate there (same depth in a group)."""
    return [max(lins[j].out_features for lins in linears) for j in range(len(linears[0]))]


def mlp_cost(shapes: list[MLPShape], batch: int) -> float:
    """FLOPs of one training step of the padded group (forward + backward), plus its fixed cost."""
    if not shapes:
        return 0.0
    widths = _widths([s.linears for s in shapes])
    n_in = shapes[0].linears[0].in_features
    per_sample = sum(a * b for a, b in zip([n_in] + widths[:-1], widths))
    return 6.0 * len(shapes) * per_sample * batch + OVERHEAD_FLOPS


class StackedMLP:
    """Weights ``W[l]`` (C, out, in) and biases ``b[l]`` (C, out) of C candidates, views of ``flat``.

    ``linears[i]`` are candidate i's Linear layers; ``activations[i]`` its activations.
    Rows must be sorted so candidates sharing an activation are adjacent (fewer kernel calls).
    """

    def __init__(self, linears: list[list[nn.Linear]], activations: list[list[nn.Module]], device: torch.device):
        self.C = len(linears)
        self.depth = len(linears[0]) - 1
        self.n_in = linears[0][0].in_features
        self.widths = _widths(linears)
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
        # Per-step work is mostly dispatch: bind everything a step needs once.
        self.bias_rows = [b.unsqueeze(1) for b in self.b]
        self.W_t = [w.transpose(1, 2) for w in self.W]
        segments = _segments(activations, self.depth)
        pairs = [[(kernels(act), a, e) for act, a, e in layer] for layer in segments]
        self.forwards = [[(k[0], a, e) for k, a, e in layer] for layer in pairs]  # type: ignore[index]
        self.uniform = [native(layer[0][0]) if len(layer) == 1 else None for layer in segments]
        self.backwards = [[(k[1], a, e) for k, a, e in layer] for layer in pairs]  # type: ignore[index]

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
            z = torch.baddbmm(self.bias_rows[l], h, self.W_t[l])
            if keep:
                saved.append((h, z))
            uniform = self.uniform[l]
            if uniform is not None:
                h = uniform(z)
            else:
                h = torch.empty_like(z)
                for fwd, a, e in self.forwards[l]:
                    fwd(z[a:e], h[a:e])
        if keep:
            saved.append((h, h))
        return torch.baddbmm(self.bias_rows[self.depth], h, self.W_t[self.depth]), saved

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
            delta = torch.bmm(delta, self.W[l])  # the gradient w.r.t. h, made w.r.t. z in place below
            runs = self.backwards[l - 1]
            if len(runs) == 1:
                runs[0][0](delta, z_prev, out_prev, delta)
            else:
                for bwd, a, e in runs:
                    part = delta[a:e]
                    bwd(part, z_prev[a:e], out_prev[a:e], part)

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


@functools.lru_cache(maxsize=64)
def _minus_ones(C: int, B: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.full((C, B, 1), -1.0, dtype=dtype, device=device)


def loss_and_delta(out: torch.Tensor, y: torch.Tensor, task: str, flat_targets: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-candidate mean loss (C,) and its gradient w.r.t. ``out`` for the sum over candidates
    (in place where it can: no autograd runs through this)."""
    C, B = y.shape[:2]
    if task == "classification":
        picks = y.unsqueeze(-1)
        logp = torch.log_softmax(out, dim=-1)
        losses = logp.gather(-1, picks).mean(1).squeeze(-1).neg_()
        delta = logp.exp_()  # softmax; minus one at the target below
        delta.scatter_add_(-1, picks, _minus_ones(C, B, out.dtype, out.device))
        return losses, delta.div_(B)
    pred = out[..., 0] if flat_targets else out
    diff = pred - y.to(pred.dtype)
    losses = diff.square().reshape(C, B, -1).mean(-1).mean(1)
    k = 1 if flat_targets else diff.shape[-1]
    delta = diff.mul_(2.0 / (B * k))
    return losses, delta.unsqueeze(-1) if flat_targets else delta


class MLPNet:
    """A group of same-depth MLPs as a :class:`StackedMLP` with one optimiser over its buffer
    (the :class:`~nasforge.train.population.StackedNet` protocol)."""

    def __init__(self, trainer: Any, models: list[nn.Module], shapes: list[MLPShape], states: list[dict[str, Any] | None],
                 data: Any):
        self.trainer, self.models, self.shapes = trainer, models, shapes
        self.task = data.task
        self.flat_targets = data.task == "regression" and data.y_train.dim() == 1
        self.stack = StackedMLP([s.linears for s in shapes], [s.activations for s in shapes], trainer.device)
        self.optimizer = flat_optimizer(trainer, self.stack.flat)
        if states[0] is not None:
            self._load_optimizer_states(states)  # type: ignore[arg-type]

    def _load_optimizer_states(self, states: list[dict[str, Any]]) -> None:
        """Pad each candidate's saved optimiser slots into flat buffers of the group optimiser."""
        flat = self.stack.flat
        buffers: dict[str, torch.Tensor] = {}
        step = None
        for i, (model, state) in enumerate(zip(self.models, states)):
            slots, step = optimizer_slots(self.trainer._make_optimizer_for, model, state["optimizer"])
            for name in slots[0]:
                buffer = buffers.setdefault(name, torch.zeros_like(flat, requires_grad=False))
                for dst, slot in zip(self.stack.slot_slices(buffer, i), slots):
                    dst.copy_(slot[name])
        if buffers:
            self.optimizer.state[flat] = with_step(step, buffers)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One step of every candidate."""
        if torch.is_grad_enabled():  # the training loop runs under no_grad; a direct call may not
            with torch.no_grad():
                return self.step(x, y)
        out, saved = self.stack.forward(x, keep=True)
        losses, delta = loss_and_delta(out, y, self.task, self.flat_targets)
        self.stack.backward(delta, saved)
        self.optimizer.step()
        return losses

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.stack.forward(x.unsqueeze(0).expand(self.stack.C, *x.shape))
        return out

    def export(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        model = self.models[i]
        with torch.no_grad():
            for weight, bias, lin in self.stack.layer_slices(i):
                lin.weight.copy_(weight)
                lin.bias.copy_(bias)
        saved = self.optimizer.state.get(self.stack.flat) or {}
        slots: list[dict[str, torch.Tensor]] = [{} for _ in model.parameters()]
        for name, value in saved.items():
            if name != "step":
                for slot, piece in zip(slots, self.stack.slot_slices(value, i)):
                    slot[name] = piece.clone()
        return model.state_dict(), optimizer_state(self.trainer.param_group(), slots, saved.get("step"))
