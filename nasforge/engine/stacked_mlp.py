"""A group of MLP candidates as one padded, stacked network in a single flat buffer.

Hidden layer ``l`` holds the ``l``-th Linear of every candidate that has one, zero-padded to the
widest of them; the output layer holds every candidate's last Linear
(:class:`~nasforge.engine.mlp_layout.Layout`). All weights and biases are views of one flat tensor
(and all gradients of one flat gradient), so one optimiser step over one tensor updates every
candidate: Adam and SGD are elementwise, so each candidate's update is exactly the one its own
optimiser would make.

Forward and backward are written out with batched matrix products and ATen's activation
kernels: no autograd graph, which for small networks costs more than the arithmetic.
"""
from __future__ import annotations

import functools
import math
from collections import OrderedDict
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from nasforge.engine.activations import kernels
from nasforge.engine.flat_optim import flat_optimizer
from nasforge.engine.losses import log_softmax_classes, mean_nll
from nasforge.engine.mlp_layout import MLPShape, activation_runs, layout
from nasforge.train.state import optimizer_slots, optimizer_state, with_step
from nasforge.engine.workspace import Workspace

Saved = tuple[Workspace, torch.Tensor]
"""What backward needs of a forward pass: its workspace (activations and pre-activations) and x."""
_WORKSPACES = 4


