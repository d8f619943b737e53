"""Gaussian-process Bayesian optimisation with expected improvement, multi-fidelity aware (BOHB).

The surrogate is a GP (:mod:`nasforge.strategies.gp`: scikit-learn's ``GaussianProcessRegressor``
with a constant x Matern 5/2 + white-noise kernel, computed without importing it) on architectures encoded by
:class:`nasforge.space.Encoder`. Expected improvement is maximised over sampled candidates:
fresh samples of the space plus mutations of the best observed architectures (local search).
Candidates are generated and encoded as arrays (:class:`ArrayCodes`), so thousands cost a few ms.
"""
from __future__ import annotations

import json
import math
import warnings
from functools import partial
from typing import Any, Callable

import numpy as np
from scipy.optimize import minimize
from scipy.special import (
    ndtr,  # the normal CDF; scipy.stats would cost a second to import
)

from nasforge.errors import ConfigError
from nasforge.space.codes import ArrayCodes, local_and_fresh
from nasforge.space.encoding import Encoder
from nasforge.space.blas import one_blas_thread
from nasforge.space.schema import Schema
from nasforge.strategies.base import rng_state, set_rng_state, unseen_sample
from nasforge.strategies.gp import GaussianProcess, initial_theta
from nasforge.types import ArchDict, Result, arch_key

N_PARENTS = 5
"""Local search mutates the best this-many observed architectures (at the modelled budget)."""
HYPER_POINTS = 100
"""Kernel hyperparameters are optimised on at most this many observations."""
REFIT_ITERATIONS = 20
"""L-BFGS-B iterations of a warm-started hyperparameter refit (twice as many from scratch)."""


def expected_improvement(mu: np.ndarray, sigma: np.ndarray, best: float, xi: float = 0.01) -> np.ndarray:
    """Expected improvement below ``best`` (minimisation) of a normal posterior N(mu, sigma^2).

    ``EI = (best - mu - xi) * Phi(z) + sigma * phi(z)`` with ``z = (best - mu - xi) / sigma``;
    where ``sigma`` is 0 it is ``max(best - mu - xi, 0)``. ``xi`` >= 0 trades towards exploration.
    """
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    improvement = best - mu - xi
    safe = np.where(sigma > 0, sigma, 1.0)
    z = improvement / safe
    ei = improvement * ndtr(z) + safe * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return np.where(sigma > 0, np.maximum(ei, 0.0), np.maximum(improvement, 0.0))


