"""The controller mode and the RL strategies (REINFORCE, PPO)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import nested_space
from nasforge.errors import ConfigError
from nasforge.space import Space
from nasforge.space.controller import Controller
from nasforge.strategies.ppo import PPO, gae
from nasforge.strategies.random import RandomSearch
from nasforge.strategies.reinforce import Reinforce
from nasforge.train.additive_table import asks_to_optimum
from nasforge.types import Result


def skip_space(arch):
    """Layer-wise decisions and any-subset skip connections, as NAS-RL's space asks them."""
    for i in range(4):
        arch.categorical(f"layer_{i}/filters", [8, 16, 32])
        if i:
            arch.inputs(f"layer_{i}/skip", [f"layer_{j}" for j in range(i)], k=None)
    arch.inputs("head", ["layer_1", "layer_2", "layer_3"], k=2)
    return nn.Identity()


def equal_but_distinct_options_space(arch):
    """1 == True in Python, yet they are two options (the space's own domains tell them apart)."""
    arch.categorical("flag", [1, True, "x"])
    arch.int("n", 1, 3)
    return nn.Identity()


@pytest.mark.parametrize("fn", [nested_space, skip_space, equal_but_distinct_options_space])
def test_rollouts_are_valid_and_scoring_reproduces_them(fn):
    space = Space(fn)
    controller = Controller(space.schema, hidden=16, value_head=True)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        with torch.no_grad():
            rollout = controller.rollout(generator, explore=0.1)
        space.validate(rollout.arch)  # exactly the decisions the space asks, all in domain
        assert len(rollout.log_probs) == len(rollout.entropies) == len(rollout.values) == len(rollout.arch)
        scored = controller.rollout(given=rollout.arch, explore=0.1)
        assert torch.allclose(torch.stack(scored.log_probs), torch.stack(rollout.log_probs))
        assert all(e >= 0 for e in rollout.entropies)


def test_attention_picks_skip_connections_the_reward_favours():
    """REINFORCE learns through the attention: reward = number of skips into the last layer."""
    space = Space(skip_space)
    strategy = Reinforce(batch_size=8, lr=0.05, explore=0.0)
    strategy.setup(space.schema, np.random.default_rng(0))
    counts = []
    for _ in range(15):
        batch = [strategy.ask() for _ in range(8)]
        for arch in batch:
            loss = -float(len(arch["layer_3/skip"]))
            strategy.tell(arch, Result({"val_loss": loss}, loss, 1.0))
        counts.append(np.mean([len(a["layer_3/skip"]) for a in batch]))
    assert counts[0] < 2.0 and np.mean(counts[-5:]) > 2.7  # of 3 possible


def test_decisions_a_controller_cannot_emit_are_named():
    def floats(arch):
        arch.float("lr", 1e-4, 1e-1, log=True)
        return nn.Identity()

    def wide(arch):
        arch.int("width", 1, 1000)
        return nn.Identity()

    with pytest.raises(ConfigError, match="'lr' is a float"):
        Controller(Space(floats).schema)
    with pytest.raises(ConfigError, match="'width' has 1000 values"):
        Controller(Space(wide).schema)


def test_gae_matches_hand_computation():
    rewards = torch.tensor([0.0, 0.0, 1.0])
    values = torch.tensor([0.5, 0.2, 0.4])
    adv = gae(rewards, values, gamma=0.9, lam=0.8)
    d2 = 1.0 - 0.4
    d1 = 0.0 + 0.9 * 0.4 - 0.2
    d0 = 0.0 + 0.9 * 0.2 - 0.5
    expected = [d0 + 0.72 * (d1 + 0.72 * d2), d1 + 0.72 * d2, d2]
    assert torch.allclose(adv, torch.tensor(expected))


@pytest.mark.slow
def test_reinforce_and_ppo_find_a_known_optimum_far_sooner_than_random_sampling():
    weights = np.random.default_rng(123).normal(size=(5, 4))
    seeds = range(10)
    random = np.median([asks_to_optimum(RandomSearch(), s, weights) for s in seeds])
    reinforce = np.median([asks_to_optimum(Reinforce(), s, weights) for s in seeds])
    ppo = np.median([asks_to_optimum(PPO(), s, weights) for s in seeds])
    print("median asks to the optimum: random", random, "reinforce", reinforce, "ppo", ppo)
    assert reinforce < 0.5 * random and ppo < 0.5 * random


@pytest.mark.parametrize("cls", [Reinforce, PPO])
def test_a_batch_is_asked_whole_then_the_strategy_waits_for_its_results(cls):
    """ready() turns False after batch_size asks, so a batched executor never samples past an
    update from the stale policy; it turns True again once the batch is told."""
    strategy = cls(batch_size=4)
    strategy.setup(Space(skip_space).schema, np.random.default_rng(0))
    for _round in range(2):
        batch = []
        while strategy.ready():
            batch.append(strategy.ask())
            assert len(batch) <= 4
        assert len(batch) == 4
        for arch in batch:
            strategy.tell(arch, Result({"val_loss": 1.0}, 1.0, 1.0))
