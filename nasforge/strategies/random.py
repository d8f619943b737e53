"""Random search: every decision sampled uniformly (log-uniformly where the domain is log)."""
from __future__ import annotations

from typing import Any

import numpy as np

from nasforge.space.schema import Schema
from nasforge.strategies.base import rng_state, set_rng_state
from nasforge.types import ArchDict, Result


class RandomSearch:
    """Independent uniform samples of the space; the baseline every other strategy must beat."""

    def setup(self, schema: Schema, rng: np.random.Generator) -> None:
        self.schema = schema
        self.rng = rng

    def ask(self) -> ArchDict:
        return self.schema.sample(self.rng)

    def tell(self, arch: ArchDict, result: Result) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