class StackedMLP:
    """Weights ``W[l]`` (rows[l], out, in) and biases ``b[l]`` (rows[l], out) of C candidates
    (see :class:`~nasforge.engine.mlp_layout.Layout`), views of ``flat``.

    ``linears[i]`` are candidate i's Linear layers; ``activations[i]`` its activations. Rows
    must be sorted deepest first and, within a depth, so candidates sharing an activation are
    adjacent (fewer kernel calls).
    """

    def __init__(self, linears: list[list[nn.Linear]], activations: list[list[nn.Module]], device: torch.device):
        self.layout = layout(linears)
        self.C = len(linears)
        self.depth = len(self.layout.rows) - 1
        self.rows = self.layout.rows
        self.exits = self.layout.exits
        self.mixed = len(self.exits) > 1  # several depths: the output layer's input is assembled
        shapes = [(r, o, i) for r, (o, i) in zip(self.rows, self.layout.dims)]
        sizes = [r * o * i for r, o, i in shapes] + [r * o for r, o, _ in shapes]
        self.flat = torch.zeros(sum(sizes), device=device, requires_grad=True)
        self.flat.grad = torch.zeros_like(self.flat)
        self.offsets = [sum(sizes[:k]) for k in range(len(sizes))]
        self.shapes = shapes
        self.W = [self._view(self.flat, l) for l in range(self.depth + 1)]
        self.b = [self._view(self.flat, self.depth + 1 + l) for l in range(self.depth + 1)]
        self.gW = [self._view(self.flat.grad, l) for l in range(self.depth + 1)]
        self.gb = [self._view(self.flat.grad, self.depth + 1 + l) for l in range(self.depth + 1)]
        self.linears = linears
        self._indices: dict[int, torch.Tensor] = {}
        self._shapes: dict[int, tuple[list[tuple[int, ...]], list[int]]] = {}
        with torch.no_grad():
            self.scatter(self.flat, range(self.C), [[p for lin in lins for p in (lin.weight, lin.bias)] for lins in linears])
        # Per-step work is mostly dispatch: bind everything a step needs once.
        self.bias_rows = [b.unsqueeze(1) for b in self.b]
        self.W_t = [w.transpose(1, 2) for w in self.W]
        runs = activation_runs([[repr(a) for a in acts] for acts in activations], self.rows)
        pairs = [[kernels(activations[a][l]) for a, _ in layer] for l, layer in enumerate(runs)]
        self.forwards = [[k[0] for k in layer] for layer in pairs]  # type: ignore[index]
        self.backwards = [[k[1] for k in layer] for layer in pairs]  # type: ignore[index]
        self.run_sizes = [[e - a for a, e in layer] for layer in runs]  # a layer's runs cover its rows
        self._workspaces: OrderedDict[tuple[int, int], Workspace] = OrderedDict()
        self.max_workspaces = _WORKSPACES

    def _view(self, buffer: torch.Tensor, k: int) -> torch.Tensor:
        """Weights of layer k (k <= D) or biases of layer k - D - 1, as a view of ``buffer``."""
        r, o, i = self.shapes[k if k <= self.depth else k - self.depth - 1]
        shape = (r, o, i) if k <= self.depth else (r, o)
        return buffer[self.offsets[k]: self.offsets[k] + math.prod(shape)].view(shape)

    # --- forward / backward ------------------------------------------------------------------
    def _workspace(self, rows: int, trained: int, like: torch.Tensor) -> Workspace:
        """The buffers for this batch shape (a few shapes recur: the batch, the last one of an
        epoch, a batch with the validation rows, the validation set)."""
        key = (rows, trained)
        ws = self._workspaces.get(key)
        if ws is None:
            ws = self._workspaces[key] = Workspace(self, rows, trained, like)
            while len(self._workspaces) > self.max_workspaces:
                self._workspaces.popitem(last=False)
        else:
            self._workspaces.move_to_end(key)
        return ws

    def forward(self, x: torch.Tensor, keep: bool = False, trained: int | None = None) -> tuple[torch.Tensor, Saved | None]:
        """x (C, B, n_in) -> (C, B, n_out); with ``keep`` also what :meth:`backward` needs, which
        then sees only the first ``trained`` rows (default: all). The saved buffers are reused by
        the next forward pass of the same shape."""
        ws = self._workspace(x.shape[1], x.shape[1] if trained is None else trained, x)
        n = self.rows[0]
        h = x if x.shape[0] == n else x[:n]
        for l in range(self.depth):
            torch.baddbmm(self.bias_rows[l], h if l == 0 else ws.inputs[l], self.W_t[l], out=ws.z[l])
            for fwd, z_run, h_run in zip(self.forwards[l], ws.z_runs[l], ws.h_runs[l]):
                fwd(z_run, h_run)
        out = torch.baddbmm(self.bias_rows[self.depth], ws.final_input(x), self.W_t[self.depth])
        return out, ((ws, x) if keep else None)

    def backward(self, delta: torch.Tensor, saved: Saved) -> None:
        """Write the gradients of sum-over-candidates of the loss into ``flat.grad``, given
        ``delta`` = d loss / d output (C, B, n_out) of the trained rows."""
        ws, x = saved
        bw = ws.backward
        D, B = self.depth, delta.shape[1]
        if B < x.shape[1]:  # the rows past B were only predicted
            x = x[:, :B]
        torch.bmm(delta.transpose(1, 2), bw.final if D else x, out=self.gW[D])
        torch.sum(delta, dim=1, out=self.gb[D])
        if D == 0:
            return
        torch.bmm(delta, self.W[D], out=bw.g_final)  # d loss / d (output layer's input)
        for l in range(D - 1, -1, -1):
            # the gradient w.r.t. hidden layer l's output, made w.r.t. its pre-activation in place
            if self.mixed:  # from layer l + 1 for the rows that go on, from the output layer for those that end here
                if bw.on[l] is not None:
                    torch.bmm(bw.g[l + 1], self.W[l + 1], out=bw.on[l])
                if bw.ends[l] is not None:
                    into, source = bw.ends[l]
                    into.copy_(source)
            elif l < D - 1:
                torch.bmm(bw.g[l + 1], self.W[l + 1], out=bw.g[l])
            for bwd, g_run, z_run, h_run in zip(self.backwards[l], bw.g_runs[l], bw.z_runs[l], bw.h_runs[l]):
                bwd(g_run, z_run, h_run, g_run)
            n = self.rows[l]
            torch.bmm(bw.g_t[l], bw.inputs[l] if l else (x if x.shape[0] == n else x[:n]), out=self.gW[l])
            torch.sum(bw.g[l], dim=1, out=self.gb[l])

    # --- per-candidate views -----------------------------------------------------------------
    def _layer_of(self, i: int) -> list[tuple[int, nn.Linear]]:
        """(stacked layer, Linear) of each of candidate i's layers: its output layer is the group's."""
        lins = self.linears[i]
        return [(l if l < len(lins) - 1 else self.depth, lin) for l, lin in enumerate(lins)]

    def index_of(self, i: int) -> torch.Tensor:
        """Where candidate i's parameters sit in the flat buffers, in its model's parameter order
        (weight, bias per Linear), each row-major: its parameters are ``flat[index_of(i)]``."""
        index = self._indices.get(i)
        if index is None:
            parts = []
            shapes, _ = self.param_shapes(i)
            for (k, _), (out, width) in zip(self._layer_of(i), shapes[0::2]):
                _, out_pad, in_pad = self.shapes[k]
                rows = np.arange(out) * in_pad + (self.offsets[k] + i * out_pad * in_pad)  # row starts of its block
                parts.append((rows[:, None] + np.arange(width)).ravel())
                parts.append(np.arange(out) + (self.offsets[self.depth + 1 + k] + i * out_pad))
            index = self._indices[i] = torch.from_numpy(np.concatenate(parts)).to(self.flat.device)
        return index

    def param_shapes(self, i: int) -> tuple[list[tuple[int, ...]], list[int]]:
        """Candidate i's parameter shapes (model order) and their sizes; plain tuples, which
        ``view`` takes ~3x faster than ``torch.Size``."""
        shapes = self._shapes.get(i)
        if shapes is None:
            dims = [((lin.out_features, lin.in_features), (lin.out_features,)) for lin in self.linears[i]]
            flat = [shape for pair in dims for shape in pair]
            shapes = self._shapes[i] = (flat, [math.prod(shape) for shape in flat])
        return shapes

    def gather(self, buffer: torch.Tensor, i: int) -> list[torch.Tensor]:
        """Candidate i's parameter-shaped pieces of a flat buffer (its weights, or e.g. Adam's
        exp_avg), copied out with one indexing op; they share one storage of just its values."""
        shapes, sizes = self.param_shapes(i)
        pieces = buffer.detach().index_select(0, self.index_of(i)).split_with_sizes(sizes)
        return [piece.view(*shape) for piece, shape in zip(pieces, shapes)]

    def scatter(self, buffer: torch.Tensor, rows: Iterable[int], values: list[list[torch.Tensor]]) -> None:
        """Write the listed candidates' parameter-shaped tensors (``values[n]``: row ``rows[n]``'s,
        in its model's order) into a flat buffer: one copy for them all instead of one per tensor."""
        indices = [self.index_of(i) for i in rows]
        if not indices:
            return
        index = torch.cat(indices)
        flat = torch.cat([v.detach().reshape(-1) for per in values for v in per])
        buffer.detach().index_copy_(0, index, flat.to(buffer.dtype))


