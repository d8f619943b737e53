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
from nasforge.train.trainer import SupervisedTrainer, _fixed_order, _Run, _steps_per_epoch
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
    """One padded, stacked network of same-depth candidates: layer l holds every candidate's
    l-th Linear, zero-padded to the widest of them."""

    def __init__(self, trainer: SupervisedTrainer, cands: list[Candidate], data: Data):
        self.trainer, self.cands, self.data = trainer, cands, data
        self.depth = cands[0].shape.depth
        self.n_in = cands[0].shape.linears[0].in_features
        self.widths = _widths(cands)
        self.weights, self.biases = self._stack()
        self.segments = self._activation_segments()
        self.params = self.weights + self.biases
        self.optimizer = trainer._make_optimizer_for(self.params)
        self._load_optimizer_states()

    @property
    def device(self) -> torch.device:
        return self.trainer.device

    def _stack(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        C = len(self.cands)
        weights, biases = [], []
        for l, out_dim in enumerate(self.widths):
            in_dim = self.n_in if l == 0 else self.widths[l - 1]
            weights.append(torch.zeros(C, out_dim, in_dim, device=self.device))
            biases.append(torch.zeros(C, out_dim, device=self.device))
        with torch.no_grad():
            for i, cand in enumerate(self.cands):
                for l, lin in enumerate(cand.shape.linears):
                    weights[l][i, :lin.out_features, :lin.in_features] = lin.weight.to(self.device)
                    biases[l][i, :lin.out_features] = lin.bias.to(self.device)
        for t in weights + biases:
            t.requires_grad_(True)
        return weights, biases

    def _activation_segments(self) -> list[list[tuple[nn.Module, int, int]]]:
        """Per hidden layer: runs of consecutive rows sharing an activation (rows are sorted)."""
        out = []
        for l in range(self.depth):
            runs: list[tuple[nn.Module, int, int]] = []
            for i, cand in enumerate(self.cands):
                act = cand.shape.activations[l]
                if runs and _activation_key(runs[-1][0]) == _activation_key(act):
                    runs[-1] = (runs[-1][0], runs[-1][1], i + 1)
                else:
                    runs.append((act, i, i + 1))
            out.append(runs)
        return out

    def _load_optimizer_states(self) -> None:
        """Pad and stack each candidate's saved optimiser state into the group optimiser."""
        if self.cands[0].state is None:
            return
        per_cand = [_optimizer_tensors(self.trainer, c) for c in self.cands]
        step = per_cand[0][1]
        for p_index, param in enumerate(self.params):
            slots: dict[str, torch.Tensor] = {}
            for name in per_cand[0][0][0]:
                stacked = torch.zeros_like(param)
                for i, (tensors, _) in enumerate(per_cand):
                    self._place(stacked, i, p_index, tensors, name)
                slots[name] = stacked
            self.optimizer.state[param] = {"step": step.clone(), **slots}

    def _place(self, stacked: torch.Tensor, i: int, p_index: int, tensors: list[dict[str, torch.Tensor]], name: str) -> None:
        n_layers = self.depth + 1
        is_bias, l = p_index >= n_layers, p_index % n_layers
        t = tensors[2 * l + int(is_bias)][name]
        if is_bias:
            stacked[i, :t.shape[0]] = t
        else:
            stacked[i, :t.shape[0], :t.shape[1]] = t

    # --- training ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (C, B, n_in) -> (C, B, n_out)."""
        h = x
        for l in range(self.depth):
            z = torch.baddbmm(self.biases[l].unsqueeze(1), h, self.weights[l].transpose(1, 2))
            runs = self.segments[l]
            h = runs[0][0](z) if len(runs) == 1 else torch.cat([act(z[a:b]) for act, a, b in runs])
        return torch.baddbmm(self.biases[self.depth].unsqueeze(1), h, self.weights[self.depth].transpose(1, 2))

    def _losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-candidate mean loss: out (C, B, n_out), y (C, B) -> (C,)."""
        C, B = y.shape
        if self.data.task == "classification":
            per = nn.functional.cross_entropy(out.reshape(C * B, -1), y.reshape(-1), reduction="none")
        else:
            pred = out[..., 0] if self.data.y_train.dim() == 1 else out
            per = nn.functional.mse_loss(pred.reshape(C * B, -1), y.reshape(C * B, -1).to(pred.dtype), reduction="none").mean(1)
        return per.view(C, B).mean(1)

    def train(self) -> None:
        trainer, data = self.trainer, self.data
        n = len(data.x_train)
        x_all = data.x_train.flatten(1) if self.cands[0].shape.flatten else data.x_train
        for cand in self.cands[1:]:
            trainer.plan(n, cand.budget, cand.run)
        subset, target = trainer.plan(n, self.cands[0].budget, self.cands[0].run)
        fixed = _fixed_order(n, self.device) if subset < n else None
        runs = [c.run for c in self.cands]
        start = time.perf_counter()
        totals = torch.zeros(len(runs), device=self.device)
        count, stepped = 0, False
        orders = torch.stack([r.order for r in runs]) if runs[0].position else None  # resuming mid-epoch
        while runs[0].steps < target:
            stepped = True
            if runs[0].position == 0:
                for r in runs:
                    r.order = torch.randperm(subset, generator=r.generator).to(self.device)
                    if fixed is not None:
                        r.order = fixed[r.order]
                orders = torch.stack([r.order for r in runs])  # type: ignore[misc]
            pos = runs[0].position
            idx = orders[:, pos:pos + trainer.batch_size]  # type: ignore[index]
            losses = self._losses(self.forward(x_all[idx]), data.y_train[idx])
            self.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # candidates share no parameters: each gets its own gradient
            self.optimizer.step()
            values = losses.detach()
            totals += values * idx.shape[1]
            count += idx.shape[1]
            for r in runs:
                r.steps, r.position, r.seen = r.steps + 1, r.position + idx.shape[1], r.seen + idx.shape[1]
                if r.position >= subset:
                    r.position = 0
                r.epoch = r.steps / _steps_per_epoch(n, trainer.batch_size) if trainer.budget_unit == "epochs" else r.seen / n
            if runs[0].position == 0 or runs[0].steps == target:
                self._fail_nonfinite(totals, runs[0].epoch)  # checked per epoch: no device sync per step
                self._record(totals / count, runs[0].epoch)
                totals.zero_()
                count = 0
        if not stepped:  # the budget was already reached: report where the candidates stand
            self._record(None, runs[0].epoch)
        self._finish(time.perf_counter() - start)

    @torch.no_grad()
    def _validate(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.data.x_val.flatten(1) if self.cands[0].shape.flatten else self.data.x_val
        out = self.forward(x.unsqueeze(0).expand(len(self.cands), -1, -1))
        y = self.data.y_val.unsqueeze(0).expand(len(self.cands), *self.data.y_val.shape)
        loss = self._losses(out, y)
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
        """A candidate whose loss is not finite fails. Its parameters are its own slice of every
        tensor, so its NaNs never reach the others, which train on unchanged."""
        if bool(torch.isfinite(values).all()):
            return
        for cand, value in zip(self.cands, values.tolist()):
            if not math.isfinite(value) and not cand.done:
                cand.error = f"FloatingPointError: training loss became {value} at epoch {epoch:.3g}"

    def _finish(self, seconds: float) -> None:
        with torch.no_grad():
            for i, cand in enumerate(self.cands):
                if cand.done:
                    continue
                for l, lin in enumerate(cand.shape.linears):
                    lin.weight.copy_(self.weights[l][i, :lin.out_features, :lin.in_features])
                    lin.bias.copy_(self.biases[l][i, :lin.out_features])
                metrics = dict(cand.curve[-1])
                metrics["params"] = float(sum(p.numel() for p in cand.model.parameters()))
                metrics["train_seconds"] = seconds / len(self.cands)
                state = {"model": copy.deepcopy(cand.model.state_dict()), "optimizer": self._optimizer_state(i),
                         **cand.run.dump()}
                cand.result = EvalResult(metrics, list(cand.curve), state)

    def _optimizer_state(self, i: int) -> dict[str, Any]:
        """The candidate's slice of the group optimiser, in a one-model optimiser's format."""
        cand = self.cands[i]
        params = list(cand.model.parameters())
        single = self.trainer._make_optimizer_for(params)
        n_layers = self.depth + 1
        for l, lin in enumerate(cand.shape.linears):
            for is_bias, p in ((False, lin.weight), (True, lin.bias)):
                group_param = self.params[n_layers * int(is_bias) + l]
                saved = self.optimizer.state.get(group_param)
                if not saved:
                    continue
                slot = {}
                for name, value in saved.items():
                    if name == "step":
                        slot[name] = value.clone()
                    elif is_bias:
                        slot[name] = value[i, :lin.out_features].clone()
                    else:
                        slot[name] = value[i, :lin.out_features, :lin.in_features].clone()
                single.state[p] = slot
        return single.state_dict()


def _optimizer_tensors(trainer: SupervisedTrainer, cand: Candidate) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
    """The candidate's saved optimiser slots, per parameter in model order, and its step count."""
    params = list(cand.model.parameters())
    single = trainer._make_optimizer_for(params)
    single.load_state_dict(copy.deepcopy(cand.state["optimizer"]))  # type: ignore[index]
    tensors = [{k: v for k, v in single.state[p].items() if k != "step"} for p in params]
    step = single.state[params[0]]["step"]
    return tensors, torch.as_tensor(step, dtype=torch.float32)
