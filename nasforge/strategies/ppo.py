"""A PPO actor-critic controller (as MnasNet trains its controller): the LSTM policy plus a value
head, advantages by GAE over the decision sequence, a clipped ratio, several epochs per batch."""
from __future__ import annotations


import torch

from nasforge.errors import ConfigError
from nasforge.strategies.policy import PolicyCore, PolicyStrategy
from nasforge.types import ArchDict


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates of one episode (the value after the last step is 0)."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(())
    for t in range(len(rewards) - 1, -1, -1):
        next_value = values[t + 1] if t + 1 < len(values) else torch.zeros(())
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        advantages[t] = running
    return advantages


class PPO(PolicyStrategy):
    """Proximal policy optimisation over batches of ``batch_size`` architectures.

    Each architecture is an episode of decision steps whose only reward, at the last step, is the
    architecture's (minus its loss), normalised over the batch. The critic's values give per-step
    advantages by GAE(``gamma``, ``lam``); the policy maximises the clipped surrogate
    (``clip``, 0.2 as in the paper) for ``epochs`` passes, with a value loss (``value_weight``)
    and an entropy bonus (``entropy_weight``).
    """

    def __init__(self, batch_size: int = 8, lr: float = 0.005, epochs: int = 4, clip: float = 0.2, gamma: float = 1.0,
                 lam: float = 0.95, value_weight: float = 0.5, entropy_weight: float = 1e-3, explore: float = 0.2,
                 explore_half_life: float = 50.0, hidden: int = 64):
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"Invalid epochs: {epochs!r} (must be an int >= 1)")
        if not 0 < clip < 1:
            raise ConfigError(f"Invalid clip: {clip} (must be in (0, 1))")
        for name, value in (("gamma", gamma), ("lam", lam)):
            if not 0 <= value <= 1:
                raise ConfigError(f"Invalid {name}: {value} (must be in [0, 1])")
        self.core = PolicyCore(batch_size, lr, hidden, explore, explore_half_life, value_head=True)
        self.epochs, self.clip, self.gamma, self.lam = epochs, clip, gamma, lam
        self.value_weight, self.entropy_weight = value_weight, entropy_weight

    def _update(self, batch: list[tuple[ArchDict, float, float]]) -> None:
        rewards = torch.tensor([r for _, r, _ in batch])
        rewards = (rewards - rewards.mean()) / (rewards.std() + 1e-8) if len(batch) > 1 else rewards * 0
        # The first epoch scores with the policy that sampled: its log-probabilities and values,
        # detached, are the old policy's, so the batch is scored once for both.
        rollouts = [self.core.scored(arch, explore) for arch, _, explore in batch]
        old_lp = [torch.stack(r.log_probs).detach() for r in rollouts]
        returns, advantages = [], []
        for rollout, reward in zip(rollouts, rewards):
            values = torch.stack(rollout.values).detach()
            step_rewards = torch.zeros(len(values))
            step_rewards[-1] = reward
            adv = gae(step_rewards, values, self.gamma, self.lam)
            advantages.append(adv)
            returns.append(adv + values)
        flat = torch.cat(advantages)
        advantages = [(a - flat.mean()) / (flat.std() + 1e-8) for a in advantages]
        for epoch in range(self.epochs):
            if epoch:
                rollouts = [self.core.scored(arch, explore) for arch, _, explore in batch]
            policy, value, entropy, steps = torch.zeros(()), torch.zeros(()), torch.zeros(()), 0
            for rollout, lp_old, adv, ret in zip(rollouts, old_lp, advantages, returns):
                ratio = torch.exp(torch.stack(rollout.log_probs) - lp_old)
                clipped = torch.clamp(ratio, 1 - self.clip, 1 + self.clip)
                policy = policy - torch.min(ratio * adv, clipped * adv).sum()
                value = value + ((torch.stack(rollout.values) - ret) ** 2).sum()
                entropy = entropy + torch.stack(rollout.entropies).sum()
                steps += len(lp_old)
            self.core.step((policy + self.value_weight * value - self.entropy_weight * entropy) / steps)