@functools.lru_cache(maxsize=64)
def _minus_ones(C: int, B: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.full((C, B, 1), -1.0, dtype=dtype, device=device)


def loss_and_delta(out: torch.Tensor, y: torch.Tensor, task: str, flat_targets: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-candidate mean loss (C,) and its gradient w.r.t. ``out`` for the sum over candidates
    (in place where it can: no autograd runs through this)."""
    C, B = y.shape[:2]
    if task == "classification":
        picks = y.unsqueeze(-1)
        logp = log_softmax_classes(out)
        losses = mean_nll(logp, picks)
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
    """A group of MLPs as a :class:`StackedMLP` with one optimiser over its buffer
    (the :class:`~nasforge.engine.population.StackedNet` protocol)."""

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
        per_candidate = [optimizer_slots(self.trainer._make_optimizer_for, m, s["optimizer"]) for m, s in zip(self.models, states)]
        slots_of = [slots for slots, _ in per_candidate]  # per candidate: one dict of slots per parameter
        step = per_candidate[-1][1]
        names = list(slots_of[0][0]) if slots_of[0] else []  # e.g. exp_avg, exp_avg_sq; none for plain SGD
        buffers: dict[str, torch.Tensor] = {}
        for name in names:
            buffers[name] = torch.zeros_like(flat, requires_grad=False)
            self.stack.scatter(buffers[name], range(len(states)), [[slot[name] for slot in slots] for slots in slots_of])
        if buffers:
            self.optimizer.state[flat] = with_step(step, buffers)

    def step(self, x: torch.Tensor, y: torch.Tensor, also_predict: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step of every candidate: the losses, and with ``also_predict`` (N inputs for all
        candidates) their outputs on them before the update, from the same forward pass (N rows
        more in each product instead of a second pass: for small networks that costs less)."""
        if torch.is_grad_enabled():  # the training loop runs under no_grad; a direct call may not
            with torch.no_grad():
                return self.step(x, y, also_predict)
        B = x.shape[1]
        if also_predict is not None:  # the training rows come first; backward sees only them
            x = torch.cat((x, also_predict.unsqueeze(0).expand(x.shape[0], *also_predict.shape)), 1)
        out, saved = self.stack.forward(x, keep=True, trained=B)
        predicted = None
        if also_predict is not None:
            out, predicted = out[:, :B], out[:, B:]
        losses, delta = loss_and_delta(out, y, self.task, self.flat_targets)
        self.stack.backward(delta, saved)  # type: ignore[arg-type]
        self.optimizer.step()
        return losses, predicted

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.stack.forward(x.unsqueeze(0).expand(self.stack.C, *x.shape))
        return out

    def export(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Candidate i's model and optimiser states in tensors of its own (one gather per buffer);
        its model object keeps the weights it started with."""
        model_state = self.models[i].state_dict()  # its keys and metadata; the values are replaced
        if len(model_state) != len(self.stack.param_shapes(i)[0]):
            raise ValueError("a stacked MLP's model has buffers or shared parameters")
        for name, value in zip(list(model_state), self.stack.gather(self.stack.flat, i)):
            model_state[name] = value
        saved = self.optimizer.state.get(self.stack.flat) or {}
        slots: list[dict[str, torch.Tensor]] = [{} for _ in model_state]
        for name, value in saved.items():
            if name != "step":
                for slot, piece in zip(slots, self.stack.gather(value, i)):
                    slot[name] = piece
        return model_state, optimizer_state(self.trainer.param_group(), slots, saved.get("step"))
