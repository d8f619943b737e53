"""Successive halving: n configurations at a small budget, the best 1/eta continue, and so on."""
from __future__ import annotations

import itertools

from nasforge.errors import ConfigError
from nasforge.schedulers.bracket import Bracket, BracketScheduler


def geometric_budgets(max_budget: float, min_budget: float, eta: float) -> list[float]:
    """min_budget, min_budget*eta, ... up to max_budget (the last rung is exactly max_budget)."""
    budgets = [float(max_budget)]
    while budgets[0] / eta >= min_budget * (1 - 1e-9):
        budgets.insert(0, budgets[0] / eta)
    return budgets


def check_eta(eta: float) -> None:
    if not eta > 1:
        raise ConfigError(f"Invalid eta: {eta} (must be > 1)")


class SuccessiveHalving(BracketScheduler):
    """One bracket: ``n_configs`` trials (default: the study's ``trials``) at the first budget; at each
    rung the best ``1/eta`` continue from their checkpoints to the next budget.

    Budgets come from ``rungs`` (epochs added per rung, e.g. the chapter's ``[5, 5, 5]``: rungs at 5,
    10 and 15 epochs), else from ``min_budget`` (geometric up to the study's budget), else three
    rungs ending at the study's budget.
    """

    def __init__(self, n_configs: int | None = None, eta: float = 2, rungs: list[float] | None = None,
                 min_budget: float | None = None):
        check_eta(eta)
        if n_configs is not None and n_configs < 1:
            raise ConfigError(f"Invalid n_configs: {n_configs} (must be >= 1)")
        if rungs is not None and (not rungs or any(r <= 0 for r in rungs)):
            raise ConfigError(f"Invalid rungs: {rungs} (a list of positive budgets added per rung)")
        if min_budget is not None and min_budget <= 0:
            raise ConfigError(f"Invalid min_budget: {min_budget} (must be > 0)")
        self.n_configs, self.eta, self.rungs, self.min_budget = n_configs, eta, rungs, min_budget

    def _brackets(self, max_budget: float, max_trials: int | None) -> list[Bracket]:
        if self.rungs is not None:
            budgets = [float(b) for b in itertools.accumulate(self.rungs)]
            if budgets[-1] > max_budget + 1e-9:
                raise ConfigError(f"the rungs add up to {budgets[-1]:g}, more than the study's budget {max_budget:g}")
        elif self.min_budget is not None:
            budgets = geometric_budgets(max_budget, self.min_budget, self.eta)
        else:
            budgets = [max_budget / self.eta ** 2, max_budget / self.eta, max_budget]
        n = self.n_configs or max_trials
        if not n:
            raise ConfigError("successive halving needs n_configs (or the study's trials)")
        return [Bracket(n, budgets, self.eta)]
