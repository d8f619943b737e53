"""Domains of single decisions: what values a decision may take, how to sample and encode them.

Each domain is a small frozen dataclass with the same methods, and ``to_json``/``domain_from_json``
round-trip it, so a recorded schema is plain data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from nasforge.errors import SpaceError

JSONScalar = Union[str, int, float, bool, None]


def _same(a: Any, b: Any) -> bool:
    # 1 == True in Python; a categorical [1, True] must still tell them apart.
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b
    )


@dataclass(frozen=True)
class IntDomain:
    low: int
    high: int
    step: int = 1
    log: bool = False
    kind = "int"

    def __post_init__(self) -> None:
        for name in ("low", "high", "step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise SpaceError(f"Invalid {name} for an int decision: {value!r} (must be an int)")
        if self.low > self.high:
            raise SpaceError(f"Invalid int range: low={self.low} > high={self.high}")
        if self.step < 1:
            raise SpaceError(f"Invalid step: {self.step} (must be >= 1)")
        if (self.high - self.low) % self.step:
            raise SpaceError(f"Invalid int range: high - low = {self.high - self.low} is not a multiple of step={self.step}")
        if self.log and (self.low < 1 or self.step != 1):
            raise SpaceError(f"Invalid log int range: needs low >= 1 and step == 1, got low={self.low}, step={self.step}")

    @property
    def size(self) -> int:
        return (self.high - self.low) // self.step + 1

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            if not (isinstance(value, float) and value.is_integer()):
                return False
        return self.low <= value <= self.high and (value - self.low) % self.step == 0

    def default(self) -> int:
        return self.low

    def sample(self, rng: np.random.Generator) -> int:
        if self.log:
            return self.from_unit(float(rng.random()))
        return self.low + self.step * int(rng.integers(self.size))

    def to_unit(self, value: int) -> float:
        if self.high == self.low:
            return 0.0
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> int:
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            raw = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            raw = self.low + u * (self.high - self.low)
        k = round((raw - self.low) / self.step)
        return int(min(max(self.low + k * self.step, self.low), self.high))

    def probe_values(self) -> list[int]:
        if self.size <= 16:
            return self.values()
        return sorted({self.from_unit(u) for u in np.linspace(0.0, 1.0, 9)})

    def describe(self) -> str:
        extra = (f", step={self.step}" if self.step != 1 else "") + (", log" if self.log else "")
        return f"int in [{self.low}, {self.high}{extra}]"

    def to_json(self) -> dict[str, Any]:
        return {"type": "int", "low": int(self.low), "high": int(self.high), "step": int(self.step), "log": self.log}


@dataclass(frozen=True)
class FloatDomain:
    low: float
    high: float
    log: bool = False
    kind = "float"

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SpaceError(f"Invalid {name} for a float decision: {value!r} (must be a finite number)")
        if self.low > self.high:
            raise SpaceError(f"Invalid float range: low={self.low} > high={self.high}")
        if self.log and self.low <= 0:
            raise SpaceError(f"Invalid log float range: low={self.low} must be > 0")

    size = None

    def contains(self, value: Any) -> bool:
        return (not isinstance(value, bool) and isinstance(value, (int, float))
                and self.low <= value <= self.high)

    def default(self) -> float:
        return float(self.low)

    def sample(self, rng: np.random.Generator) -> float:
        return self.from_unit(float(rng.random()))

    def to_unit(self, value: float) -> float:
        if self.high == self.low:
            return 0.0
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        return float(min(max(value, self.low), self.high))

    def probe_values(self) -> list[float]:
        return [self.from_unit(u) for u in (0.0, 0.5, 1.0)]

    def describe(self) -> str:
        return f"float in [{self.low}, {self.high}{', log' if self.log else ''}]"

    def to_json(self) -> dict[str, Any]:
        return {"type": "float", "low": float(self.low), "high": float(self.high), "log": self.log}


@dataclass(frozen=True)
class CategoricalDomain:
    """One value out of a list of JSON scalars. ``ChoiceDomain`` is the same for module candidates."""

    options: tuple[JSONScalar, ...]
    kind = "categorical"

    def __post_init__(self) -> None:
        if len(self.options) == 0:
            raise SpaceError(f"A {self.kind} decision needs at least one option")
        for option in self.options:
            if not isinstance(option, (str, int, float, bool)) and option is not None:
                raise SpaceError(f"Invalid {self.kind} option {option!r}: options must be str, int, float, bool or None")
        for i, a in enumerate(self.options):
            if any(_same(a, b) for b in self.options[i + 1:]):
                raise SpaceError(f"Duplicate {self.kind} option {a!r} in {list(self.options)}")

    @property
    def size(self) -> int:
        return len(self.options)

    def values(self) -> list[JSONScalar]:
        return list(self.options)

    def index(self, value: Any) -> int:
        for i, option in enumerate(self.options):
            if _same(option, value):
                return i
        raise SpaceError(f"{value!r} is not one of {list(self.options)}")

    def contains(self, value: Any) -> bool:
        return any(_same(option, value) for option in self.options)

    def default(self) -> JSONScalar:
        return self.options[0]

    def sample(self, rng: np.random.Generator) -> JSONScalar:
        return self.options[int(rng.integers(len(self.options)))]

    def probe_values(self) -> list[JSONScalar]:
        return list(self.options[:64])

    def describe(self) -> str:
        return f"one of {list(self.options)}"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, "options": list(self.options)}


@dataclass(frozen=True)
class ChoiceDomain(CategoricalDomain):
    """The name of one candidate module (``arch.choice``)."""

    kind = "choice"

    def __post_init__(self) -> None:
        super().__post_init__()
        for option in self.options:
            if not isinstance(option, str) or not option:
                raise SpaceError(f"Invalid candidate name {option!r}: choice candidates are named by non-empty strings")


@dataclass(frozen=True)
class InputsDomain:
    """A subset of named inputs: exactly ``k`` of them, or any number when ``k`` is None.

    Values are lists in candidate order, so the same subset always has one spelling.
    """

    candidates: tuple[str, ...]
    k: int | None = 1
    kind = "inputs"

    def __post_init__(self) -> None:
        if not self.candidates:
            raise SpaceError("An inputs decision needs at least one candidate")
        if len(set(self.candidates)) != len(self.candidates):
            raise SpaceError(f"Duplicate input candidates in {list(self.candidates)}")
        for c in self.candidates:
            if not isinstance(c, str) or not c:
                raise SpaceError(f"Invalid input candidate {c!r}: candidates are named by non-empty strings")
        if self.k is not None and not (0 <= self.k <= len(self.candidates)):
            raise SpaceError(f"Invalid k={self.k} for {len(self.candidates)} candidates (needs 0 <= k <= {len(self.candidates)}, or None for any number)")

    @property
    def size(self) -> int:
        n = len(self.candidates)
        return 2 ** n if self.k is None else math.comb(n, self.k)

    def contains(self, value: Any) -> bool:
        if not isinstance(value, (list, tuple)) or any(v not in self.candidates for v in value):
            return False
        if len(set(value)) != len(value) or (self.k is not None and len(value) != self.k):
            return False
        return list(value) == self.canonical(value)

    def canonical(self, value: Any) -> list[str]:
        return [c for c in self.candidates if c in set(value)]

    def default(self) -> list[str]:
        return list(self.candidates[: (self.k if self.k is not None else 0)])

    def sample(self, rng: np.random.Generator) -> list[str]:
        n = len(self.candidates)
        if self.k is None:
            mask = rng.random(n) < 0.5
            return [c for c, m in zip(self.candidates, mask) if m]
        picked = set(rng.choice(n, size=self.k, replace=False).tolist()) if self.k else set()
        return [c for i, c in enumerate(self.candidates) if i in picked]

    def probe_values(self) -> list[list[str]]:
        if self.k is None:
            return [[], list(self.candidates)] + [[c] for c in self.candidates[:16]]
        return [list(self.candidates[: self.k]), list(self.candidates[-self.k:]) if self.k else []]

    def describe(self) -> str:
        count = "any number" if self.k is None else f"{self.k}"
        return f"{count} of {list(self.candidates)}"

    def to_json(self) -> dict[str, Any]:
        return {"type": "inputs", "candidates": list(self.candidates), "k": self.k}


Domain = Union[IntDomain, FloatDomain, CategoricalDomain, ChoiceDomain, InputsDomain]


def domain_from_json(data: dict[str, Any]) -> Domain:
    kind = data.get("type")
    if kind == "int":
        return IntDomain(data["low"], data["high"], data.get("step", 1), data.get("log", False))
    if kind == "float":
        return FloatDomain(data["low"], data["high"], data.get("log", False))
    if kind == "categorical":
        return CategoricalDomain(tuple(data["options"]))
    if kind == "choice":
        return ChoiceDomain(tuple(data["options"]))
    if kind == "inputs":
        return InputsDomain(tuple(data["candidates"]), data.get("k"))
    raise SpaceError(f"Unknown domain type {kind!r}; allowed: int, float, categorical, choice, inputs")
