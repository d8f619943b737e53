"""Train many candidates at once: one batched pass instead of one small model at a time.

Small networks spend almost all their time in per-step overhead (Python, op dispatch, the
optimiser loop), not in arithmetic, so candidates that are ready together (a rung, a batch of
proposals) train together:

* MLPs (``[Flatten,] Linear, act, ..., Linear``) of any depths are stacked into one zero-padded
  network (:mod:`nasforge.engine.stacked_mlp`); a fitted model of step time (fixed costs against
  padded arithmetic) decides how candidates are grouped (:mod:`nasforge.engine.grouping`);
* NAS-RL CNNs whose feature maps have the same sizes (widths, kernels and skip sets may differ)
  train as one network of grouped convolutions (:mod:`nasforge.engine.stacked_conv`), grouped by
  a fitted model of step time (:mod:`nasforge.engine.conv_grouping`);
* candidates with one identical architecture, of any kind (CNNs without BatchNorm too), stack
  their weights with ``torch.func`` and train under ``vmap`` (:mod:`nasforge.engine.vmap_net`);
* everything else trains one by one, elsewhere.

Every candidate keeps its own data order, optimiser state, curve and checkpoint, in exactly the
format :class:`~nasforge.train.trainer.SupervisedTrainer` uses, so a candidate trained here can
be promoted and continued there, and the reverse. Losses equal training each candidate alone, up
to float rounding (tests check it).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from nasforge.train.data import Data
from nasforge.engine.alone import train_alone
from nasforge.engine.conv_grouping import conv_groups
from nasforge.engine.conv_layout import ConvShape, conv_shape
from nasforge.train.state import torch_threads
from nasforge.engine.grouping import mlp_groups
from nasforge.engine.losses import cross_entropy
from nasforge.engine.mlp_layout import MLPShape, mlp_shape, stack_order
from nasforge.engine.stacked_conv import StackedConvNet
from nasforge.engine.stacked_mlp import MLPNet
from nasforge.train.trainer import SupervisedTrainer, _fixed_order, _Run, _steps_per_epoch, final_metrics, start_run
from nasforge.engine.vmap_net import VmapNet, vmap_supported
from nasforge.types import EvalResult


@dataclass
class Candidate:
    """One job's model and where its training stands."""

    model: nn.Module
    shape: MLPShape | None  # None: not an MLP; it may be a NAS-RL CNN (conv) or train with identical twins under vmap
    signature: str  # equal signatures: the same architecture
    run: _Run
    budget: float
    state: dict[str, Any] | None  # the state it continues from (None: fresh)
    result: EvalResult | None = None
    error: str | None = None  # set when this candidate failed (its result stays None)
    curve: list[dict[str, float]] = field(default_factory=list)
    conv: ConvShape | None = None  # set for a NAS-RL CNN: it stacks with others of its conv key

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None


class StackedNet(Protocol):
    """C candidates as one network: what the shared training loop needs of it."""

    def step(self, x: torch.Tensor, y: torch.Tensor, also_predict: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None]: ...  # (C, B, ...) -> losses (C,), and predict(also_predict) before the update
    def predict(self, x: torch.Tensor) -> torch.Tensor: ...  # one input batch for all -> (C, N, n_out)
    def export(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]: ...  # candidate i's (model, optimizer) states, in tensors of its own


VALIDATION_RIDES_ROWS = 128
"""Validation sets of at most this many rows are computed in the next step's forward pass (see
``_Loop.train``). With more rows the extra work in that pass outweighs the calls it saves
(iris-sized groups, one core: 50 rows 4-15% faster, 100-114 rows 5-13% faster in 3 of 4 cases,
200 rows 1-20% slower, digits' 360 rows 4-9% slower)."""


