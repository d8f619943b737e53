"""NAS-RL (Zoph & Le, 2017): an LSTM controller trained with REINFORCE."""
from __future__ import annotations


import torch

from nasforge.errors import ConfigError
from nasforge.strategies.policy import PolicyCore, PolicyStrategy
from nasforge.types import ArchDict


class Reinforce(PolicyStrategy):
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

    def _reset(self) -> None:
        self.baseline = None  # rebuilt by replaying the history

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
