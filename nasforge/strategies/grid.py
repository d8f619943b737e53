"""Grid search over every combination of (optionally restricted) decision values."""
from __future__ import annotations

import itertools
import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from nasforge.errors import ConfigError
from nasforge.space.domains import FloatDomain, InputsDomain
from nasforge.space.schema import Decision, Schema
from nasforge.types import ArchDict, Result


class GridSearch:
    """Every combination of decision values, respecting conditions (widths only up to depth).

    ``values`` restricts decisions to listed values (needed for float decisions and large ranges);
    ``shuffle`` visits the grid in a seeded random order; ``max_size`` guards against huge grids.
    """

    def __init__(self, values: Mapping[str, Sequence[Any]] | None = None, shuffle: bool = False, max_size: int = 100_000):
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ConfigError(f"Invalid max_size: {max_size!r} (must be an int >= 1)")
        if not isinstance(values or {}, Mapping):
            raise ConfigError(f"grid values must be a mapping of decision label -> list of values, got {type(values).__name__}")
        for label, options in (values or {}).items():
            if isinstance(options, (str, bytes)) or not isinstance(options, Sequence) or not options:
                raise ConfigError(f"grid values for {label!r} must be a non-empty list, got {options!r:.60}")
        self.values = {k: list(v) for k, v in (values or {}).items()}
        self.shuffle = shuffle
        self.max_size = max_size
        self.position = 0

    def setup(self, schema: Schema, rng: np.random.Generator) -> None:
        unknown = [k for k in self.values if k not in schema]
        if unknown:
            raise ConfigError(f"grid values for unknown decision(s) {', '.join(unknown)}; the space's decisions: {', '.join(schema.labels)}")
        self.options = {d.label: self._options(d) for d in schema}
        self.schema = schema
        size = self._count(0, {})
        if size > self.max_size:
            raise ConfigError(f"the grid has {size:.3g} points, more than max_size={self.max_size}; restrict decisions with 'values'")
        self.points = list(self._points(0, {}))
        if self.shuffle:
            rng.shuffle(self.points)  # type: ignore[arg-type]
        self.position = 0

    def _options(self, d: Decision) -> list[Any]:
        if d.label in self.values:
            bad = [v for v in self.values[d.label] if not d.domain.contains(v)]
            if bad:
                raise ConfigError(f"grid values {bad} for {d.label!r} are outside its domain ({d.domain.describe()})")
            return self.values[d.label]
        if isinstance(d.domain, FloatDomain):
            return [None]  # checked lazily: only an error if the decision is ever active
        if isinstance(d.domain, InputsDomain):
            n, k = len(d.domain.candidates), d.domain.k
            sizes = range(n + 1) if k is None else [k]
            return [list(c) for r in sizes for c in itertools.combinations(d.domain.candidates, r)]
        return d.domain.values()  # type: ignore[union-attr]

    def _count(self, i: int, values: dict[str, Any]) -> float:
        """Grid size: branch only on decisions that condition others; the rest multiply."""
        parents = {c.parent for d in self.schema for c in d.conditions}
        total = 1.0
        for j in range(i, len(self.schema.decisions)):
            d = self.schema.decisions[j]
            if not self.schema.is_active(d, values):
                continue
            opts = self.options[d.label]
            if opts == [None]:
                raise ConfigError(f"grid search needs a list of values for float decision {d.label!r} "
                                  f"({d.domain.describe()}): set the strategy's values: {{{d.label}: [...]}}")
            if d.label in parents:
                return total * sum(self._count(j + 1, {**values, d.label: v}) for v in opts)
            total *= len(opts)
            if total > self.max_size:
                return math.inf
        return total

    def _points(self, i: int, values: dict[str, Any]) -> Iterator[ArchDict]:
        for j in range(i, len(self.schema.decisions)):
            d = self.schema.decisions[j]
            if self.schema.is_active(d, values):
                for v in self.options[d.label]:
                    yield from self._points(j + 1, {**values, d.label: v})
                return
        yield dict(values)

    def ask(self) -> ArchDict | None:
        if self.position >= len(self.points):
            return None
        self.position += 1
        return dict(self.points[self.position - 1])

    def tell(self, arch: ArchDict, result: Result) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])