class PopulationTrainer:
    """Trains groups of candidates together with the settings of a :class:`SupervisedTrainer`."""

    def __init__(self, trainer: SupervisedTrainer, max_group: int = 32):
        # Larger groups step slower per candidate once their buffers outgrow the caches: 100 BO
        # candidates' step times summed 122 ms in groups of <= 32, 129 in <= 64, 131 in <= 128.
        self.trainer = trainer
        self.max_group = max_group

    @staticmethod
    def supports(model: nn.Module) -> bool:
        return mlp_shape(model) is not None or conv_shape(model) is not None or vmap_supported(model)

    def candidate(self, model: nn.Module, budget: float, state: dict[str, Any] | None, signature: str = "") -> Candidate:
        """Call right after building ``model`` under the trial's seed: a fresh candidate draws its
        shuffling seed from torch's global RNG exactly as the one-by-one trainer does."""
        shape = mlp_shape(model)
        conv = conv_shape(model) if shape is None else None
        if shape is None and conv is None and not vmap_supported(model):
            raise ValueError("neither an MLP of Linear layers and zero-preserving activations, a NAS-RL CNN "
                             "nor a vmap-able model")
        return Candidate(model, shape, signature or repr(model), start_run(model, state), budget, state, conv=conv)

    def key(self, cand: Candidate, data: Data) -> tuple[Any, ...]:
        """Candidates with equal keys may train in one pass (same steps, target and subset; for
        NAS-RL CNNs the same feature-map sizes; for others, the same architecture)."""
        probe = copy.copy(cand.run)  # plan() may reset a data-fraction run; keep the real one as it is
        subset, target = self.trainer.plan(len(data.x_train), cand.budget, probe)
        if cand.shape is not None:
            kind: tuple[Any, ...] = ("mlp", cand.shape.flatten)
        elif cand.conv is not None:
            kind = ("conv", cand.conv.key())
        else:
            kind = ("vmap", cand.signature)
        return (*kind, probe.steps, probe.position, subset, target)

    @staticmethod
    def pays(key: tuple[Any, ...], count: int) -> bool:
        """A lone non-MLP (no identical twin, no CNN of its sizes) has nothing to stack with, so it
        trains one by one."""
        return key[0] == "mlp" or count > 1

    def train(self, candidates: list[Candidate], data: Data) -> None:
        """Train candidates that share one key; each gets ``result`` (or ``error``) set."""
        with torch_threads(self.trainer.threads):
            self._train(candidates, data)

    def _train(self, candidates: list[Candidate], data: Data) -> None:
        self.trainer.check_budget(candidates[0].budget)
        data = self.trainer._data(data)
        if candidates[0].conv is not None:
            for group in self._conv_groups(candidates):
                if len(group) == 1:  # nothing to stack with: exactly the one-by-one training
                    train_alone(self.trainer, group[0], data)
                    continue
                net = StackedConvNet(self.trainer, [c.model for c in group], [c.conv for c in group],  # type: ignore[misc]
                                     [c.state for c in group], data)
                _Loop(self.trainer, group, data, net).train()
            return
        if candidates[0].shape is None:
            for start in range(0, len(candidates), self.max_group):
                group = candidates[start:start + self.max_group]
                _Loop(self.trainer, group, data, VmapNet(self.trainer, [c.model for c in group], [c.state for c in group], data)).train()
            return
        for group in self._mlp_groups(candidates):
            net = MLPNet(self.trainer, [c.model for c in group], [c.shape for c in group], [c.state for c in group], data)  # type: ignore[misc]
            _Loop(self.trainer, group, data, net).train()

    def _conv_groups(self, candidates: list[Candidate]) -> list[list[Candidate]]:
        """Candidates of one conv key grouped by :func:`~nasforge.engine.conv_grouping.conv_groups`."""
        index = conv_groups([c.conv for c in candidates], self.trainer.batch_size, self.max_group)  # type: ignore[misc]
        return [[candidates[i] for i in g] for g in index]

    def _mlp_groups(self, candidates: list[Candidate]) -> list[list[Candidate]]:
        """Candidates grouped by :func:`~nasforge.engine.grouping.mlp_groups` (depths may mix);
        rows deepest first, then by activation."""
        index = mlp_groups([c.shape for c in candidates], self.trainer.batch_size, self.max_group)  # type: ignore[misc]
        return [sorted((candidates[i] for i in g), key=lambda c: stack_order(c.shape)) for g in index]  # type: ignore[arg-type]


