"""A cheap objective with a known optimum, for measuring how soon a strategy finds it.

Each of ``n`` categorical decisions (``op_0`` ...) picks one of ``k`` options (``a``, ``b``, ...);
the reward is the sum of one table entry per decision, ``weights[i, option]``, so the optimum
is the best option of every decision: 1 architecture of k^n. Used by the RL strategies' test and
``benchmarks/rl_controllers.py`` (one definition, so their figures stay comparable).
"""
from __future__ import annotations

import string
from typing import Any

import numpy as np
from torch import nn

from nasforge.types import ArchDict, Result


def table_space(arch: Any, decisions: int = 5, options: int = 4) -> nn.Module:
    for i in range(decisions):
        arch.categorical(f"op_{i}", list(string.ascii_lowercase[:options]))
    return nn.Identity()


def asks_to_optimum(strategy: Any, seed: int, weights: np.ndarray, budget: int = 400) -> int:
    """Asks of ``strategy`` until it samples the optimum of the table ``weights`` (decisions x
    options), telling it each reward as minus the loss; ``budget + 1`` if it never does."""
    from nasforge.space import Space
    decisions, options = weights.shape
    letters = string.ascii_lowercase[:options]
    schema = Space(table_space, {"decisions": decisions, "options": options}).schema
    best: ArchDict = {f"op_{i}": letters[int(np.argmax(weights[i]))] for i in range(decisions)}
    strategy.setup(schema, np.random.default_rng(seed))
    for n in range(1, budget + 1):
        arch = strategy.ask()
        if arch == best:
            return n
        loss = -float(sum(weights[i][letters.index(arch[f"op_{i}"])] for i in range(decisions)))
        strategy.tell(arch, Result({"val_loss": loss}, loss, 1.0))
    return budget + 1
