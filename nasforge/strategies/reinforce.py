"""NAS-RL (Zoph & Le, 2017): an LSTM controller trained with REINFORCE."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nasforge.errors import ConfigError
from nasforge.space.schema import Schema
from nasforge.strategies.policy import PolicyCore
from nasforge.types import ArchDict, Result


class Reinforce:
    """REINFORCE over batches of ``batch_size`` sampled architectures.

    The advantage of each is its reward (minus the loss) less an exponential moving average of
    past batch rewards (``baseline_decay``), scaled by the batch's mean absolute advantage so the
    step size does not depend on the metric's units. ``entropy_weight`` rewards keeping options
    open; ``explore`` mixes the policy with the uniform distribution at a rate halving every
    ``explore_half_life`` asks.
    """

    def __init__(self, batch_size: int = 8, lr: float = 0.02, baseline_decay: float = 0.9, entropy_weight: float = 1e-3,
                 explore: float = 0.2, explore_half_life: float = 50.0, hidden: int = 64):
        if not 0 <= baseline_decay < 1:
            raise ConfigError(f"Invalid baseline_decay: {baseline_decay} (must be in [0, 1))")
        if entropy_weight < 0:
            raise ConfigError(f"Invalid entropy_weight: {entropy_weight} (must be >= 0)")
        self.core = PolicyCore(batch_size, lr, hidden, explore, explore_half_life, value_head=False)
        self.baseline_decay, self.entropy_weight = baseline_decay, entropy_weight
        self.baseline: float | None = None

    def setup(self, schema: Schema, rng: np.random.Generator) -> None:
        self.baseline = None
        self.core.setup(schema, rng, self._update)

    def ask(self) -> ArchDict:
        return self.core.sample()

    def ready(self) -> bool:
        return self.core.ready()

    def tell(self, arch: ArchDict, result: Result) -> None:
        self.core.record(arch, result)

    def _update(self, batch: list[tuple[ArchDict, float, float]]) -> None:
        rewards = torch.tensor([r for _, r, _ in batch])
        baseline = float(rewards.mean()) if self.baseline is None else self.baseline
        advantages = rewards - baseline
        advantages = advantages / (advantages.abs().mean() + 1e-8)
        loss = torch.zeros(())
        for (arch, _, explore), advantage in zip(batch, advantages):
            rollout = self.core.scored(arch, explore)
            loss = loss - advantage * torch.stack(rollout.log_probs).sum() - self.entropy_weight * torch.stack(rollout.entropies).sum()
        self.core.step(loss / len(batch))
        mean = float(rewards.mean())
        self.baseline = mean if self.baseline is None else self.baseline_decay * self.baseline + (1 - self.baseline_decay) * mean

    def state_dict(self) -> dict[str, Any]:
        return self.core.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baseline = None
        self.core.load_state_dict(state)
