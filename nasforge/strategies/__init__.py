"""Search strategies by name: small classes behind the ``ask``/``tell`` protocol (see ``base``)."""
from __future__ import annotations

from nasforge.registry import Registry
from nasforge.strategies.base import Strategy

_ASK_TELL = {
    "random": "nasforge.strategies.random:RandomSearch",
    "grid": "nasforge.strategies.grid:GridSearch",
    "reinforce": "nasforge.strategies.reinforce:Reinforce",
    "ppo": "nasforge.strategies.ppo:PPO",
    "evolution": "nasforge.strategies.evolution:RegularizedEvolution",
    "bayesopt": "nasforge.strategies.bayesopt:GPBayesOpt",
    "pnas": "nasforge.strategies.progressive:ProgressiveSearch",
    "predictor": "nasforge.strategies.predictor:PredictorGuided",
}
_ONE_SHOT = {  # supernet searches (nasforge.oneshot), which the study puts behind ask/tell itself
    "darts": "nasforge.oneshot.darts:Darts",
    "enas": "nasforge.oneshot.enas:Enas",
    "proxyless": "nasforge.oneshot.proxyless:ProxylessNas",
}
ASK_TELL: Registry = Registry("strategy", _ASK_TELL)
ONE_SHOT: Registry = Registry("one-shot strategy", _ONE_SHOT)
STRATEGIES: Registry = Registry("strategy", {**_ASK_TELL, **_ONE_SHOT})  # what a config's strategy may name

__all__ = ["STRATEGIES", "ASK_TELL", "ONE_SHOT", "Strategy"]
