"""ProxylessNAS (Cai, Zhu & Han, "ProxylessNAS: Direct Neural Architecture Search on Target Task
and Hardware", ICLR 2019).

Every searched choice has real-valued parameters ``alpha``, path probabilities ``p =
softmax(alpha)`` and binary gates ``g`` (one 1, the rest 0; section 3.2): a forward pass
computes, and keeps in memory, only the gated path.

* Weight steps (training split): ``alpha`` frozen, one path sampled from ``p`` per decision.
* Architecture steps (validation split, section 3.2.1): two paths sampled per decision from
  ``p`` (without replacement); the other paths are masked as if absent, so ``p`` becomes the
  softmax of the two ``alpha``s and the gate is sampled from it. The forward pass computes
  ``sum_j g_j o_j(x)`` over the two; backward gives ``dL/dg_j``, and (eq. 4)
  ``dL/dalpha_i = sum_j dL/dg_j p_j (delta_ij - p_i)``. After the Adam step the two ``alpha``s
  are shifted together so that ``sum exp`` over them is unchanged: the unsampled paths'
  probabilities stay what they were.
* ``gate_update="reinforce"`` (section 3.2.2) instead samples one path per decision, rewards it
  with minus its validation loss (latency term included, the path's latency from the table), and
  follows ``(R - b) grad log p(path)`` with a moving-average baseline ``b``.

Latency (section 3.3): with a ``latency_target``, the supernet's ops are timed once into a
:class:`~nasforge.hardware.table.LatencyTable` (cached per machine), and the architecture loss
gains the expected latency ``E[LAT] = fixed + sum over mixed ops of p . table``, differentiable
in ``alpha`` (:class:`~nasforge.oneshot.latency_loss.LatencyLoss`: added or multiplied).

Beyond the paper's choices among ops: an inputs decision whose edges carry ops sums every edge
(the edges' ops, with their zero op, are gated); one without edges samples its ``k`` inputs from
``softmax(alpha)`` (any subset: each input with probability ``sigmoid(alpha)``) and is gated the
same way, over all its candidates (their tensors exist anyway). Derivation keeps each choice's
most probable path (``none`` included: a skipped layer), as the paper; edges and inputs as DARTS.
With a target, where that path's latency by the table exceeds it, the most probable architecture
within it (:func:`most_probable_within`): the expected latency the loss holds near the target
averages over paths, and in a short search the most probable one can land on either side of it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from nasforge.errors import ConfigError
from nasforge.hardware.cache import LatencyCache, default_cache_path
from nasforge.hardware.table import LatencyTable, measure_table
from nasforge.oneshot.base import Batches, check_warmup, task_loss, weight_step
from nasforge.oneshot.darts import SoftmaxMixer
from nasforge.oneshot.latency_loss import LatencyLoss
from nasforge.space.domains import ChoiceDomain, InputsDomain
from nasforge.strategies.policy import check_positive
from nasforge.types import ArchDict

GATE_UPDATES = ("gradient", "reinforce")


class BinaryGateMixer(SoftmaxMixer):
    """Runs the sampled path(s) of each decision: ``mode`` is ``"path"`` (one sampled path),
    ``"gates"`` (two paths behind differentiable binary gates) or ``"argmax"`` (the most probable,
    for evaluation)."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "argmax"
        self.paths: dict[str, list[int]] = {}  # per decision: the sampled candidates' indices
        self.gates: dict[str, torch.Tensor] = {}  # per decision in "gates" mode: g over self.paths

    def probabilities(self, label: str) -> torch.Tensor:
        domain = self.domains[label]
        if isinstance(domain, InputsDomain) and domain.k is None:
            return torch.sigmoid(self.alpha[label])
        return torch.softmax(self.alpha[label], -1)

    def resample(self, mode: str, generator: torch.Generator) -> None:
        """Draw the paths of every decision for the next step."""
        self.mode, self.paths, self.gates = mode, {}, {}
        for label, alpha in self.alpha.items():
            domain, p = self.domains[label], self.probabilities(label).detach()
            if isinstance(domain, InputsDomain):
                if domain.k is None:
                    drawn = torch.bernoulli(p, generator=generator).nonzero().flatten().tolist()
                else:
                    drawn = torch.multinomial(p, domain.k, generator=generator).tolist()
                self.paths[label] = sorted(drawn)
                if mode == "gates":  # over every candidate: the inputs are computed anyway
                    gate = torch.zeros(len(p))
                    gate[drawn] = 1.0
                    self.gates[label] = gate.requires_grad_()
                continue
            if mode == "gates" and len(p) > 1:
                pair = torch.multinomial(p, 2, generator=generator)
                on = int(torch.multinomial(torch.softmax(alpha.detach()[pair], -1), 1, generator=generator))
                self.paths[label] = pair.tolist()
                self.gates[label] = torch.eye(2)[on].requires_grad_()
            else:
                self.paths[label] = [int(torch.multinomial(p, 1, generator=generator))]

    def mix_op(self, label: str, ops: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        names = list(ops)
        if self.mode == "argmax":
            return ops[names[int(torch.argmax(self.alpha[label]))]](x)
        gate = self.gates.get(label)
        if gate is None:
            return ops[names[self.paths[label][0]]](x)
        out = gate[0] * ops[names[self.paths[label][0]]](x)
        return out + gate[1] * ops[names[self.paths[label][1]]](x)

    def input_weights(self, label: str, names: Sequence[str]) -> list[Any]:
        if label not in self.alpha:
            return [1.0] * len(names)  # its edges' ops are gated
        if label in self.gates:
            return list(self.gates[label].unbind())
        if self.mode == "argmax":
            chosen = set(self._derive_inputs(label, self.domains[label]))  # type: ignore[arg-type]
            return [1.0 if n in chosen else None for n in names]
        return [1.0 if i in self.paths[label] else None for i in range(len(names))]

    def gate_gradients(self) -> dict[str, torch.Tensor]:
        """``dL/dalpha`` from the gates' gradients (eq. 4; sigmoid's derivative for a subset)."""
        out: dict[str, torch.Tensor] = {}
        for label, gate in self.gates.items():
            alpha, domain = self.alpha[label].detach(), self.domains[label]
            dg = gate.grad if gate.grad is not None else torch.zeros_like(gate)
            if isinstance(domain, InputsDomain) and domain.k is None:
                s = torch.sigmoid(alpha)
                out[label] = dg * s * (1 - s)
                continue
            index = torch.tensor(self.paths[label]) if isinstance(domain, ChoiceDomain) else torch.arange(len(alpha))
            p = torch.softmax(alpha[index], -1)
            grad = torch.zeros_like(alpha)
            grad[index] = p * (dg - (dg * p).sum())
            out[label] = grad
        return out

    def log_probability(self) -> torch.Tensor:
        """``log p`` of the paths drawn last (REINFORCE); a ``k``-subset as ``k`` independent draws."""
        total = torch.zeros(())
        for label, chosen in self.paths.items():
            domain = self.domains[label]
            if isinstance(domain, InputsDomain) and domain.k is None:
                mask = torch.zeros(len(self.alpha[label]))
                mask[chosen] = 1.0
                total = total - nn.functional.binary_cross_entropy_with_logits(self.alpha[label], mask, reduction="sum")
            else:
                total = total + torch.log_softmax(self.alpha[label], -1)[chosen].sum()
        return total

    def sampled(self) -> ArchDict:
        """The path drawn last, as decision values (choices only: what the latency table reads)."""
        return {label: self.domains[label].options[i[0]] for label, i in self.paths.items()  # type: ignore[union-attr]
                if isinstance(self.domains[label], ChoiceDomain)}


class ProxylessNas:
    """One-shot ProxylessNAS (Cai et al. 2019): binary gates, sampled paths, latency in the loss.

    Searches any space whose searched decisions are choices and inputs (see the module).

    ``epochs`` of ``batch_size`` batches; weights by SGD (``w_lr`` cosine-annealed to ``w_lr_min``,
    momentum ``w_momentum``, nesterov, ``w_weight_decay``, gradients clipped at ``grad_clip``);
    architecture by Adam (``alpha_lr``, betas (0, 0.999), as the paper's code). ``warmup``: epochs
    of weight steps only (the paper warms the weights up before any architecture step).
    ``gate_update``: ``"gradient"`` (the binary-gate gradient) or ``"reinforce"`` (with
    ``baseline_decay``).

    Latency: ``latency_target`` (ms; None: no latency term), ``latency_weight`` (lambda of
    ``add``, the exponent of ``mul``), ``latency_form`` (``add``/``mul``), ``latency_kind``
    (``soft``/``hard``); the table is measured at ``latency_batch`` and ``latency_threads``, each
    op for at least ``latency_seconds``, and kept in ``latency_cache`` (a JSON file; default the
    user's cache directory, see :func:`~nasforge.hardware.cache.default_cache_path`; ``""``: in
    memory). ``pin``: the values of decisions that are not searched.
    """

    def __init__(self, epochs: int = 10, batch_size: int = 64, w_lr: float = 0.05, w_lr_min: float = 0.001,
                 w_momentum: float = 0.9, w_weight_decay: float = 4e-5, alpha_lr: float = 6e-3,
                 grad_clip: float = 5.0, warmup: int = 0, gate_update: str = "gradient", baseline_decay: float = 0.9,
                 latency_target: float | None = None, latency_weight: float = 0.5, latency_form: str = "mul",
                 latency_kind: str = "hard", latency_batch: int = 1, latency_threads: int = 1,
                 latency_seconds: float = 0.2, latency_cache: str | None = None, pin: ArchDict | None = None):
        for name, value in (("epochs", epochs), ("batch_size", batch_size), ("latency_batch", latency_batch),
                            ("latency_threads", latency_threads)):
            check_positive(name, value, integer=True)
        for name, value in (("w_lr", w_lr), ("alpha_lr", alpha_lr), ("grad_clip", grad_clip),
                            ("latency_seconds", latency_seconds)):
            check_positive(name, value)
        check_warmup(warmup, epochs, "weight steps only")
        for name, value in (("w_lr_min", w_lr_min), ("w_weight_decay", w_weight_decay)):
            if not value >= 0:
                raise ConfigError(f"Invalid {name}: {value!r} (must be >= 0)")
        for name, value in (("w_momentum", w_momentum), ("baseline_decay", baseline_decay)):
            if not 0 <= value < 1:
                raise ConfigError(f"Invalid {name}: {value!r} (must be in [0, 1))")
        if gate_update not in GATE_UPDATES:
            raise ConfigError(f"Invalid gate_update: {gate_update!r} (allowed: {', '.join(GATE_UPDATES)})")
        self.epochs, self.batch_size, self.warmup, self.gate_update = epochs, batch_size, warmup, gate_update
        self.w_lr, self.w_lr_min, self.w_momentum, self.w_weight_decay = w_lr, w_lr_min, w_momentum, w_weight_decay
        self.alpha_lr, self.grad_clip, self.baseline_decay = alpha_lr, grad_clip, baseline_decay
        self.latency = LatencyLoss(latency_target, latency_weight, latency_form, latency_kind) \
            if latency_target is not None else None
        self.table_options = {"batch_size": latency_batch, "threads": latency_threads, "min_seconds": latency_seconds}
        self.latency_cache = default_cache_path() if latency_cache is None else (Path(latency_cache) if latency_cache else None)
        self.pin = dict(pin or {})
        self.mixer = BinaryGateMixer()
        self.table: LatencyTable | None = None

    # --- set-up ---------------------------------------------------------------------------------
    def setup(self, supernet: nn.Module, searched: dict[str, Any], generator: torch.Generator) -> None:
        self.alphas = self.mixer.create(generator)
        self.generator, self.baseline = generator, None
        self.weights = [p for p in supernet.parameters() if p.requires_grad]
        self.w_opt = torch.optim.SGD(self.weights, lr=self.w_lr, momentum=self.w_momentum, nesterov=self.w_momentum > 0,
                                     weight_decay=self.w_weight_decay)
        self.a_opt = torch.optim.Adam(self.alphas, lr=self.alpha_lr, betas=(0.0, 0.999))

    def measure(self, supernet: nn.Module, input_shape: Sequence[int]) -> LatencyTable:
        """The supernet's latency table (measured once, then read from the cache)."""
        if self.table is None:
            cache = LatencyCache(self.latency_cache)
            self.table = measure_table(supernet, input_shape, cache=cache, **self.table_options)
        return self.table

    def lr_at(self, epoch: int) -> float:
        return self.w_lr_min + 0.5 * (self.w_lr - self.w_lr_min) * (1 + math.cos(math.pi * epoch / self.epochs))

    def expected_latency(self) -> torch.Tensor:
        assert self.table is not None
        return self.table.expected({e.label: self.mixer.probabilities(e.label) for e in self.table.entries})

    # --- one epoch --------------------------------------------------------------------------------
    def train_epoch(self, supernet: nn.Module, batches: Batches, epoch: int) -> dict[str, float]:
        if self.latency is not None:
            self.mixer.mode = "argmax"
            self.measure(supernet, batches.data.input_shape)
        lr = self.lr_at(epoch)
        for group in self.w_opt.param_groups:
            group["lr"] = lr
        total, n = 0.0, 0
        for x, y in batches.train():
            if epoch >= self.warmup and self.alphas:
                self._arch_step(supernet, batches)
            self.mixer.resample("path", self.generator)
            total += weight_step(supernet, self.w_opt, self.weights, self.grad_clip, batches.data, x, y)
            n += len(x)
        self.mixer.mode = "argmax"  # the loop evaluates the most probable path
        figures = {"train_loss": total / n, "w_lr": lr}
        if self.table is not None:
            with torch.no_grad():
                figures["expected_latency_ms"] = float(self.expected_latency())
            figures["derived_latency_ms"] = self.table.latency_ms(self.derive(supernet, batches))  # as derived now
        return figures

    def _arch_step(self, supernet: nn.Module, batches: Batches) -> None:
        xv, yv = batches.val()
        self.a_opt.zero_grad()
        if self.gate_update == "reinforce":
            self._reinforce_step(supernet, batches, xv, yv)
            return
        self.mixer.resample("gates", self.generator)
        before = {label: torch.logsumexp(self.mixer.alpha[label].detach()[idx], -1)
                  for label, idx in self._pairs().items()}
        loss = task_loss(batches.data, supernet(xv), yv)
        if self.latency is not None:
            loss = self.latency(loss, self.expected_latency())
        loss.backward()
        for label, grad in self.mixer.gate_gradients().items():
            alpha = self.mixer.alpha[label]
            alpha.grad = grad if alpha.grad is None else alpha.grad + grad
        for alpha in self.alphas:
            if alpha.grad is None:
                alpha.grad = torch.zeros_like(alpha)
        self.a_opt.step()
        with torch.no_grad():  # the unsampled paths keep their probabilities
            for label, idx in self._pairs().items():
                alpha = self.mixer.alpha[label]
                alpha[idx] -= torch.logsumexp(alpha[idx], -1) - before[label]

    def _pairs(self) -> dict[str, torch.Tensor]:
        return {label: torch.tensor(self.mixer.paths[label]) for label in self.mixer.gates
                if isinstance(self.mixer.domains[label], ChoiceDomain)}

    def _reinforce_step(self, supernet: nn.Module, batches: Batches, xv: torch.Tensor, yv: torch.Tensor) -> None:
        self.mixer.resample("path", self.generator)
        with torch.no_grad():
            loss = task_loss(batches.data, supernet(xv), yv)
            if self.latency is not None:
                assert self.table is not None
                loss = self.latency(loss, torch.tensor(self.table.latency_ms({**self.mixer.derive(), **self.mixer.sampled()})))
        reward = -float(loss)
        self.baseline = reward if self.baseline is None else \
            self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        (-(reward - self.baseline) * self.mixer.log_probability()).backward()
        for alpha in self.alphas:
            if alpha.grad is None:
                alpha.grad = torch.zeros_like(alpha)
        self.a_opt.step()

    # --- what it found -----------------------------------------------------------------------------
    def distribution(self) -> dict[str, dict[str, float]]:
        return self.mixer.distribution()

    def derive(self, supernet: nn.Module, batches: Batches) -> ArchDict:
        """The most probable path; with a target, the most probable one the table puts within it."""
        arch = self.mixer.derive()
        if self.table is None or self.latency is None or self.table.latency_ms(arch) <= self.latency.target_ms:
            return arch
        log_p = {e.label: torch.log(self.mixer.probabilities(e.label).detach()) for e in self.table.entries}
        return {**arch, **most_probable_within(self.table, log_p, self.latency.target_ms)}

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.mixer.alpha_state(), "baseline": self.baseline, "w_opt": self.w_opt.state_dict(),
                "a_opt": self.a_opt.state_dict(), "table": self.table.to_dict() if self.table is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mixer.load_alpha_state(state["alpha"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.baseline = state["baseline"]
        self.table = LatencyTable.from_dict(state["table"]) if state["table"] is not None else None


def most_probable_within(table: LatencyTable, log_p: dict[str, torch.Tensor], target_ms: float,
                         steps: int = 2000) -> ArchDict:
    """The choices of the table's decisions maximising the sum of ``log_p`` whose latency by the
    table is at most ``target_ms`` (a multiple-choice knapsack, latencies in ``steps`` units of
    the budget); the fastest choices where no architecture meets the target."""
    cost: dict[str, list[float]] = {}
    for entry in table.entries:  # a repeated label is one decision over several ops
        cost.setdefault(entry.label, [0.0] * len(entry.ms))
        cost[entry.label] = [c + table.scale * ms for c, ms in zip(cost[entry.label], entry.ms)]
    labels = list(cost)
    options = {label: table.entries[[e.label for e in table.entries].index(label)].candidates for label in labels}
    budget = target_ms - table.scale * table.fixed_ms
    if budget < sum(min(c) for c in cost.values()):
        return {label: options[label][min(range(len(c)), key=c.__getitem__)] for label, c in cost.items()}
    unit = budget / steps
    best = {0: (0.0, ())}  # units used -> (score, choice indices so far)
    for label in labels:
        grown: dict[int, tuple[float, tuple[int, ...]]] = {}
        for used, (score, picks) in best.items():
            for j, c in enumerate(cost[label]):
                total = used + math.ceil(c / unit - 1e-9)
                candidate = (score + float(log_p[label][j]), picks + (j,))
                if total <= steps and (total not in grown or candidate[0] > grown[total][0]):
                    grown[total] = candidate
        best = grown
    picks = max(best.values())[1]
    return {label: options[label][j] for label, j in zip(labels, picks)}
