"""A group of NAS-RL CNN candidates as one network of grouped convolutions.

Every layer is one convolution with ``groups = C``: the candidates' inputs are laid out side by
side along channels (``(B, C * c_in, ...)``), each gathered by one ``index_select`` from a pool
``(B, C, channels, ...)`` of the sources any candidate reads, and each candidate's weights are
padded to the group's widest output, largest input and largest kernel
(:func:`~nasforge.engine.conv_layout.group_layout`). BatchNorm runs over the ``C * width``
channels: its statistics are per channel, so candidates stay independent, and each keeps the
running statistics its own BatchNorm would. The classifiers are one batched product.

The weights are views of one flat tensor multiplied by a fixed 0/1 mask in the forward pass, so
padded entries get zero gradients and stay exactly zero under Adam, AdamW and SGD, and one
optimiser step over the flat tensor updates every candidate as its own optimiser would (their
updates are elementwise). Backward is autograd's: for CNNs the arithmetic, not the graph, costs.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.engine.conv_layout import (IMAGE, ConvShape, feature_channels, group_layout, input_channels,
                                         kernel_slices)
from nasforge.engine.flat_optim import flat_optimizer
from nasforge.engine.losses import cross_entropy
from nasforge.train.state import clone_state, optimizer_slots, optimizer_state, with_step

_PREDICT_BYTES = 64 << 20  # activations of one forward pass when predicting, at most about
Index = tuple[Any, ...]


class StackedConvNet:
    """The :class:`~nasforge.engine.population.StackedNet` protocol for NAS-RL CNNs that share one
    :meth:`~nasforge.engine.conv_layout.ConvShape.key`; ``models[i]`` already hold the weights
    they continue from, ``states[i]`` (all None, or all states) their optimiser states."""

    def __init__(self, trainer: Any, models: list[nn.Module], shapes: list[ConvShape],
                 states: list[dict[str, Any] | None], data: Any):
        keys = {s.key() for s in shapes}
        if len(keys) != 1:
            raise ValueError(f"candidates of {len(keys)} different conv keys cannot stack (sizes differ)")
        self.trainer, self.models, self.shapes, self.task = trainer, models, shapes, data.task
        self.layout = lay = group_layout(shapes)
        self.C, first = len(shapes), shapes[0]
        self.image, self.dims, self.n_out = first.image, first.dims, first.n_out
        self.eps, self.momentum, self.pool_size = first.eps, first.momentum, math.prod(first.pooled)
        self.conv = F.conv1d if self.dims == 1 else F.conv2d
        self.pieces: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        for l, L in enumerate(lay.layers):
            self.pieces[f"conv{l}"] = (self.C, L.width, L.c_in, *L.kernel)
            self.pieces[f"gamma{l}"] = self.pieces[f"beta{l}"] = (self.C, L.width)
        self.pieces["fc_w"], self.pieces["fc_b"] = (self.C, first.n_out, lay.features), (self.C, first.n_out)
        device = trainer.device
        total = sum(math.prod(s) for s in self.pieces.values())
        self.flat = torch.zeros(total, device=device, requires_grad=True)
        mask = torch.zeros(total, device=device)
        self.places = [self._places(s) for s in shapes]
        self.gathers = [self._gather(l) for l in range(len(lay.layers))]
        self.names = [[name for name, _ in m.named_parameters()] for m in models]
        self.means = [torch.zeros(self.C, L.width, device=device) for L in lay.layers]
        self.vars = [torch.ones(self.C, L.width, device=device) for L in lay.layers]
        self.tracked = [torch.zeros(self.C, dtype=torch.long, device=device) for _ in lay.layers]
        for i, model in enumerate(models):
            self._load_model(i, model.to(device), mask)
        self.mask = mask
        self.optimizer = flat_optimizer(trainer, self.flat)
        per_row = 4 * self.C * sum((L.pool + L.c_in) * math.prod(L.size_in) + L.width * math.prod(L.size_out)
                                   for L in lay.layers)  # float32 pools, inputs and outputs
        self.predict_rows = max(1, _PREDICT_BYTES // per_row)
        if any(s is not None for s in states):
            if not all(s is not None for s in states):
                raise ValueError("a stacked conv group continues either every candidate's state or none")
            self._load_optimizer_states(states)  # type: ignore[arg-type]

    @torch.no_grad()
    def _load_model(self, i: int, model: nn.Module, mask: torch.Tensor) -> None:
        """Copy candidate i's weights and BatchNorm buffers into its slices; mark its entries in ``mask``."""
        own = model.state_dict()
        views, masks = self._views(self.flat), self._views(mask)
        for name in self.names[i]:
            piece, index = self.places[i][name]
            views[piece][i][index] = own[name]
            masks[piece][i][index] = 1.0
        for l in range(len(self.layout.layers)):
            width = self.places[i][f"layers.{l}.0.weight"][1][0]
            self.means[l][i, width] = own[f"layers.{l}.1.running_mean"]
            self.vars[l][i, width] = own[f"layers.{l}.1.running_var"]
            self.tracked[l][i] = own[f"layers.{l}.1.num_batches_tracked"]

    # --- layout ------------------------------------------------------------------------------
    def _places(self, shape: ConvShape) -> dict[str, tuple[str, Index]]:
        """Where each of a candidate's parameters sits in its slice of a stacked piece."""
        places: dict[str, tuple[str, Index]] = {}
        for l, (L, own) in enumerate(zip(self.layout.layers, shape.layers)):
            w = slice(0, own.c_out)
            places[f"layers.{l}.0.weight"] = (f"conv{l}", (w, slice(0, own.c_in), *kernel_slices(L.kernel, own.kernel)))
            places[f"layers.{l}.1.weight"] = (f"gamma{l}", (w,))
            places[f"layers.{l}.1.bias"] = (f"beta{l}", (w,))
        places["classifier.weight"] = ("fc_w", (slice(None), feature_channels(self.layout, shape)))
        places["classifier.bias"] = ("fc_b", (slice(None),))
        return places

    def _gather(self, l: int) -> torch.Tensor | None:
        """The channels of layer ``l``'s pool (viewed (B, C * pool, ...)) that make its input, or
        None where the pool is the input already."""
        L = self.layout.layers[l]
        index = torch.stack([input_channels(L, s, l) for s in self.shapes])  # (C, c_in)
        if L.c_in == L.pool and bool((index == torch.arange(L.c_in)).all()):
            return None
        return (index + L.pool * torch.arange(self.C).unsqueeze(1)).reshape(-1).to(self.trainer.device)

    def _views(self, buffer: torch.Tensor) -> dict[str, torch.Tensor]:
        views, at = {}, 0
        for name, shape in self.pieces.items():
            size = math.prod(shape)
            views[name] = buffer[at:at + size].view(shape)
            at += size
        return views

    # --- forward -----------------------------------------------------------------------------
    def _images(self, x: torch.Tensor) -> torch.Tensor:
        """Each candidate's own batch (C, B, ...) as images laid out (B, C, channels, *spatial)."""
        return x.reshape(self.C, x.shape[1], *self.image).transpose(0, 1)

    def _forward(self, images: torch.Tensor, training: bool) -> torch.Tensor:
        """(B, C, channels, *spatial) -> outputs (C, B, n_out)."""
        w = self._views(self.flat * self.mask)
        B, C = images.shape[0], self.C
        outputs: list[torch.Tensor] = []
        for l, L in enumerate(self.layout.layers):
            parts = [_pad_end(images if j == IMAGE else outputs[j], L.size_in) for j in L.sources]
            pool = (parts[0] if len(parts) == 1 else torch.cat(parts, 2)).reshape(B, C * L.pool, *L.size_in)
            inputs = pool if self.gathers[l] is None else pool.index_select(1, self.gathers[l])
            y = self.conv(inputs, w[f"conv{l}"].reshape(C * L.width, L.c_in, *L.kernel), None, L.stride,
                          tuple(k // 2 for k in L.kernel), 1, C)
            y = F.batch_norm(y, self.means[l].view(-1), self.vars[l].view(-1), w[f"gamma{l}"].reshape(-1),
                             w[f"beta{l}"].reshape(-1), training, self.momentum, self.eps)
            outputs.append(F.relu(y).view(B, C, L.width, *L.size_out))
        # global pooling over the padded size: the padding adds zeros to the sums
        feats = torch.cat([outputs[j].flatten(3).sum(3) for j in self.layout.final], 2) / self.pool_size
        return torch.baddbmm(w["fc_b"].unsqueeze(1), feats.transpose(0, 1), w["fc_w"].transpose(1, 2))

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return cross_entropy(out, y)
        pred = out[..., 0] if y.dim() == 2 and out.shape[-1] == 1 else out
        return (pred - y).pow(2).reshape(self.C, -1).mean(1)

    def step(self, x: torch.Tensor, y: torch.Tensor, also_predict: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        predicted = self.predict(also_predict) if also_predict is not None else None  # before the update
        with torch.enable_grad():
            self.flat.grad = None
            losses = self._loss(self._forward(self._images(x), training=True), y)
            losses.sum().backward()  # each candidate's loss reaches only its own weights
        self.optimizer.step()
        for t in self.tracked:
            t.add_(1)
        return losses.detach(), predicted

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for start in range(0, len(x), self.predict_rows):
            rows = x[start:start + self.predict_rows]
            images = rows.reshape(len(rows), 1, *self.image).expand(len(rows), self.C, *self.image)
            outs.append(self._forward(images, training=False))
        return torch.cat(outs, 1)

    # --- states ------------------------------------------------------------------------------
    def _load_optimizer_states(self, states: list[dict[str, Any]]) -> None:
        flat_slots: dict[str, torch.Tensor] = {}
        step = None
        slot_views: dict[str, dict[str, torch.Tensor]] = {}
        for i, (model, state) in enumerate(zip(self.models, states)):
            slots, step = optimizer_slots(self.trainer._make_optimizer_for, model, state["optimizer"])
            for name, slot in zip(self.names[i], slots):
                for k, value in slot.items():
                    if k not in flat_slots:
                        flat_slots[k] = torch.zeros_like(self.flat, requires_grad=False)
                        slot_views[k] = self._views(flat_slots[k])
                    piece, index = self.places[i][name]
                    slot_views[k][piece][i][index] = value
        if flat_slots:
            self.optimizer.state[self.flat] = with_step(step, flat_slots)

    @torch.no_grad()
    def export(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        model = self.models[i]
        views = self._views(self.flat)
        state = OrderedDict()
        for name in self.names[i]:
            piece, index = self.places[i][name]
            state[name] = views[piece][i][index]
        for l in range(len(self.layout.layers)):
            w = self.places[i][f"layers.{l}.0.weight"][1][0]
            state[f"layers.{l}.1.running_mean"] = self.means[l][i, w]
            state[f"layers.{l}.1.running_var"] = self.vars[l][i, w]
            state[f"layers.{l}.1.num_batches_tracked"] = self.tracked[l][i]
        model.load_state_dict(state)  # copies; the state dict returned below is cloned from the model
        saved = self.optimizer.state.get(self.flat) or {}
        slot_views = {k: self._views(v) for k, v in saved.items() if k != "step"}
        slots: list[dict[str, torch.Tensor]] = []
        for name in self.names[i]:
            piece, index = self.places[i][name]
            slots.append({k: views_k[piece][i][index].clone() for k, views_k in slot_views.items()})
        return clone_state(model.state_dict()), optimizer_state(self.trainer.param_group(), slots, saved.get("step"))


def _pad_end(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad the trailing spatial dimensions of ``x`` at their end up to ``size``."""
    extra = [target - have for have, target in zip(x.shape[x.dim() - len(size):], size)]
    if not any(extra):
        return x
    pads: list[int] = []
    for e in reversed(extra):
        pads += [0, e]
    return F.pad(x, pads)
