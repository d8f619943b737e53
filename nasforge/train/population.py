"""Train many MLP candidates at once: one batched pass instead of one small model at a time.

Small networks spend almost all their time in per-step overhead (Python, op dispatch, the
optimiser loop), not in arithmetic. Candidates of the form ``[Flatten,] Linear, act, ...,
Linear`` are stacked into one padded network and trained with batched matrix products:

* candidates of one depth form a group (several groups per depth when a cost model of padded
  FLOPs against per-step overhead says so); each layer is zero-padded to the group's widest.
  With activations where ``f(0) = 0`` a padded unit outputs 0 and receives a zero gradient, so it
  stays zero and changes nothing;
* every candidate keeps its own data order, optimiser state, curve and checkpoint, in exactly
  the format :class:`~nasforge.train.trainer.SupervisedTrainer` uses, so a candidate trained
  here can be promoted and continued there, and the reverse.

Losses equal training each candidate alone, up to float rounding (a test checks it).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nasforge.train.data import Data
from nasforge.train.stacked_mlp import StackedMLP, loss_and_delta
from nasforge.train.state import clone_state
from nasforge.train.trainer import (
    SupervisedTrainer,
    _fixed_order,
    _Run,
    _steps_per_epoch,
)
from nasforge.types import EvalResult

ZERO_PRESERVING = (nn.ReLU, nn.Tanh, nn.GELU, nn.ELU, nn.SiLU, nn.LeakyReLU, nn.Identity)
"""Activations with f(0) = 0: only these keep zero-padded units at exactly zero."""
OVERHEAD_FLOPS = 1.5e7
"""What one extra group costs per training step, in floating-point operations: the fixed
per-step work (Python, op dispatch, autograd, the optimiser) takes ~1 ms on a CPU core, as long
as ~15 MFLOP of small batched matrix products (measured at ~15 GFLOP/s)."""


@dataclass
class MLPShape:
    flatten: bool
    linears: list[nn.Linear]
    activations: list[nn.Module]

    @property
    def depth(self) -> int:
        return len(self.linears) - 1

    @property
    def width(self) -> int:
        return max((lin.out_features for lin in self.linears[:-1]), default=0)


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
    if not all(isinstance(a, ZERO_PRESERVING) for a in acts):
        return None
    if any(a.out_features != b.in_features for a, b in zip(linears, linears[1:])):
        return None
    return MLPShape(flatten, list(linears), list(acts))  # type: ignore[arg-type]


@dataclass
class Candidate:
    """One job's model and where its training stands."""

    model: nn.Module
    shape: MLPShape
    run: _Run
    budget: float
    state: dict[str, Any] | None  # the state it continues from (None: fresh)
    result: EvalResult | None = None
    error: str | None = None  # set when this candidate failed (its result stays None)
    curve: list[dict[str, float]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None


def _activation_key(act: nn.Module) -> str:
    return repr(act)  # e.g. "GELU(approximate='none')", "LeakyReLU(negative_slope=0.01)"


class PopulationTrainer:
    """Trains groups of MLP candidates together with the settings of a :class:`SupervisedTrainer`."""

    def __init__(self, trainer: SupervisedTrainer, max_group: int = 64):
        self.trainer = trainer
        self.max_group = max_group

    @staticmethod
    def supports(model: nn.Module) -> bool:
        return mlp_shape(model) is not None

    def candidate(self, model: nn.Module, budget: float, state: dict[str, Any] | None) -> Candidate:
        """Call right after building ``model`` under the trial's seed: a fresh candidate draws its
        shuffling seed from torch's global RNG exactly as the one-by-one trainer does."""
        shape = mlp_shape(model)
        if shape is None:
            raise ValueError("not an MLP of Linear layers and zero-preserving activations")
        run = _Run(torch.Generator())
        if state:
            model.load_state_dict(state["model"])
            run.load(state)
        else:
            run.generator.manual_seed(int(torch.randint(0, 2**62, (1,))))
        return Candidate(model, shape, run, budget, state)

    def key(self, cand: Candidate, data: Data) -> tuple[Any, ...]:
        """Candidates with equal keys may train in one group (same steps, target and subset)."""
        probe = copy.copy(cand.run)  # plan() may reset a data-fraction run; keep the real one as it is
        subset, target = self.trainer.plan(len(data.x_train), cand.budget, probe)
        return (cand.shape.flatten, probe.steps, probe.position, subset, target)

    def train(self, candidates: list[Candidate], data: Data) -> None:
        """Train candidates that share one key; each gets ``result`` (or ``error``) set."""
        self.trainer.check_budget(candidates[0].budget)
        data = self.trainer._data(data)
        for group in self._groups(candidates):
            _Group(self.trainer, group, data).train()

    def _groups(self, candidates: list[Candidate]) -> list[list[Candidate]]:
        """Candidates of one depth, by size; a candidate joins the previous group while one padded
        group costs less than two. Within a group, rows are ordered by activation."""
        order = sorted(candidates, key=lambda c: (c.shape.depth, _flops(c)))
        batch = self.trainer.batch_size
        groups: list[list[Candidate]] = []
        for cand in order:
            last = groups[-1] if groups else None
            if last and len(last) < self.max_group and last[0].shape.depth == cand.shape.depth and \
                    _cost(last + [cand], batch) <= _cost(last, batch) + _cost([cand], batch):
                last.append(cand)
            else:
                groups.append([cand])
        return [sorted(g, key=lambda c: [_activation_key(a) for a in c.shape.activations]) for g in groups]


def _widths(group: list[Candidate]) -> list[int]:
    """Padded width of each layer's output: the widest candidate there (same depth in a group)."""
    return [max(c.shape.linears[j].out_features for c in group) for j in range(group[0].shape.depth + 1)]


def _flops(cand: Candidate) -> float:
    return float(sum(lin.in_features * lin.out_features for lin in cand.shape.linears))


def _cost(group: list[Candidate], batch: int) -> float:
    """FLOPs of one training step of the padded group (forward + backward), plus its fixed cost."""
    widths = _widths(group)
    n_in = group[0].shape.linears[0].in_features
    per_sample = sum(a * b for a, b in zip([n_in] + widths[:-1], widths))
    return 6.0 * len(group) * per_sample * batch + OVERHEAD_FLOPS


class _Group:
    """Trains one group of candidates as a :class:`StackedMLP` with one optimiser over its buffer."""

    def __init__(self, trainer: SupervisedTrainer, cands: list[Candidate], data: Data):
        self.trainer, self.cands, self.data = trainer, cands, data
        self.stack = StackedMLP([c.shape.linears for c in cands], [c.shape.activations for c in cands], trainer.device)
        self.optimizer = trainer._make_optimizer_for([self.stack.flat])
        if cands[0].state is not None:
            self._load_optimizer_states()

    @property
    def device(self) -> torch.device:
        return self.trainer.device

    def _load_optimizer_states(self) -> None:
        """Pad each candidate's saved optimiser slots into flat buffers of the group optimiser."""
        flat = self.stack.flat
        slots: dict[str, torch.Tensor] = {}
        step = None
        for i, cand in enumerate(self.cands):
            tensors, step = _optimizer_tensors(self.trainer, cand)
            for name in tensors[0]:
                buffer = slots.setdefault(name, torch.zeros_like(flat, requires_grad=False))
                for dst, src in zip(self.stack.slot_slices(buffer, i), (t[name] for t in tensors)):
                    dst.copy_(src)
        if slots:
            self.optimizer.state[flat] = {"step": step.clone(), **slots}  # type: ignore[union-attr]

    # --- training ----------------------------------------------------------------------------
    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimiser step of every candidate; returns each one's mean batch loss."""
        flat_targets = self.data.task == "regression" and self.data.y_train.dim() == 1
        if self.stack.manual:
            with torch.no_grad():
                out, saved = self.stack.forward(x, keep=True)
                losses, delta = loss_and_delta(out, y, self.data.task, flat_targets)
                self.stack.backward(delta, saved)
        else:  # an activation without a hand-written derivative: let autograd do it
            self.stack.flat.grad = None
            with torch.enable_grad():
                out, _ = self.stack.forward(x)
                losses, _ = loss_and_delta(out, y, self.data.task, flat_targets)
                losses.sum().backward()
        self.optimizer.step()
        return losses.detach()

    def train(self) -> None:
        trainer, data = self.trainer, self.data
        n = len(data.x_train)
        x_all = data.x_train.flatten(1) if self.cands[0].shape.flatten else data.x_train
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
        orders = torch.stack([r.order for r in runs]) if lead.position else None  # resuming mid-epoch
        while lead.steps < target:
            stepped = True
            if lead.position == 0:
                for r in runs:
                    r.order = torch.randperm(subset, generator=r.generator).to(self.device)
                    if fixed is not None:
                        r.order = fixed[r.order]
                orders = torch.stack([r.order for r in runs])  # type: ignore[misc]
            idx = orders[:, lead.position:lead.position + trainer.batch_size]  # type: ignore[index]
            size = idx.shape[1]
            totals += self._step(x_all[idx], data.y_train[idx]) * size
            count += size
            lead.steps, lead.position, lead.seen = lead.steps + 1, lead.position + size, lead.seen + size
            if lead.position >= subset:
                lead.position = 0
            lead.epoch = lead.steps / per_epoch if trainer.budget_unit == "epochs" else lead.seen / n
            if lead.position == 0 or lead.steps == target:
                self._fail_nonfinite(totals, lead.epoch)  # checked per epoch: no device sync per step
                self._record(totals / count, lead.epoch)
                totals.zero_()
                count = 0
        for r in runs:
            r.steps, r.seen, r.position, r.epoch = lead.steps, lead.seen, lead.position, lead.epoch
        if not stepped:  # the budget was already reached: report where the candidates stand
            self._record(None, lead.epoch)
        self._finish(time.perf_counter() - start)

    @torch.no_grad()
    def _validate(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.data.x_val.flatten(1) if self.cands[0].shape.flatten else self.data.x_val
        out, _ = self.stack.forward(x.unsqueeze(0).expand(len(self.cands), *x.shape))
        y = self.data.y_val.unsqueeze(0).expand(len(self.cands), *self.data.y_val.shape)
        flat_targets = self.data.task == "regression" and self.data.y_train.dim() == 1
        loss, _ = loss_and_delta(out, y, self.data.task, flat_targets)
        if self.data.task == "classification":
            return loss, (out.argmax(-1) == y).float().mean(1)
        return loss, None

    def _record(self, train_loss: torch.Tensor | None, epoch: float) -> None:
        loss, acc = self._validate()
        for i, cand in enumerate(self.cands):
            if cand.done:
                continue
            point = {"epoch": epoch}
            if train_loss is not None:
                point["train_loss"] = float(train_loss[i])
            point["val_loss"] = float(loss[i])
            if not math.isfinite(point["val_loss"]):
                cand.error = f"FloatingPointError: validation loss became {point['val_loss']} after epoch {epoch:.3g}"
                continue
            if acc is not None:
                point["val_accuracy"] = float(acc[i])
            else:
                point["val_rmse"] = math.sqrt(point["val_loss"])
            cand.curve.append(point)

    def _fail_nonfinite(self, values: torch.Tensor, epoch: float) -> None:
        """A candidate whose loss is not finite fails. Its parameters are its own slice of the
        buffer, so its NaNs never reach the others, which train on unchanged."""
        if bool(torch.isfinite(values).all()):
            return
        for cand, value in zip(self.cands, values.tolist()):
            if not math.isfinite(value) and not cand.done:
                cand.error = f"FloatingPointError: training loss became {value} by epoch {epoch:.3g}"

    def _finish(self, seconds: float) -> None:
        with torch.no_grad():
            for i, cand in enumerate(self.cands):
                if cand.done:
                    continue
                for weight, bias, lin in self.stack.layer_slices(i):
                    lin.weight.copy_(weight)
                    lin.bias.copy_(bias)
                metrics = dict(cand.curve[-1])
                metrics["params"] = float(sum(p.numel() for p in cand.model.parameters()))
                metrics["train_seconds"] = seconds / len(self.cands)
                state = {"model": clone_state(cand.model.state_dict()), "optimizer": self._optimizer_state(i),
                         **cand.run.dump()}
                cand.result = EvalResult(metrics, list(cand.curve), state)

    def _optimizer_state(self, i: int) -> dict[str, Any]:
        """The candidate's slice of the group optimiser, in a one-model optimiser's format."""
        params = list(self.cands[i].model.parameters())
        single = self.trainer._make_optimizer_for(params)
        saved = self.optimizer.state.get(self.stack.flat)
        if saved:
            per_param: list[dict[str, torch.Tensor]] = [{} for _ in params]
            for name, value in saved.items():
                if name == "step":
                    for slot in per_param:
                        slot[name] = value.clone()
                    continue
                for slot, piece in zip(per_param, self.stack.slot_slices(value, i)):
                    slot[name] = piece.clone()
            for p, slot in zip(params, per_param):
                single.state[p] = slot
        return single.state_dict()


def _optimizer_tensors(trainer: SupervisedTrainer, cand: Candidate) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
    """The candidate's saved optimiser slots, per parameter in model order, and its step count."""
    params = list(cand.model.parameters())
    single = trainer._make_optimizer_for(params)
    single.load_state_dict(clone_state(cand.state["optimizer"]))  # type: ignore[index]
    tensors = [{k: v for k, v in single.state[p].items() if k != "step"} for p in params]
    step = single.state[params[0]].get("step", torch.tensor(0.0))
    return tensors, torch.as_tensor(step, dtype=torch.float32)
