"""Mutation over a recorded schema: give one active decision a different value, repair the rest."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from nasforge.space.domains import (
    CategoricalDomain,
    Domain,
    FloatDomain,
    InputsDomain,
    IntDomain,
)
from nasforge.space.schema import Decision, Schema
from nasforge.types import ArchDict

LOCAL_STEP_MIN_SIZE = 11
"""Int decisions with at least this many values mutate by a local step half of the time."""


def mutate(schema: Schema, arch: ArchDict, rng: np.random.Generator) -> ArchDict:
    """A copy of ``arch`` with one active decision (picked uniformly among those that can change)
    given a different value; decisions that become active are sampled, inactive ones dropped.

    Returns an unchanged (repaired) copy when no active decision has a second value.
    """
    child = schema.repair(arch, rng)
    mutable = [d for d in schema.active(child) if can_change(d.domain)]
    if not mutable:
        return child
    d = mutable[int(rng.integers(len(mutable)))]
    child[d.label] = _new_value(d, child[d.label], rng)
    return schema.repair(child, rng)


def can_change(domain: Domain) -> bool:
    """Whether a decision in ``domain`` has a second value to mutate to."""
    if isinstance(domain, FloatDomain):
        return domain.high > domain.low
    if isinstance(domain, InputsDomain) and domain.k is not None:
        return 0 < domain.k < len(domain.candidates)
    return domain.size > 1


def _new_value(d: Decision, value: Any, rng: np.random.Generator) -> Any:
    """A valid value of ``d`` different from ``value``."""
    domain = d.domain
    if isinstance(domain, CategoricalDomain):
        i = (domain.index(value) + int(rng.integers(1, domain.size))) % domain.size
        return domain.options[i]
    if isinstance(domain, IntDomain):
        return _new_int(domain, int(value), rng)
    if isinstance(domain, FloatDomain):
        u = domain.to_unit(value)
        u = u + rng.normal(0.0, 0.1) if rng.random() < 0.5 else rng.random()
        new = domain.from_unit(u)
        return new if new != value else domain.from_unit(1.0 - domain.to_unit(value))
    assert isinstance(domain, InputsDomain)
    chosen = set(value)
    if domain.k is None:
        flip = domain.candidates[int(rng.integers(len(domain.candidates)))]
        chosen ^= {flip}
    else:
        inside = [c for c in domain.candidates if c in chosen]
        outside = [c for c in domain.candidates if c not in chosen]
        chosen.remove(inside[int(rng.integers(len(inside)))])
        chosen.add(outside[int(rng.integers(len(outside)))])
    return domain.canonical(chosen)


def _new_int(domain: IntDomain, value: int, rng: np.random.Generator) -> int:
    """Half of the time (large ranges only) a step of 1 to size/10 grid points, else uniform."""
    size = domain.size
    index = (value - domain.low) // domain.step
    if size >= LOCAL_STEP_MIN_SIZE and rng.random() < 0.5:
        step = int(rng.integers(1, max(2, math.ceil(size / 10) + 1)))
        sign = 1 if rng.random() < 0.5 else -1
        new = index + sign * step
        if not 0 <= new < size:
            new = index - sign * step
        new = min(max(new, 0), size - 1)
    else:
        new = (index + int(rng.integers(1, size))) % size
    return domain.low + domain.step * new
