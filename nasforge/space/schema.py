"""The decision schema of a space: every decision's label, domain and activation conditions.

A decision is *active* in an architecture when all its conditions hold: each names an earlier
(parent) decision, which must itself be active, and the values of that parent under which the
decision is asked (``width_3`` is asked only when ``depth`` is 4, 5 or 6). Strategies sample,
mutate and encode architectures through the schema without building any model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from nasforge.errors import SpaceError
from nasforge.space.domains import Domain, IntDomain, _same, domain_from_json
from nasforge.types import ArchDict


@dataclass(frozen=True)
class Condition:
    """The decision is asked only when ``parent`` takes one of ``values`` (or lies in [low, high])."""

    parent: str
    values: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None

    def holds(self, value: Any) -> bool:
        if self.values is not None:
            return any(_same(value, v) for v in self.values)
        return isinstance(value, (int, float)) and self.low <= value <= self.high  # type: ignore[operator]

    def to_json(self) -> dict[str, Any]:
        if self.values is not None:
            return {"parent": self.parent, "values": list(self.values)}
        return {"parent": self.parent, "low": self.low, "high": self.high}

    @staticmethod
    def from_json(data: dict[str, Any]) -> "Condition":
        values = data.get("values")
        return Condition(data["parent"], tuple(values) if values is not None else None, data.get("low"), data.get("high"))

    def describe(self) -> str:
        if self.values is not None:
            return f"{self.parent} in {list(self.values)}"
        return f"{self.low} <= {self.parent} <= {self.high}"


@dataclass(frozen=True)
class Decision:
    label: str
    domain: Domain
    conditions: tuple[Condition, ...] = ()

    @property
    def conditional(self) -> bool:
        return bool(self.conditions)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "domain": self.domain.to_json(),
                "conditions": [c.to_json() for c in self.conditions]}


@dataclass(frozen=True)
class Schema:
    """Decisions in an order where every parent comes before the decisions it conditions.

    ``exact`` is False when checks against the real space found activity the conditions do not
    explain; strategies still work (the study canonicalises every architecture through the
    space), but sampling through the schema alone may then propose values the space ignores.
    """

    decisions: tuple[Decision, ...]
    exact: bool = True
    _index: dict[str, Decision] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({d.label: d for d in self.decisions})
        seen: set[str] = set()
        for d in self.decisions:
            for c in d.conditions:
                if c.parent not in seen:
                    raise SpaceError(f"Decision {d.label!r} is conditioned on {c.parent!r}, which does not come before it")
            seen.add(d.label)

    def __iter__(self) -> Iterator[Decision]:
        return iter(self.decisions)

    def __len__(self) -> int:
        return len(self.decisions)

    def __contains__(self, label: object) -> bool:
        return label in self._index

    def __getitem__(self, label: str) -> Decision:
        try:
            return self._index[label]
        except KeyError:
            raise SpaceError(f"The space has no decision {label!r}; its decisions: {', '.join(self.labels)}") from None

    @property
    def labels(self) -> list[str]:
        return [d.label for d in self.decisions]

    def is_active(self, decision: Decision, values: ArchDict) -> bool:
        return all(c.parent in values and c.holds(values[c.parent]) for c in decision.conditions)

    def active(self, values: ArchDict) -> list[Decision]:
        """The decisions active under ``values`` (parents read from ``values``)."""
        chosen: dict[str, Any] = {}
        out = []
        for d in self.decisions:
            if self.is_active(d, chosen):
                out.append(d)
                if d.label in values:
                    chosen[d.label] = values[d.label]
        return out

    def repair(self, values: ArchDict, rng: np.random.Generator) -> ArchDict:
        """Keep valid values of active decisions, sample the missing ones, drop the inactive ones."""
        out: ArchDict = {}
        for d in self.decisions:
            if not self.is_active(d, out):
                continue
            v = values.get(d.label)
            out[d.label] = v if v is not None and d.domain.contains(v) else d.domain.sample(rng)
        return out

    def sample(self, rng: np.random.Generator) -> ArchDict:
        return self.repair({}, rng)

    def size(self) -> float:
        """Number of distinct architectures (``inf`` with a float decision)."""
        return _count(self, 0, {})

    def to_json(self) -> dict[str, Any]:
        return {"decisions": [d.to_json() for d in self.decisions], "exact": self.exact}

    @staticmethod
    def from_json(data: dict[str, Any]) -> "Schema":
        decisions = tuple(
            Decision(d["label"], domain_from_json(d["domain"]), tuple(Condition.from_json(c) for c in d.get("conditions", [])))
            for d in data["decisions"]
        )
        return Schema(decisions, bool(data.get("exact", True)))

    def describe(self) -> list[str]:
        lines = []
        for d in self.decisions:
            cond = f"  (when {' and '.join(c.describe() for c in d.conditions)})" if d.conditions else ""
            lines.append(f"{d.label}: {d.domain.describe()}{cond}")
        return lines


def _count(schema: Schema, start: int, values: dict[str, Any]) -> float:
    """Count architectures by walking decisions; only parents need branching, leaves multiply."""
    parents = {c.parent for d in schema.decisions for c in d.conditions}
    total = 1.0
    for i in range(start, len(schema.decisions)):
        d = schema.decisions[i]
        if not schema.is_active(d, values):
            continue
        size = d.domain.size
        if size is None:
            return math.inf
        if d.label in parents:
            branch_values = d.domain.values() if isinstance(d.domain, IntDomain) or hasattr(d.domain, "values") else []
            return total * sum(_count(schema, i + 1, {**values, d.label: v}) for v in branch_values)
        total *= size
    return total
