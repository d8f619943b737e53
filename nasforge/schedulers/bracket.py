"""One successive-halving bracket: the bookkeeping shared by successive halving and Hyperband."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from nasforge.schedulers.base import WAIT, Decision, Resume, Start, Suggestion
from nasforge.strategies.base import Strategy, is_ready
from nasforge.types import ArchDict, Result


def rung_sizes(n: int, n_rungs: int, eta: float) -> list[int]:
    """n_i = floor(n * eta^-i), as in Li et al.; computed with integers where eta is one."""
    if float(eta).is_integer():
        return [n // int(eta) ** i for i in range(n_rungs)]
    return [math.floor(n * eta ** -i + 1e-9) for i in range(n_rungs)]


class Bracket:
    """``n`` new trials at ``budgets[0]``; when a rung has all its results, the best
    ``n_{i+1}`` continue to ``budgets[i+1]`` and the rest stop. Synchronous by design."""

    def __init__(self, n: int, budgets: list[float], eta: float):
        self.budgets = [float(b) for b in budgets]
        self.eta = eta
        self.sizes = rung_sizes(n, len(budgets), eta)
        self.rungs: list[dict[int, float | None]] = [{} for _ in budgets]  # trial id -> loss (None: pending)
        self.queue: list[int] = []  # trials promoted, waiting for a worker
        self.exhausted = False  # the strategy had nothing more to propose

    # --- the scheduler side --------------------------------------------------------------
    def next_job(self, trial_id: int, strategy: Strategy) -> Suggestion:
        """A job to run now, or None (the bracket waits for results, or is done)."""
        if self.queue:
            promoted = self.queue.pop(0)
            rung = self._rung_of(promoted) + 1
            self.rungs[rung][promoted] = None
            return Resume(promoted, self.budgets[rung])
        if not self.exhausted and len(self.rungs[0]) < self.sizes[0] and is_ready(strategy):
            arch = strategy.ask()
            if arch is not None:
                self.rungs[0][trial_id] = None
                return Start(arch, self.budgets[0])
            self.exhausted = True
            self.sizes = rung_sizes(len(self.rungs[0]), len(self.budgets), self.eta)
            self._maybe_promote(0)
        return None

    def owns(self, trial_id: int) -> bool:
        return any(trial_id in rung for rung in self.rungs)

    def record(self, trial_id: int, loss: float | None) -> tuple[Decision, list[int]]:
        """Store a result; returns the trial's decision and the trials this stops."""
        rung = self._rung_of(trial_id)
        self.rungs[rung][trial_id] = math.inf if loss is None else loss
        last = rung == self._last_rung()
        stopped = self._maybe_promote(rung)
        return (Decision.COMPLETE if last else Decision.PAUSE), stopped

    @property
    def done(self) -> bool:
        waiting = any(v is None for rung in self.rungs for v in rung.values())
        return not waiting and not self.queue and self._all_started() and self._rung_complete(self._last_rung())

    # --- internals -----------------------------------------------------------------------
    def _last_rung(self) -> int:
        nonzero = [i for i, size in enumerate(self.sizes) if size > 0]
        return nonzero[-1] if nonzero else 0

    def _all_started(self) -> bool:
        return self.exhausted or len(self.rungs[0]) >= self.sizes[0]

    def _rung_of(self, trial_id: int) -> int:
        for i in range(len(self.rungs) - 1, -1, -1):
            if trial_id in self.rungs[i]:
                return i
        raise KeyError(f"trial {trial_id} is not in this bracket")

    def _rung_complete(self, i: int) -> bool:
        rung = self.rungs[i]
        return len(rung) >= self.sizes[i] and all(v is not None for v in rung.values())

    def _maybe_promote(self, i: int) -> list[int]:
        if i >= self._last_rung() or not self._rung_complete(i) or self.rungs[i + 1] or self.queue:
            return []
        ranked = sorted(self.rungs[i], key=lambda t: (self.rungs[i][t], t))
        keep = [t for t in ranked[: self.sizes[i + 1]] if self.rungs[i][t] != math.inf]
        if len(keep) < self.sizes[i + 1]:  # failed trials are never promoted: later rungs shrink
            self.sizes[i + 1] = len(keep)
            for j in range(i + 2, len(self.sizes)):
                self.sizes[j] = min(self.sizes[j], self.sizes[j - 1])
        self.queue.extend(keep)
        return [t for t in ranked if t not in keep and self.rungs[i][t] != math.inf]

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"budgets": self.budgets, "eta": self.eta, "sizes": self.sizes, "queue": self.queue,
                "exhausted": self.exhausted,
                "rungs": [[[t, None if v is None else (v if v != math.inf else "inf")] for t, v in r.items()] for r in self.rungs]}

    @staticmethod
    def from_state(state: dict[str, Any]) -> "Bracket":
        b = Bracket(0, state["budgets"], state["eta"])
        b.sizes, b.queue, b.exhausted = list(state["sizes"]), list(state["queue"]), bool(state["exhausted"])
        b.rungs = [{int(t): (math.inf if v == "inf" else v) for t, v in r} for r in state["rungs"]]
        return b


class BracketScheduler:
    """The scheduler protocol over a list of brackets; successive halving (one bracket) and
    Hyperband (several) differ only in ``_brackets``, which they implement. The earliest bracket
    with work hands out the next job; a bracket waiting for its rung lets later ones start, so
    parallel workers never idle."""

    def _brackets(self, max_budget: float, max_trials: int | None) -> list[Bracket]:
        raise NotImplementedError

    def setup(self, strategy: Strategy, max_budget: float, max_trials: int | None, rng: np.random.Generator) -> None:
        self.strategy = strategy
        self.brackets = self._brackets(max_budget, max_trials)
        self.stopped: list[int] = []

    def suggest(self, trial_id: int) -> Suggestion:
        for bracket in self.brackets:
            job = bracket.next_job(trial_id, self.strategy)
            if job is not None:
                return job
        return None if all(b.done for b in self.brackets) else WAIT

    def on_result(self, trial_id: int, arch: ArchDict, result: Result) -> Decision:
        self.strategy.tell(arch, result)
        bracket = next(b for b in self.brackets if b.owns(trial_id))
        decision, stopped = bracket.record(trial_id, result.loss)
        self.stopped.extend(stopped)
        return decision

    def pop_stopped(self) -> list[int]:
        out, self.stopped = self.stopped, []
        return out

    def expected_jobs(self) -> int:
        return sum(sum(b.sizes) for b in self.brackets)

    def state_dict(self) -> dict[str, Any]:
        return {"brackets": [b.state_dict() for b in self.brackets], "stopped": self.stopped,
                "strategy": self.strategy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.brackets = [Bracket.from_state(b) for b in state["brackets"]]
        self.stopped = list(state["stopped"])
        self.strategy.load_state_dict(state["strategy"])
