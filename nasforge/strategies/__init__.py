"""Search strategies by name: small classes behind the ``ask``/``tell`` protocol (see ``base``)."""
from __future__ import annotations

from nasforge.registry import Registry
from nasforge.strategies.base import Strategy

STRATEGIES: Registry = Registry("strategy", {
    "random": "nasforge.strategies.random:RandomSearch",
    "grid": "nasforge.strategies.grid:GridSearch",
    "reinforce": "nasforge.strategies.reinforce:Reinforce",
    "ppo": "nasforge.strategies.ppo:PPO",
    "evolution": "nasforge.strategies.evolution:RegularizedEvolution",
    "bayesopt": "nasforge.strategies.bayesopt:GPBayesOpt",
})

__all__ = ["STRATEGIES", "Strategy"]
