"""Random search: every decision sampled uniformly (log-uniformly where the domain is log)."""
from __future__ import annotations

from typing import Any

import numpy as np

from nasforge.errors import ConfigError
from nasforge.space.schema import Schema
from nasforge.strategies.base import rng_state, set_rng_state
from nasforge.types import ArchDict, Result, arch_key

_DRAWS = 100  # repeated draws in a row before a small space's remainder is listed
ENUMERABLE = 10_000  # a finite space of at most this many architectures can be drawn to its end


class RandomSearch:
    """Independent uniform samples of the space, without replacement; the baseline every other
    strategy must beat.

    A draw that repeats an earlier one is drawn again. In a finite space of at most
    ``ENUMERABLE`` architectures, once ``_DRAWS`` draws in a row repeat, the architectures not yet
    drawn are listed and handed out in a random order, and ``ask`` returns None when none is left.
    ``replace=True`` draws with replacement (for noisy objectives, with the study's ``repeats``).
    """

    def __init__(self, replace: bool = False):
        if not isinstance(replace, bool):
            raise ConfigError(f"Invalid replace: {replace!r} (must be true or false)")
        self.replace = replace

    def setup(self, schema: Schema, rng: np.random.Generator) -> None:
        self.schema = schema
        self.rng = rng
        self.start = rng_state(rng)
        self.asked = 0
        self.seen: set[str] = set()
        self.rest: list[ArchDict] | None = None

    def ask(self) -> ArchDict | None:
        self.asked += 1
        if self.replace:
            return self.schema.sample(self.rng)
        if self.rest is None:
            for _ in range(_DRAWS):
                arch = self.schema.sample(self.rng)
                key = arch_key(arch)
                if key not in self.seen:
                    self.seen.add(key)
                    return arch
            if not self.schema.size() <= ENUMERABLE:
                return arch  # a large space: the study does not evaluate a repeat twice
            self.rest = self._unseen()
        return self.rest.pop() if self.rest else None

    def _unseen(self) -> list[ArchDict]:
        from nasforge.strategies.grid import GridSearch
        grid = GridSearch()
        grid.setup(self.schema, self.rng)
        rest = [a for a in grid.points if arch_key(a) not in self.seen]
        self.rng.shuffle(rest)  # type: ignore[arg-type]
        return rest

    def tell(self, arch: ArchDict, result: Result) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        """The draws are replayed on loading (they are a few microseconds each), so the state
        stays this small however many architectures were drawn."""
        return {"start": self.start, "asked": self.asked}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "start" not in state:  # a state written before draws were replayed
            set_rng_state(self.rng, state["rng"])
            return
        set_rng_state(self.rng, state["start"])
        self.setup(self.schema, self.rng)
        for _ in range(int(state["asked"])):
            self.ask()
