"""Architectures as arrays of codes: sample, mutate, repair and encode thousands at once.

Strategies that score many candidates (GP Bayesian optimisation's acquisition search) use this
instead of building dicts one by one; ``ArrayCodes.encode`` gives exactly the columns of
:class:`nasforge.space.encoding.Encoder`.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from nasforge.errors import ConfigError
from nasforge.space.domains import (
    CategoricalDomain,
    FloatDomain,
    InputsDomain,
    IntDomain,
)
from nasforge.space.mutation import LOCAL_STEP_MIN_SIZE, can_change
from nasforge.space.schema import Schema
from nasforge.types import ArchDict


class ArrayCodes:
    """Architectures as rows of numbers, one column per decision, so that thousands of candidates
    are sampled, mutated, repaired and encoded with array operations.

    A code is the value for ints and floats, the option index for categoricals, a bit mask of the
    chosen candidates for inputs, and NaN for an inactive decision. ``encode`` gives exactly the
    columns of :class:`nasforge.space.Encoder`.
    """

    def __init__(self, schema: Schema):
        self.schema = schema
        self.domains = [d.domain for d in schema]
        self.col = {d.label: j for j, d in enumerate(schema)}
        self.changeable = np.array([can_change(domain) for domain in self.domains], dtype=bool)
        for d in schema:
            if isinstance(d.domain, InputsDomain) and len(d.domain.candidates) > 52:
                raise ConfigError(f"strategies that score arrays of candidates (bayesopt, predictor) support inputs decisions of "
                                  f"at most 52 candidates; "
                                  f"{d.label!r} has {len(d.domain.candidates)}")

    def from_arch(self, arch: ArchDict) -> np.ndarray:
        row = np.full(len(self.domains), np.nan)
        for d in self.schema.active(arch):
            if d.label in arch:
                row[self.col[d.label]] = _code(d.domain, arch[d.label])
        return row

    def to_arch(self, row: np.ndarray) -> ArchDict:
        return {d.label: _value(d.domain, row[j]) for j, d in enumerate(self.schema) if not np.isnan(row[j])}

    def _active(self, j: int, codes: np.ndarray) -> np.ndarray:
        mask = np.ones(len(codes), dtype=bool)
        for c in self.schema.decisions[j].conditions:
            p = self.col[c.parent]
            present = codes[:, p][~np.isnan(codes[:, p])]
            values = np.unique(present)
            holds = [c.holds(_value(self.domains[p], v)) for v in values]
            mask &= np.isin(codes[:, p], values[np.asarray(holds, dtype=bool)])
        return mask

    def repair(self, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Blank inactive decisions and sample active ones that have no value (in schema order)."""
        for j, domain in enumerate(self.domains):
            active = self._active(j, codes)
            codes[~active, j] = np.nan
            missing = active & np.isnan(codes[:, j])
            if missing.any():
                codes[missing, j] = _sample(domain, int(missing.sum()), rng)
        return codes

    def mutate(self, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Give one active, changeable decision per row (picked uniformly) another value; repair."""
        codes = codes.copy()
        candidates = ~np.isnan(codes) & self.changeable
        choice = np.argmax(rng.random(codes.shape) * candidates, axis=1)
        has = candidates.any(axis=1)
        for j in np.unique(choice[has]):
            rows = has & (choice == j)
            codes[rows, j] = _change(self.domains[j], codes[rows, j], rng)
        return self.repair(codes, rng)

    def encode(self, codes: np.ndarray) -> np.ndarray:
        columns = []
        for j, d in enumerate(self.schema):
            col, domain = codes[:, j], d.domain
            present = ~np.isnan(col)
            if d.conditional and not isinstance(domain, CategoricalDomain):
                columns.append(present[:, None].astype(np.float64))
            if isinstance(domain, (IntDomain, FloatDomain)):
                columns.append(np.where(present, _to_unit(domain, np.where(present, col, domain.low)), 0.0)[:, None])
            else:
                n = domain.size if isinstance(domain, CategoricalDomain) else len(domain.candidates)
                k = np.where(present, col, -1.0).astype(np.int64)[:, None]
                columns.append((k == np.arange(n) if isinstance(domain, CategoricalDomain)
                                else (k >= 0) & ((k >> np.arange(n)) & 1 == 1)).astype(np.float64))
        return np.concatenate(columns, axis=1) if columns else np.zeros((len(codes), 0))


def local_and_fresh(codes: ArrayCodes, parents: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` candidate code rows: half are mutations of ``parents`` in turn (a third of them
    mutated twice), half fresh samples of the space (a local and a global search)."""
    n_local = n // 2
    local = codes.mutate(parents[np.arange(n_local) % len(parents)], rng)
    again = rng.random(n_local) < 1 / 3
    local[again] = codes.mutate(local[again], rng)
    fresh = codes.repair(np.full((n - n_local, len(codes.schema)), np.nan), rng)
    return np.concatenate([local, fresh])


def _code(domain: Any, value: Any) -> float:
    if isinstance(domain, CategoricalDomain):
        return float(domain.index(value))
    if isinstance(domain, InputsDomain):
        return float(sum(1 << domain.candidates.index(c) for c in value))
    return float(value)


def _value(domain: Any, code: float) -> Any:
    if isinstance(domain, CategoricalDomain):
        return domain.options[int(code)]
    if isinstance(domain, InputsDomain):
        return [c for i, c in enumerate(domain.candidates) if int(code) >> i & 1]
    return int(code) if isinstance(domain, IntDomain) else float(code)


def _to_unit(domain: IntDomain | FloatDomain, v: np.ndarray) -> np.ndarray:
    if domain.high == domain.low:
        return np.zeros_like(v)
    if domain.log:
        return (np.log(v) - math.log(domain.low)) / (math.log(domain.high) - math.log(domain.low))
    return (v - domain.low) / (domain.high - domain.low)


def _from_unit(domain: IntDomain | FloatDomain, u: np.ndarray) -> np.ndarray:
    """Vectorised ``domain.from_unit``."""
    u = np.clip(u, 0.0, 1.0)
    if domain.log:
        raw = np.exp(math.log(domain.low) + u * (math.log(domain.high) - math.log(domain.low)))
    else:
        raw = domain.low + u * (domain.high - domain.low)
    if isinstance(domain, FloatDomain):
        return np.clip(raw, domain.low, domain.high)
    return np.clip(domain.low + np.round((raw - domain.low) / domain.step) * domain.step, domain.low, domain.high)


def _sample(domain: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(domain, CategoricalDomain):
        return rng.integers(domain.size, size=n).astype(np.float64)
    if isinstance(domain, InputsDomain):
        m = len(domain.candidates)
        if domain.k is None:
            bits = rng.random((n, m)) < 0.5
        else:
            bits = np.zeros((n, m), dtype=bool)
            np.put_along_axis(bits, np.argsort(rng.random((n, m)), axis=1)[:, :domain.k], True, axis=1)
        return bits.astype(np.float64) @ (2.0 ** np.arange(m))
    if isinstance(domain, IntDomain) and not domain.log:
        return domain.low + domain.step * rng.integers(domain.size, size=n).astype(np.float64)
    return _from_unit(domain, rng.random(n))


def _change(domain: Any, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Other values for ``codes``: a different option; for numbers a local step (large ranges,
    half the time) or a uniform resample; for inputs one candidate flipped (or a resample)."""
    n = len(codes)
    if isinstance(domain, CategoricalDomain):
        return (codes + rng.integers(1, domain.size, size=n)) % domain.size
    if isinstance(domain, InputsDomain):
        if domain.k is None:
            flip = 1 << rng.integers(len(domain.candidates), size=n)
            return np.bitwise_xor(codes.astype(np.int64), flip).astype(np.float64)
        return _sample(domain, n, rng)
    local = rng.random(n) < 0.5
    if isinstance(domain, FloatDomain):
        u = np.where(local, _to_unit(domain, codes) + rng.normal(0.0, 0.1, size=n), rng.random(n))
        return _from_unit(domain, u)
    size, index = domain.size, (codes - domain.low) // domain.step
    steps = rng.integers(1, max(2, math.ceil(size / 10) + 1), size=n) * rng.choice([-1, 1], size=n)
    stepped = np.where((index + steps >= 0) & (index + steps < size), index + steps, index - steps)
    other = (index + rng.integers(1, size, size=n)) % size
    new = np.where(local & (size >= LOCAL_STEP_MIN_SIZE), np.clip(stepped, 0, size - 1), other)
    return domain.low + domain.step * new
