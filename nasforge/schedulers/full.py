"""Full budget: every trial trains for the whole budget; the plain loop of random search or BO."""
from __future__ import annotations

from typing import Any

import numpy as np

from nasforge.errors import ConfigError
from nasforge.schedulers.base import WAIT, Decision, Start, Suggestion
from nasforge.strategies.base import Strategy, is_ready
from nasforge.types import ArchDict, Result


class FullBudget:
    """Starts ``max_trials`` trials, each at ``max_budget``, as fast as workers free up."""

    def __init__(self, trials: int | None = None):
        if trials is not None and trials < 1:
            raise ConfigError(f"Invalid trials: {trials} (must be >= 1)")
        self.trials = trials
        self.started = 0

    def setup(self, strategy: Strategy, max_budget: float, max_trials: int | None, rng: np.random.Generator) -> None:
        self.strategy = strategy
        self.max_budget = max_budget
        self.limit = self.trials or max_trials
        if self.limit is None:
            raise ConfigError("the full-budget scheduler needs a number of trials")

    def suggest(self, trial_id: int) -> Suggestion:
        if self.started >= self.limit:  # type: ignore[operator]
            return None
        if not is_ready(self.strategy):
            return WAIT
        arch = self.strategy.ask()
        if arch is None:
            return None
        self.started += 1
        return Start(arch, self.max_budget)

    def on_result(self, trial_id: int, arch: ArchDict, result: Result) -> Decision:
        self.strategy.tell(arch, result)
        return Decision.COMPLETE

    def pop_stopped(self) -> list[int]:
        return []

    def expected_jobs(self) -> int:
        return int(self.limit or 0)

    def state_dict(self) -> dict[str, Any]:
        return {"started": self.started, "strategy": self.strategy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.started = int(state["started"])
        self.strategy.load_state_dict(state["strategy"])
