"""ENAS (Pham et al., "Efficient Neural Architecture Search via Parameter Sharing", ICML 2018).

One set of shared weights holds every candidate (a mixed op per decision: weights keyed by the
decision, i.e. by (node, op)). Each epoch (section 2.2) first trains the shared weights for one
pass over the training split, a new architecture sampled from the controller for every batch
(the supernet runs only the sampled path); then trains the controller for ``controller_steps``
sampled architectures, each rewarded with its accuracy on one validation batch under the shared
weights, by REINFORCE with a moving-average baseline (nasforge's NAS-RL controller,
:class:`~nasforge.strategies.reinforce.Reinforce`, which reads the supernet's decisions and
picks inputs by attention). Derivation samples ``derive_samples`` architectures and keeps the one
most accurate on the validation split (section 2.2, "Deriving Architectures").
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from nasforge.errors import ConfigError
from nasforge.oneshot.base import Batches, check_warmup, score, weight_step
from nasforge.space.domains import Domain, InputsDomain
from nasforge.space.schema import Decision, Schema
from nasforge.strategies.policy import check_positive
from nasforge.strategies.reinforce import Reinforce
from nasforge.train.state import torch_threads
from nasforge.types import ArchDict, Result


class SampledPathMixer:
    """Runs the one candidate (and the inputs) of the architecture sampled last."""

    def __init__(self) -> None:
        self.domains: dict[str, Domain] = {}
        self.sample: ArchDict = {}

    def register(self, label: str, domain: Domain) -> None:
        self.domains[label] = domain

    def mix_op(self, label: str, ops: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        return ops[self.sample[label]](x)

    def input_weights(self, label: str, names: Sequence[str]) -> list[Any]:
        chosen = set(self.sample[label])
        return [1.0 if n in chosen else None for n in names]


class Enas:
    """One-shot ENAS (Pham et al. 2018): shared weights, an LSTM controller trained by REINFORCE.

    Searches any space whose searched decisions are choices and inputs (see the module).

    Shared weights: SGD (``w_lr``, momentum 0.9, nesterov, ``w_weight_decay``, gradients clipped
    at ``grad_clip``). Controller: ``controller_steps`` sampled architectures per epoch, updated
    every ``controller_batch`` (``controller_lr``, ``entropy_weight``, ``baseline_decay``).
    ``warmup``: epochs that train the shared weights only (on paths of the untrained, near-uniform
    controller) before the controller learns from them.
    """

    def __init__(self, epochs: int = 10, batch_size: int = 64, w_lr: float = 0.05, w_weight_decay: float = 1e-4,
                 grad_clip: float = 5.0, controller_steps: int = 40, controller_batch: int = 5,
                 controller_lr: float = 0.0035, entropy_weight: float = 1e-4, baseline_decay: float = 0.95,
                 derive_samples: int = 10, warmup: int = 0, pin: ArchDict | None = None):
        for name, value in (("epochs", epochs), ("batch_size", batch_size), ("controller_steps", controller_steps),
                            ("controller_batch", controller_batch), ("derive_samples", derive_samples)):
            check_positive(name, value, integer=True)
        for name, value in (("w_lr", w_lr), ("grad_clip", grad_clip), ("controller_lr", controller_lr)):
            check_positive(name, value)
        if not w_weight_decay >= 0:
            raise ConfigError(f"Invalid w_weight_decay: {w_weight_decay!r} (must be >= 0)")
        self.epochs, self.batch_size = epochs, batch_size
        self.w_lr, self.w_weight_decay, self.grad_clip = w_lr, w_weight_decay, grad_clip
        check_warmup(warmup, epochs, "shared weights only, without controller steps")
        self.controller_steps, self.derive_samples, self.warmup = controller_steps, derive_samples, warmup
        self.controller_args = {"batch_size": controller_batch, "lr": controller_lr, "entropy_weight": entropy_weight,
                                "baseline_decay": baseline_decay, "explore": 0.0}
        Reinforce(**self.controller_args)  # its own checks, now
        self.pin = dict(pin or {})
        self.mixer = SampledPathMixer()

    def setup(self, supernet: nn.Module, searched: dict[str, Domain], generator: torch.Generator) -> None:
        self.schema = Schema(tuple(Decision(label, domain) for label, domain in searched.items()))
        self.controller = Reinforce(**self.controller_args)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        self.controller.setup(self.schema, np.random.default_rng(seed))
        self.generator = generator
        self.weights = [p for p in supernet.parameters() if p.requires_grad]
        self.w_opt = torch.optim.SGD(self.weights, lr=self.w_lr,
                                     momentum=0.9, nesterov=True, weight_decay=self.w_weight_decay)

    def _sample(self, explore_free: bool = False) -> ArchDict:
        if explore_free:  # derivation: the policy as it is, without touching its training state
            with torch.no_grad(), torch_threads(1):
                return self.controller.core.controller.rollout(self.generator).arch
        return self.controller.ask()

    def train_epoch(self, supernet: nn.Module, batches: Batches, epoch: int) -> dict[str, float]:
        total, n = 0.0, 0
        supernet.train()
        for x, y in batches.train():  # the shared weights, a sampled path per batch
            with torch.no_grad(), torch_threads(1):
                self.mixer.sample = self.controller.core.controller.rollout(self.generator).arch
            total += weight_step(supernet, self.w_opt, self.weights, self.grad_clip, batches.data, x, y)
            n += len(x)
        rewards: list[float] = []
        supernet.eval()
        for _ in range(self.controller_steps if epoch >= self.warmup else 0):  # the controller, on validation batches
            arch = self._sample()
            self.mixer.sample = arch
            xv, yv = batches.val()
            with torch.no_grad():
                reward = score(batches.data, supernet(xv), yv)
            rewards.append(reward)
            self.controller.tell(arch, Result({"reward": reward}, -reward, 1.0))  # a REINFORCE step per batch
        supernet.train()
        return {"train_loss": total / n, "controller_reward": float(np.mean(rewards)) if rewards else 0.0}

    def distribution(self) -> dict[str, dict[str, float]]:
        """How often each candidate appears in 50 samples of the policy (its marginals)."""
        counts: dict[str, dict[str, float]] = {}
        state = self.generator.get_state()
        samples = [self._sample(explore_free=True) for _ in range(50)]
        self.generator.set_state(state)  # looking does not change the search
        for label, domain in ((d.label, d.domain) for d in self.schema):
            names = domain.candidates if isinstance(domain, InputsDomain) else domain.options  # type: ignore[union-attr]
            counts[label] = {str(c): 0.0 for c in names}
            for arch in samples:
                picked = arch[label] if isinstance(domain, InputsDomain) else [arch[label]]
                for c in picked:
                    counts[label][str(c)] += 1 / len(samples)
        return counts

    @torch.no_grad()
    def derive(self, supernet: nn.Module, batches: Batches) -> ArchDict:
        best: tuple[float, ArchDict] | None = None
        supernet.eval()
        for _ in range(self.derive_samples):
            arch = self._sample(explore_free=True)
            self.mixer.sample = arch
            correct, count = 0.0, 0
            for xv, yv in batches.val_epoch():
                correct += score(batches.data, supernet(xv), yv) * len(xv)
                count += len(xv)
            if best is None or correct / count > best[0]:
                best = (correct / count, arch)
        supernet.train()
        return dict(best[1])  # type: ignore[index]

    def state_dict(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict(), "w_opt": self.w_opt.state_dict(),
                "mixer_sample": dict(self.mixer.sample)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.mixer.sample = dict(state["mixer_sample"])
