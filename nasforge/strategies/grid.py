"""Grid search over every combination of (optionally restricted) decision values."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from nasforge.errors import ConfigError
from nasforge.space.enumeration import NotEnumerable, completions, count, domain_values
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
        size = self._count()
        if size > self.max_size:
            raise ConfigError(f"the grid has {size:.3g} points, more than max_size={self.max_size}; restrict decisions with 'values'")
        self.points = list(completions(self.schema, self.options))
        if self.shuffle:
            rng.shuffle(self.points)  # type: ignore[arg-type]
        self.position = 0

    def _options(self, d: Decision) -> list[Any] | None:
        if d.label in self.values:
            bad = [v for v in self.values[d.label] if not d.domain.contains(v)]
            if bad:
                raise ConfigError(f"grid values {bad} for {d.label!r} are outside its domain ({d.domain.describe()})")
            return self.values[d.label]
        return domain_values(d)  # None for a float: an error only if the decision is ever active

    def _count(self) -> float:
        try:
            return count(self.schema, self.options, limit=self.max_size)
        except NotEnumerable as exc:
            raise ConfigError(f"grid search needs a list of values for float decision {exc.label!r} "
                              f"({self.schema[exc.label].domain.describe()}): set the strategy's values: "
                              f"{{{exc.label}: [...]}}") from None

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