class _Batches:
    """Each candidate's mini-batches in its own order, gathered a chunk of steps at a time (one
    indexing op per chunk instead of two per step), at most ~``max_bytes`` of inputs at once."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, max_bytes: int = 32 << 20):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.max_bytes = max_bytes
        self._orders: torch.Tensor | None = None
        self._start = self._stop = 0
        self._xs: tuple[torch.Tensor, ...] = ()
        self._ys: tuple[torch.Tensor, ...] = ()

    def at(self, orders: torch.Tensor, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (C, B, ...) and targets (C, B, ...) of the batch starting at ``position``."""
        end = min(position + self.batch_size, orders.shape[1])
        if orders is not self._orders or position < self._start or end > self._stop:
            row_bytes = orders.shape[0] * max(1, self.x[0].numel()) * self.x.element_size()
            steps = max(1, self.max_bytes // max(1, row_bytes * self.batch_size))
            self._orders, self._start = orders, position
            self._stop = min(orders.shape[1], position + steps * self.batch_size)
            chunk = orders[:, self._start:self._stop]
            # the chunk's batches as views made at once: steps advance a batch at a time from its start
            self._xs = _gather_rows(self.x, chunk).split(self.batch_size, 1)
            self._ys = _gather_rows(self.y, chunk).split(self.batch_size, 1)
        piece = (position - self._start) // self.batch_size
        return self._xs[piece], self._ys[piece]


def _gather_rows(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``t[index]`` for a 2-D ``index`` as one ``index_select``: 4-5x faster than advanced
    indexing (digits' 1,203 rows for 4 candidates: 70 us against 262)."""
    return t.index_select(0, index.reshape(-1)).view(*index.shape, *t.shape[1:])


class _Loop:
    """The training loop of one group, shared by every kind of stacked network: per-candidate
    data orders, steps, epochs, curves and the states to continue from, as the trainer keeps them."""

    def __init__(self, trainer: SupervisedTrainer, cands: list[Candidate], data: Data, net: StackedNet):
        self.trainer, self.cands, self.data, self.net = trainer, cands, data, net
        self.flatten = cands[0].shape is not None and cands[0].shape.flatten

    @property
    def device(self) -> torch.device:
        return self.trainer.device

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) if self.flatten else x

    @torch.no_grad()  # the nets compute their own gradients (by hand, or torch.func under vmap)
    def train(self) -> None:
        trainer, data = self.trainer, self.data
        n = len(data.x_train)
        x_all = self._inputs(data.x_train)
        for cand in self.cands[1:]:
            trainer.plan(n, cand.budget, cand.run)
        subset, target = trainer.plan(n, self.cands[0].budget, self.cands[0].run)
        fixed = _fixed_order(n, self.device) if subset < n else None
        runs = [c.run for c in self.cands]
        lead = _Run(runs[0].generator)  # every run is at the same place: step one counter, copy at the end
        lead.steps, lead.seen, lead.position, lead.epoch = runs[0].steps, runs[0].seen, runs[0].position, runs[0].epoch
        per_epoch = _steps_per_epoch(n, trainer.batch_size)
        start = time.perf_counter()
        totals = torch.zeros(len(runs), device=self.device)
        count, stepped = 0, False
        orders = torch.stack([r.order for r in runs]) if lead.position else None  # type: ignore[misc]  # resuming mid-epoch
        batches = _Batches(x_all, data.y_train, trainer.batch_size)
        x_val = self._inputs(data.x_val)
        rides = len(x_val) <= VALIDATION_RIDES_ROWS
        pending: tuple[torch.Tensor, float] | None = None  # an epoch's end whose validation rides on the next step
        while lead.steps < target:
            stepped = True
            if lead.position == 0:
                for r in runs:
                    r.order = torch.randperm(subset, generator=r.generator).to(self.device)
                    if fixed is not None:
                        r.order = fixed[r.order]
                orders = torch.stack([r.order for r in runs])  # type: ignore[misc]
            x, y = batches.at(orders, lead.position)  # type: ignore[arg-type]
            size = x.shape[1]
            losses, val_out = self.net.step(x, y, x_val if pending is not None else None)
            if pending is not None:  # the weights at the epoch's end are those this step started from
                self._record(*pending, out=val_out)
                pending = None
            totals.add_(losses, alpha=size)
            count += size
            lead.steps, lead.position, lead.seen = lead.steps + 1, lead.position + size, lead.seen + size
            if lead.position >= subset:
                lead.position = 0
            lead.epoch = lead.steps / per_epoch if trainer.budget_unit == "epochs" else lead.seen / n
            if lead.position == 0 or lead.steps == target:
                self._fail_nonfinite(totals, lead.epoch)  # checked per epoch: no device sync per step
                if rides and lead.steps < target:  # validate in the next step's forward pass: a pass fewer
                    pending = (totals / count, lead.epoch)
                else:
                    self._record(totals / count, lead.epoch)
                totals.zero_()
                count = 0
        for r in runs:
            r.steps, r.seen, r.position, r.epoch = lead.steps, lead.seen, lead.position, lead.epoch
        if not stepped:  # the budget was already reached: report where the candidates stand
            self._record(None, lead.epoch)
        self._finish(time.perf_counter() - start)

    @torch.no_grad()
    def _validate(self, out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validation loss (C,) and accuracy (C,) or None, from the outputs on the validation set
        (``out``; computed here when not given)."""
        if out is None:
            out = self.net.predict(self._inputs(self.data.x_val))
        y = self.data.y_val.unsqueeze(0).expand(len(self.cands), *self.data.y_val.shape)
        C, N = y.shape[:2]
        if self.data.task == "classification":
            return cross_entropy(out, y), (out.argmax(-1) == y).float().mean(1)
        pred = out[..., 0] if self.data.y_train.dim() == 1 and out.shape[-1] == 1 else out
        return (pred - y).pow(2).reshape(C, N, -1).mean(-1).mean(1), None

    def _record(self, train_loss: torch.Tensor | None, epoch: float, out: torch.Tensor | None = None) -> None:
        loss_t, acc_t = self._validate(out)
        losses = loss_t.tolist()  # one transfer each, not one per candidate
        accs = acc_t.tolist() if acc_t is not None else None
        trains = train_loss.tolist() if train_loss is not None else None
        for i, cand in enumerate(self.cands):
            if cand.done:
                continue
            point = {"epoch": epoch}
            if trains is not None:
                point["train_loss"] = trains[i]
            point["val_loss"] = losses[i]
            if not math.isfinite(point["val_loss"]):
                cand.error = f"FloatingPointError: validation loss became {point['val_loss']} after epoch {epoch:.3g}"
                continue
            if accs is not None:
                point["val_accuracy"] = accs[i]
            else:
                point["val_rmse"] = math.sqrt(point["val_loss"])
            cand.curve.append(point)

    def _fail_nonfinite(self, values: torch.Tensor, epoch: float) -> None:
        """A candidate whose loss is not finite fails. Its parameters are its own slice of every
        stacked tensor, so its NaNs never reach the others, which train on unchanged."""
        if bool(torch.isfinite(values).all()):
            return
        for cand, value in zip(self.cands, values.tolist()):
            if not math.isfinite(value) and not cand.done:
                cand.error = f"FloatingPointError: training loss became {value} by epoch {epoch:.3g}"

    def _finish(self, seconds: float) -> None:
        for i, cand in enumerate(self.cands):
            if cand.done:
                continue
            model_state, optimizer_state = self.net.export(i)
            metrics = final_metrics(cand.curve[-1], cand.curve, cand.run, cand.model, seconds / len(self.cands))
            state = {"model": model_state, "optimizer": optimizer_state, **cand.run.dump()}
            cand.result = EvalResult(metrics, list(cand.curve), state)