def _check(name: str, value: Any, low: float, kind: type = int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or not value >= low:
        raise ConfigError(f"Invalid {name}: {value!r} (must be {'a number' if kind is float else 'an int'} >= {low})")


class GPBayesOpt:
    """Bayesian optimisation: a GP surrogate of the loss, expected improvement over candidates.

    The first ``n_initial`` asks are random (fewer when results were told without asks, e.g.
    replayed from an earlier study). Then each model step fits the GP (Matern 5/2 times a
    constant, plus white noise, ``normalize_y``) on the observations, scores ``n_candidates``
    candidates by expected improvement and hands the best ``batch_size`` of them to the next asks,
    in order. No ask repeats an architecture already told or asked-and-not-told while another can
    be found. Failed trials count as the worst loss seen at their budget.

    Multi-fidelity (BOHB): when a scheduler tells results at several budgets, the model uses the
    largest budget with at least ``min_points`` successful observations (default
    ``max(3, min(n_initial, encoded dims + 1))``); until one has, asks are random.

    Cost is bounded: the kernel hyperparameters are re-optimised only every ``refit_every`` tells
    (warm-started, on at most 100 observations, 20 L-BFGS-B iterations; 40 from scratch) and
    reused in between; the GP is fitted on at most ``max_points`` observations (the best half and
    the most recent rest). One shared length scale is the default: with tens of observations, a
    length scale per column (``ard``) overfits and got stuck far more often in our tests.

    Args:
        n_initial: random asks before the model is used (>= 0).
        n_candidates: candidates scored per model step (>= 1): half mutations, half fresh samples.
        batch_size: asks served from one model step (>= 1).
        xi: exploration margin of expected improvement, in loss units (>= 0).
        refit_every: tells between kernel hyperparameter optimisations (>= 1).
        max_points: the most observations the GP is fitted on (>= 2).
        min_points: observations a budget needs before it is modelled (>= 2; None: see above).
        ard: one length scale per encoded column (True) or one shared (False).
    """

    def __init__(self, n_initial: int = 10, n_candidates: int = 2000, batch_size: int = 1, xi: float = 0.01,
                 refit_every: int = 20, max_points: int = 150, min_points: int | None = None, ard: bool = False):
        for name, value, low in (("n_initial", n_initial, 0), ("n_candidates", n_candidates, 1),
                                 ("batch_size", batch_size, 1), ("refit_every", refit_every, 1),
                                 ("max_points", max_points, 2)):
            _check(name, value, low)
        _check("xi", xi, 0.0, float)
        if min_points is not None:
            _check("min_points", min_points, 2)
        self.n_initial, self.n_candidates, self.batch_size, self.xi = n_initial, n_candidates, batch_size, float(xi)
        self.refit_every, self.max_points, self.min_points, self.ard = refit_every, max_points, min_points, ard

    def setup(self, schema: Schema, rng: np.random.Generator) -> None:
        self.schema, self.rng = schema, rng
        self.encoder = Encoder(schema)
        self.codes = ArrayCodes(schema)
        self.needed = self.min_points or max(3, min(self.n_initial, self.encoder.dim + 1))
        self.history: list[dict[str, Any]] = []  # {"arch", "budget", "loss"} in tell order
        self.pending: list[str] = []  # keys asked and not yet told
        self.queue: list[ArchDict] = []  # the rest of the last model step's batch
        self.n_asked = 0
        self.theta: list[float] | None = None  # kernel hyperparameters (log), from the last refit
        self.theta_budget: float | None = None
        self.refit_at = 0  # len(history) at the last refit
        self._rebuild()

    def _rebuild(self) -> None:
        """Derived per-observation caches: keys, encoded rows and code rows."""
        self._keys = [arch_key(h["arch"]) for h in self.history]
        self._told = set(self._keys)
        self._seen = self._told | set(self.pending)
        self._x = [self.encoder.encode(h["arch"]) for h in self.history]
        self._c = [self.codes.from_arch(h["arch"]) for h in self.history]

    # -- protocol ---------------------------------------------------------------------------------

    def ask(self) -> ArchDict:
        while self.queue and arch_key(self.queue[0]) in self._seen:
            self.queue.pop(0)
        if not self.queue and max(self.n_asked, len(self._told)) >= self.n_initial:
            self.queue = self._model_step()
        arch = self.queue.pop(0) if self.queue else self._random()
        self.n_asked += 1
        key = arch_key(arch)
        self.pending.append(key)
        self._seen.add(key)
        return arch

    def ready(self) -> bool:
        """Random asks may run ahead; a model-based ask wants every pending result first, unless
        the current batch (one fit's top ``batch_size``) still has members to hand out."""
        if max(self.n_asked, len(self._told)) < self.n_initial:
            return True
        return bool(self.queue) or not self.pending

    def tell(self, arch: ArchDict, result: Result) -> None:
        key = arch_key(arch)
        if key in self.pending:
            self.pending.remove(key)
        loss = float(result.loss) if result.ok and math.isfinite(result.loss) else None  # type: ignore[arg-type]
        self.history.append({"arch": dict(arch), "budget": float(result.budget), "loss": loss})
        self._keys.append(key)
        self._told.add(key)
        self._seen.add(key)
        self._x.append(self.encoder.encode(arch))
        self._c.append(self.codes.from_arch(arch))

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "pending": list(self.pending), "queue": list(self.queue),
                "n_asked": self.n_asked, "theta": self.theta, "theta_budget": self.theta_budget,
                "refit_at": self.refit_at, "rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [dict(h) for h in state["history"]]
        # Re-keyed: states saved before arch_key wrote compact JSON.
        self.pending = [arch_key(json.loads(key)) for key in state["pending"]]
        self.queue = [dict(a) for a in state["queue"]]
        self.n_asked, self.refit_at = int(state["n_asked"]), int(state["refit_at"])
        self.theta, self.theta_budget = state["theta"], state["theta_budget"]
        set_rng_state(self.rng, state["rng"])
        self._rebuild()

    # -- model step -------------------------------------------------------------------------------

    def _random(self) -> ArchDict:
        return unseen_sample(self.schema, self.rng, self._seen)

    def _model_budget(self) -> float | None:
        counts: dict[float, int] = {}
        for h in self.history:
            if h["loss"] is not None:
                counts[h["budget"]] = counts.get(h["budget"], 0) + 1
        ready = [b for b, n in counts.items() if n >= self.needed]
        return max(ready) if ready else None

    def _model_step(self) -> list[ArchDict]:
        """Fit the GP at the modelled budget and return the best unseen candidates by EI."""
        budget = self._model_budget()
        if budget is None:
            return []
        rows, y = self._training_set(budget)
        codes = self._candidates(rows, y)
        with one_blas_thread():  # GP matrices here are small (<= max_points)
            gp = self._fit(np.asarray([self._x[i] for i in rows]), y, budget)
            mu, sigma = gp.predict(self.codes.encode(codes))
        ei = expected_improvement(mu, sigma, float(y.min()), self.xi)
        picks: list[ArchDict] = []
        keys = set(self._seen)
        for i in np.argsort(-ei, kind="stable"):
            arch = self.codes.to_arch(codes[i])
            key = arch_key(arch)
            if key not in keys:
                picks.append(arch)
                keys.add(key)
                if len(picks) == self.batch_size:
                    break
        return picks

    def _training_set(self, budget: float) -> tuple[list[int], np.ndarray]:
        """Rows observed at ``budget`` (failures as the worst loss), capped to ``max_points``:
        the best half by loss, then the most recent."""
        rows = [i for i, h in enumerate(self.history) if h["budget"] == budget]
        losses = np.array([self.history[i]["loss"] if self.history[i]["loss"] is not None else np.nan for i in rows])
        y = np.where(np.isnan(losses), np.nanmax(losses), losses)
        if len(rows) > self.max_points:
            best = np.argsort(np.where(np.isnan(losses), np.inf, losses), kind="stable")[: self.max_points // 2]
            rest = np.setdiff1d(np.arange(len(rows)), best)[-(self.max_points - len(best)):]
            keep = np.sort(np.concatenate([best, rest]))
            rows, y = [rows[i] for i in keep], y[keep]
        return rows, y

    def _fit(self, x: np.ndarray, y: np.ndarray, budget: float) -> GaussianProcess:
        """Fit with the stored hyperparameters, re-optimising them first when due: warm-started,
        on at most ``HYPER_POINTS`` evenly spaced rows (the likelihood gradient costs n^2 * dims)."""
        theta = initial_theta(self.encoder.dim if self.ard else 1)
        if self.theta is not None and len(self.theta) == len(theta):
            theta = np.asarray(self.theta)
        if (self.theta is None or self.theta_budget != budget
                or len(self.history) - self.refit_at >= self.refit_every):
            sub = np.unique(np.linspace(0, len(y) - 1, min(len(y), HYPER_POINTS)).round().astype(int))
            maxiter = REFIT_ITERATIONS if self.theta_budget == budget else 2 * REFIT_ITERATIONS
            theta = GaussianProcess(theta, x[sub], y[sub], partial(_lbfgs, maxiter=maxiter)).theta
            self.theta, self.theta_budget, self.refit_at = theta.tolist(), budget, len(self.history)
        return GaussianProcess(theta, x, y)

    def _candidates(self, rows: list[int], y: np.ndarray) -> np.ndarray:
        """Code rows: mutations of the best observed architectures, then fresh samples."""
        order = np.argsort(y, kind="stable")
        parents, keys = [], set()
        for i in order:
            if self._keys[rows[i]] not in keys:
                keys.add(self._keys[rows[i]])
                parents.append(self._c[rows[i]])
            if len(parents) == N_PARENTS:
                break
        return local_and_fresh(self.codes, np.asarray(parents), self.n_candidates, self.rng)


def _lbfgs(objective: Callable[[np.ndarray], tuple[float, np.ndarray]], initial: np.ndarray, bounds: np.ndarray,
           maxiter: int) -> np.ndarray:
    """L-BFGS-B from the (warm) initial hyperparameters, bounded work."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hyperparameters at their bounds are fine here
        return minimize(objective, initial, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": maxiter}).x
