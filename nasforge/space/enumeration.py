"""Every architecture that completes a partial one: the grid, a progressive step's expansions.

``options`` maps each decision to the values enumerated for it (:func:`domain_values` by
default); a decision whose value ``fixed`` gives keeps that value while it is active.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Iterator, Mapping

from nasforge.space.domains import FloatDomain, InputsDomain
from nasforge.space.schema import Decision, Schema
from nasforge.types import ArchDict

Options = Mapping[str, "list[Any] | None"]


class NotEnumerable(Exception):
    """An active decision has no list of values (a float): its completions cannot be listed."""

    def __init__(self, label: str):
        super().__init__(label)
        self.label = label


def domain_values(d: Decision) -> list[Any] | None:
    """Every value of a decision, or None for a float decision (not enumerable)."""
    if isinstance(d.domain, FloatDomain):
        return None
    if isinstance(d.domain, InputsDomain):
        n, k = len(d.domain.candidates), d.domain.k
        sizes = range(n + 1) if k is None else [k]
        return [list(c) for r in sizes for c in itertools.combinations(d.domain.candidates, r)]
    return d.domain.values()  # type: ignore[union-attr]


def all_options(schema: Schema) -> dict[str, list[Any] | None]:
    return {d.label: domain_values(d) for d in schema}


def count(schema: Schema, options: Options, fixed: ArchDict | None = None, limit: float = math.inf) -> float:
    """How many completions of ``fixed`` there are (``inf`` past ``limit``); raises
    :class:`NotEnumerable` at an active decision without values that ``fixed`` leaves open.
    Branches only on decisions that condition others."""
    parents = {c.parent for d in schema for c in d.conditions}
    fixed = fixed or {}

    def walk(i: int, values: dict[str, Any]) -> float:
        total = 1.0
        for j in range(i, len(schema.decisions)):
            d = schema.decisions[j]
            if not schema.is_active(d, values):
                continue
            opts = [fixed[d.label]] if d.label in fixed else options[d.label]
            if opts is None:
                raise NotEnumerable(d.label)
            if d.label in parents:
                return total * sum(walk(j + 1, {**values, d.label: v}) for v in opts)
            total *= len(opts)
            if total > limit:
                return math.inf
        return total

    return walk(0, {})


def completions(schema: Schema, options: Options, fixed: ArchDict | None = None) -> Iterator[ArchDict]:
    """Every completion of ``fixed``, in schema order (the last decision varies fastest)."""
    fixed = fixed or {}

    def walk(i: int, values: dict[str, Any]) -> Iterator[ArchDict]:
        for j in range(i, len(schema.decisions)):
            d = schema.decisions[j]
            if schema.is_active(d, values):
                for v in ([fixed[d.label]] if d.label in fixed else options[d.label] or []):
                    yield from walk(j + 1, {**values, d.label: v})
                return
        yield dict(values)

    return walk(0, {})
