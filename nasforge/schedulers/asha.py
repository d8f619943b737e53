"""ASHA (Li et al., 2020): asynchronous successive halving. A trial is promoted as soon as it is in
the top 1/eta of the results its rung has so far, so workers never wait for a rung to fill."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from nasforge.errors import ConfigError
from nasforge.schedulers.base import WAIT, Decision, Resume, Start, Suggestion
from nasforge.schedulers.successive_halving import check_eta, geometric_budgets
from nasforge.strategies.base import Strategy, is_ready
from nasforge.types import ArchDict, Result


class ASHA:
    """Rungs at ``min_budget * eta^k`` up to the study's budget. When a worker is free: promote the
    best not-yet-promoted trial of the highest rung whose top ``floor(n_k / eta)`` holds one, else
    start a new trial (until the study's ``trials`` have started)."""

    def __init__(self, eta: float = 3, min_budget: float = 1):
        check_eta(eta)
        if min_budget <= 0:
            raise ConfigError(f"Invalid min_budget: {min_budget} (must be > 0)")
        self.eta, self.min_budget = eta, min_budget

    def setup(self, strategy: Strategy, max_budget: float, max_trials: int | None, rng: np.random.Generator) -> None:
        if not max_trials:
            raise ConfigError("ASHA needs the study's number of trials")
        self.strategy = strategy
        self.budgets = geometric_budgets(max_budget, self.min_budget, self.eta)
        self.max_trials = max_trials
        self.results: list[dict[int, float]] = [{} for _ in self.budgets]  # rung -> trial -> loss
        self.promoted: list[list[int]] = [[] for _ in self.budgets]
        self.rung_of: dict[int, int] = {}
        self.started = 0
        self.in_flight = 0

    def suggest(self, trial_id: int) -> Suggestion:
        for k in range(len(self.budgets) - 2, -1, -1):
            candidate = self._promotable(k)
            if candidate is not None:
                self.promoted[k].append(candidate)
                self.rung_of[candidate] = k + 1
                self.in_flight += 1
                return Resume(candidate, self.budgets[k + 1])
        if self.started < self.max_trials and is_ready(self.strategy):
            arch = self.strategy.ask()
            if arch is not None:
                self.started += 1
                self.rung_of[trial_id] = 0
                self.in_flight += 1
                return Start(arch, self.budgets[0])
            else:
                self.max_trials = self.started  # the strategy is exhausted
        return WAIT if self.in_flight else None

    def _promotable(self, k: int) -> int | None:
        rung = self.results[k]
        top = math.floor(len(rung) / self.eta)
        best = sorted((loss, t) for t, loss in rung.items() if loss != math.inf)[:top]
        for _, t in best:
            if t not in self.promoted[k]:
                return t
        return None

    def on_result(self, trial_id: int, arch: ArchDict, result: Result) -> Decision:
        self.strategy.tell(arch, result)
        k = self.rung_of[trial_id]
        self.results[k][trial_id] = math.inf if result.loss is None else result.loss
        self.in_flight -= 1
        return Decision.COMPLETE if k == len(self.budgets) - 1 else Decision.PAUSE

    def pop_stopped(self) -> list[int]:
        return []  # ASHA never stops a trial for good while the search runs; the study prunes at the end

    def expected_jobs(self) -> int:
        return sum(math.ceil(self.max_trials / self.eta ** k) for k in range(len(self.budgets)))

    def state_dict(self) -> dict[str, Any]:
        return {"results": [[[t, "inf" if v == math.inf else v] for t, v in r.items()] for r in self.results],
                "promoted": self.promoted, "rung_of": [[t, k] for t, k in self.rung_of.items()],
                "started": self.started, "in_flight": self.in_flight, "max_trials": self.max_trials,
                "strategy": self.strategy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.results = [{int(t): (math.inf if v == "inf" else v) for t, v in r} for r in state["results"]]
        self.promoted = [list(p) for p in state["promoted"]]
        self.rung_of = {int(t): int(k) for t, k in state["rung_of"]}
        self.started, self.in_flight, self.max_trials = state["started"], state["in_flight"], state["max_trials"]
        self.strategy.load_state_dict(state["strategy"])
