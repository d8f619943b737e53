"""Hyperband (Li et al., 2018): successive halving over brackets that trade many cheap trials
against few long ones. With a model-based strategy filling the brackets it is BOHB."""
from __future__ import annotations

import math

from nasforge.errors import ConfigError
from nasforge.schedulers.bracket import Bracket, BracketScheduler
from nasforge.schedulers.successive_halving import check_eta


def hyperband_brackets(R: float, eta: float) -> list[tuple[int, list[float], list[int]]]:
    """For each s = s_max..0: (n, rung budgets r_i = R eta^(i-s), rung sizes n_i = floor(n eta^-i)),
    with s_max = floor(log_eta R), B = (s_max + 1) R, n = ceil(B/R * eta^s / (s + 1)).
    ``R`` is the ratio of the largest to the smallest budget."""
    s_max = 0
    while eta ** (s_max + 1) <= R * (1 + 1e-9):  # floor(log_eta R) without float log error
        s_max += 1
    B = (s_max + 1) * R
    out = []
    for s in range(s_max, -1, -1):
        n = math.ceil(B / R * eta ** s / (s + 1) - 1e-9)
        budgets = [R * eta ** (i - s) for i in range(s + 1)]
        sizes = [math.floor(n * eta ** -i + 1e-9) for i in range(s + 1)]
        out.append((n, budgets, sizes))
    return out


class Hyperband(BracketScheduler):
    """Brackets s = s_max..0 exactly as Li et al.; ``min_budget`` is the unit of ``R``
    (R = study budget / min_budget), so budgets are ``min_budget * R * eta^(i-s)``. With several
    workers, a bracket waiting for a rung to finish lets the next bracket start (no idle workers).
    ``iterations`` repeats the whole set of brackets."""

    def __init__(self, eta: float = 3, min_budget: float = 1, iterations: int = 1):
        check_eta(eta)
        if min_budget <= 0:
            raise ConfigError(f"Invalid min_budget: {min_budget} (must be > 0)")
        if iterations < 1:
            raise ConfigError(f"Invalid iterations: {iterations} (must be >= 1)")
        self.eta, self.min_budget, self.iterations = eta, min_budget, iterations

    def _brackets(self, max_budget: float, max_trials: int | None) -> list[Bracket]:
        R = max_budget / self.min_budget
        if R < 1:
            raise ConfigError(f"min_budget {self.min_budget:g} is larger than the study's budget {max_budget:g}")
        return [Bracket(n, [b * self.min_budget for b in budgets], self.eta)
                for _ in range(self.iterations) for n, budgets, _ in hyperband_brackets(R, self.eta)]
