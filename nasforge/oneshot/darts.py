"""DARTS (Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019).

Every searched choice mixes its candidates by ``softmax(alpha)`` (eq. 2); the weights ``w`` and
the architecture ``alpha`` are optimised in alternation (Algorithm 1): an architecture step on a
validation batch, then a weight step on a training batch. ``order=1`` takes the architecture
gradient at the current weights; ``order=2`` at the weights after one virtual SGD step,
``w' = w - xi * grad_w L_train(w, alpha)`` with ``xi`` the weights' learning rate, whose second
term is the finite difference of eq. 8: ``(grad_alpha L_train(w+) - grad_alpha L_train(w-)) /
2 eps`` with ``w+- = w +- eps grad_w' L_val(w', alpha)``, ``eps = 0.01 / ||grad_w' L_val||``.

Inputs decisions whose edges carry ops (see :mod:`nasforge.space.supernet`) are summed with
weight 1 (the edges' ops, with ``none``, do the mixing, as in the paper); other inputs decisions
get weights of their own, ``k * softmax(beta)`` for exactly ``k`` inputs or ``sigmoid(beta)``
for any subset. Derivation: a choice takes its strongest candidate; an edge's op its strongest
candidate other than ``none``; an inputs decision with edges keeps the ``k`` edges whose
strongest non-``none`` op is strongest (the paper keeps 2), one without edges its ``k``
strongest weights (any subset: those over 1/2).

``beta_decay`` (> 0) is the counter-measure to collapse of Ye et al., "beta-DARTS: Beta-Decay
Regularization for Differentiable Architecture Search", CVPR 2022: the architecture loss gains
``lambda_t * mean over decisions of logsumexp(alpha)``, whose gradient ``softmax(alpha)`` pulls
the parameters of every candidate down in proportion to its weight, which keeps the
distributions from saturating on the parameter-free ops; ``lambda_t`` rises linearly from 0 to
``beta_decay`` over the search, as in the paper.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from nasforge.errors import ConfigError
from nasforge.oneshot.base import Batches, check_warmup, task_loss, weight_step
from nasforge.space.domains import ChoiceDomain, Domain, InputsDomain
from nasforge.space.supernet import NONE_OP
from nasforge.strategies.policy import check_positive
from nasforge.types import ArchDict


class SoftmaxMixer:
    """Mixes by softmax over ``alpha`` (choices) and per-input weights (inputs decisions)."""

    def __init__(self) -> None:
        self.domains: dict[str, Domain] = {}
        self.alpha: dict[str, torch.Tensor] = {}

    def register(self, label: str, domain: Domain) -> None:
        self.domains[label] = domain

    def create(self, generator: torch.Generator) -> list[torch.Tensor]:
        """The architecture parameters, one per searched decision (DARTS: 1e-3 x a normal draw)."""
        self.alpha = {}
        for label, domain in self.domains.items():
            if isinstance(domain, InputsDomain) and self.has_edges(label):
                continue  # its edges' ops mix it
            n = len(domain.options) if isinstance(domain, ChoiceDomain) else len(domain.candidates)  # type: ignore[union-attr]
            self.alpha[label] = (1e-3 * torch.randn(n, generator=generator)).requires_grad_()
        return list(self.alpha.values())

    def alpha_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.alpha.items()}

    def load_alpha_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for label, value in state.items():
                self.alpha[label].copy_(value)

    def has_edges(self, label: str) -> bool:
        prefix = label + "/"
        return any(other.startswith(prefix) and isinstance(d, ChoiceDomain) for other, d in self.domains.items())

    def weights(self, label: str) -> torch.Tensor:
        domain = self.domains[label]
        if isinstance(domain, InputsDomain):
            if label not in self.alpha:
                return torch.ones(len(domain.candidates))
            beta = self.alpha[label]
            return torch.sigmoid(beta) if domain.k is None else domain.k * torch.softmax(beta, -1)
        return torch.softmax(self.alpha[label], -1)

    def mix_op(self, label: str, ops: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        w = self.weights(label)
        names = list(ops)
        used = [i for i, name in enumerate(names) if name != NONE_OP] or list(range(len(names)))
        out = w[used[0]] * ops[names[used[0]]](x)
        for i in used[1:]:  # none adds zeros: skipped (its weight still normalises the others)
            out = out + w[i] * ops[names[i]](x)
        return out

    def input_weights(self, label: str, names: Sequence[str]) -> list[Any]:
        if label not in self.alpha:
            return [1.0] * len(names)
        return list(self.weights(label).unbind())

    def distribution(self) -> dict[str, dict[str, float]]:
        """Per decision, each candidate's weight; for an inputs decision with edges, each edge's
        strength (its strongest op other than none), by which derivation ranks them."""
        out: dict[str, dict[str, float]] = {}
        for label, domain in self.domains.items():
            if isinstance(domain, InputsDomain) and label not in self.alpha:  # an edge's strength ranks it
                out[label] = {str(n): round(max(self._edge_strength(f"{label}/{n}"), 0.0), 6) for n in domain.candidates}
                continue
            names = domain.options if isinstance(domain, ChoiceDomain) else domain.candidates  # type: ignore[union-attr]
            w = self.weights(label).detach()
            out[label] = {str(n): round(float(v), 6) for n, v in zip(names, w)}
        return out

    def derive(self) -> ArchDict:
        arch: ArchDict = {}
        for label, domain in self.domains.items():
            if isinstance(domain, ChoiceDomain):
                w = self.weights(label).detach()
                options = list(domain.options)
                if self._is_edge(label) and len(options) > 1 and NONE_OP in options:
                    w = w.clone()
                    w[options.index(NONE_OP)] = -math.inf
                arch[label] = options[int(torch.argmax(w))]
            else:
                arch[label] = self._derive_inputs(label, domain)  # type: ignore[arg-type]
        return arch

    def _is_edge(self, label: str) -> bool:
        parent = label.rpartition("/")[0]
        return isinstance(self.domains.get(parent), InputsDomain)

    def _derive_inputs(self, label: str, domain: InputsDomain) -> list[str]:
        names = list(domain.candidates)
        if label in self.alpha:
            strength = self.weights(label).detach()
        else:  # an edge's strength is its strongest op other than none
            strength = torch.tensor([self._edge_strength(f"{label}/{n}") for n in names])
        if domain.k is None:
            if label in self.alpha:
                return [n for n, s in zip(names, strength) if float(s) > 0.5]
            return [n for n, s in zip(names, strength) if float(s) > self._none_weight(f"{label}/{n}")]
        keep = sorted(torch.topk(strength, domain.k).indices.tolist())
        return [names[i] for i in keep]

    def _edge_strength(self, label: str) -> float:
        if label not in self.alpha:
            return -math.inf
        domain = self.domains[label]
        w = self.weights(label).detach()
        return max(float(v) for n, v in zip(domain.options, w) if n != NONE_OP)  # type: ignore[union-attr]

    def _none_weight(self, label: str) -> float:
        """An edge of an any-subset inputs decision is kept where an op outweighs its none."""
        domain = self.domains.get(label)
        if label not in self.alpha or NONE_OP not in domain.options:  # type: ignore[union-attr]
            return -math.inf
        return float(self.weights(label)[domain.options.index(NONE_OP)])  # type: ignore[union-attr]


class Darts:
    """One-shot DARTS (Liu et al. 2019): a softmax-mixed supernet, first or second order.

    Searches any space whose searched decisions are choices and inputs (see the module).

    ``epochs`` of ``batch_size`` batches; weights by SGD (``w_lr`` cosine-annealed to
    ``w_lr_min``, ``w_momentum``, ``w_weight_decay``, gradients clipped at ``grad_clip``);
    architecture by Adam (``alpha_lr``, betas (0.5, 0.999), ``alpha_weight_decay``). ``order``
    1 or 2. ``beta_decay``: the collapse counter-measure's final weight (0: off). ``warmup``:
    epochs of weight steps only before the architecture steps begin (PC-DARTS, Xu et al., ICLR
    2020, section 4.2: untrained convolutions lose to parameter-free ops early on). ``pin``: the
    values of decisions that are not searched.
    """

    def __init__(self, epochs: int = 10, batch_size: int = 64, order: int = 1, w_lr: float = 0.05,
                 w_lr_min: float = 0.001, w_momentum: float = 0.9, w_weight_decay: float = 3e-4,
                 alpha_lr: float = 3e-3, alpha_weight_decay: float = 1e-3, grad_clip: float = 5.0,
                 beta_decay: float = 0.0, warmup: int = 0, pin: ArchDict | None = None):
        check_positive("epochs", epochs, integer=True)
        check_warmup(warmup, epochs, "weight steps only")
        check_positive("batch_size", batch_size, integer=True)
        if order not in (1, 2):
            raise ConfigError(f"Invalid order: {order!r} (1: first-order DARTS, 2: second-order)")
        for name, value in (("w_lr", w_lr), ("alpha_lr", alpha_lr), ("grad_clip", grad_clip)):
            check_positive(name, value)
        for name, value in (("w_lr_min", w_lr_min), ("w_weight_decay", w_weight_decay),
                            ("alpha_weight_decay", alpha_weight_decay), ("beta_decay", beta_decay)):
            if not value >= 0:
                raise ConfigError(f"Invalid {name}: {value!r} (must be >= 0)")
        if not 0 <= w_momentum < 1:
            raise ConfigError(f"Invalid w_momentum: {w_momentum!r} (must be in [0, 1))")
        self.epochs, self.batch_size, self.order = epochs, batch_size, order
        self.w_lr, self.w_lr_min, self.w_momentum, self.w_weight_decay = w_lr, w_lr_min, w_momentum, w_weight_decay
        self.alpha_lr, self.alpha_weight_decay, self.grad_clip, self.beta_decay = alpha_lr, alpha_weight_decay, grad_clip, beta_decay
        self.warmup = warmup
        self.pin = dict(pin or {})
        self.mixer = SoftmaxMixer()

    # --- set-up ---------------------------------------------------------------------------------
    def setup(self, supernet: nn.Module, searched: dict[str, Domain], generator: torch.Generator) -> None:
        self.alphas = self.mixer.create(generator)
        self.weights = [p for p in supernet.parameters() if p.requires_grad]
        self.w_opt = torch.optim.SGD(self.weights, lr=self.w_lr, momentum=self.w_momentum, weight_decay=self.w_weight_decay)
        self.a_opt = torch.optim.Adam(self.alphas, lr=self.alpha_lr, betas=(0.5, 0.999), weight_decay=self.alpha_weight_decay)

    def lr_at(self, epoch: int) -> float:
        """Cosine annealing of the weights' learning rate over the search (as the paper)."""
        return self.w_lr_min + 0.5 * (self.w_lr - self.w_lr_min) * (1 + math.cos(math.pi * epoch / self.epochs))

    # --- one epoch --------------------------------------------------------------------------------
    def train_epoch(self, supernet: nn.Module, batches: Batches, epoch: int) -> dict[str, float]:
        lr = self.lr_at(epoch)
        for group in self.w_opt.param_groups:
            group["lr"] = lr
        decay = self.beta_decay * (epoch + 1) / self.epochs
        total, n = 0.0, 0
        for x, y in batches.train():
            xv, yv = batches.val()
            if epoch >= self.warmup:
                self._arch_step(supernet, batches, x, y, xv, yv, lr, decay)
            total += weight_step(supernet, self.w_opt, self.weights, self.grad_clip, batches.data, x, y)
            n += len(x)
        return {"train_loss": total / n, "w_lr": lr}

    def _arch_step(self, supernet: nn.Module, batches: Batches, x: torch.Tensor, y: torch.Tensor,
                   xv: torch.Tensor, yv: torch.Tensor, lr: float, decay: float) -> None:
        self.a_opt.zero_grad()
        if self.order == 1:
            loss = task_loss(batches.data, supernet(xv), yv) + self._regulariser(decay)
            grads = torch.autograd.grad(loss, self.alphas, allow_unused=True)
        else:
            grads = self._unrolled_grads(supernet, batches, x, y, xv, yv, lr, decay)
        for alpha, g in zip(self.alphas, grads):
            alpha.grad = torch.zeros_like(alpha) if g is None else g
        self.a_opt.step()

    def _regulariser(self, decay: float) -> torch.Tensor:
        if decay <= 0 or not self.alphas:
            return torch.zeros(())
        return decay * torch.stack([torch.logsumexp(a, -1) for a in self.alphas]).mean()

    def _unrolled_grads(self, supernet: nn.Module, batches: Batches, x: torch.Tensor, y: torch.Tensor,
                        xv: torch.Tensor, yv: torch.Tensor, lr: float, decay: float) -> list[torch.Tensor | None]:
        data, params = batches.data, self.weights
        saved = [p.detach().clone() for p in params]
        # w' = w - xi (grad + weight decay + momentum), one virtual step of the weights' optimiser
        train_grads = torch.autograd.grad(task_loss(data, supernet(x), y), params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, train_grads):
                step = (torch.zeros_like(p) if g is None else g) + self.w_weight_decay * p
                buf = self.w_opt.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    step = step + self.w_momentum * buf
                p.sub_(lr * step)
        val_loss = task_loss(data, supernet(xv), yv) + self._regulariser(decay)
        grads = torch.autograd.grad(val_loss, self.alphas + params, allow_unused=True)
        d_alpha, d_w = grads[:len(self.alphas)], grads[len(self.alphas):]
        norm = torch.sqrt(sum((g * g).sum() for g in d_w if g is not None))
        eps = 0.01 / float(norm.clamp_min(1e-12))
        hessian = []
        for sign in (1.0, -1.0):  # grad_alpha L_train at w + eps dw' and w - eps dw'
            with torch.no_grad():
                for p, w, g in zip(params, saved, d_w):
                    p.copy_(w if g is None else w + sign * eps * g)
            hessian.append(torch.autograd.grad(task_loss(data, supernet(x), y), self.alphas, allow_unused=True))
        with torch.no_grad():
            for p, w in zip(params, saved):
                p.copy_(w)
        out: list[torch.Tensor | None] = []
        for da, hp, hn in zip(d_alpha, hessian[0], hessian[1]):
            if da is None:
                out.append(None)
                continue
            finite = (hp - hn) / (2 * eps) if hp is not None and hn is not None else torch.zeros_like(da)
            out.append(da - lr * finite)
        return out

    # --- what it found -----------------------------------------------------------------------------
    def distribution(self) -> dict[str, dict[str, float]]:
        return self.mixer.distribution()

    def derive(self, supernet: nn.Module, batches: Batches) -> ArchDict:
        return self.mixer.derive()

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.mixer.alpha_state(), "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mixer.load_alpha_state(state["alpha"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])

