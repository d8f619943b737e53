"""Regularised (aging) evolution: tournament selection, one mutation per child, the oldest dies.

Real, Aggarwal, Huang and Le (2019), "Regularized Evolution for Image Classifier Architecture
Search". Removing the oldest member instead of the worst keeps the population young, so an
architecture survives only while its descendants keep doing well, not by one lucky evaluation.
"""
from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from nasforge.errors import ConfigError
from nasforge.space.mutation import mutate
from nasforge.space.schema import Schema
from nasforge.strategies.base import rng_state, set_rng_state
from nasforge.types import ArchDict, Result


class RegularizedEvolution:
    """Aging evolution over the space's decisions.

    Asks are random samples until ``population_size`` results have been told. After that each ask
    draws ``sample_size`` members of the population uniformly (a tournament), takes the one with
    the lowest loss as the parent and returns a mutant of it (see :func:`mutate`). Every told
    result joins the population as its youngest member and, once the population is full, the
    oldest member is removed. A failed child still takes its place in the population (and ages
    out) but is never chosen as a parent. A later rung of an evaluation already told
    (``result.resumed``, a multi-fidelity scheduler continuing a trial) updates that member
    instead of adding one; a new evaluation of an architecture equal to a member joins as the
    youngest all the same, as every child does in the paper.

    Args:
        population_size: members kept alive (P in the paper, >= 2).
        sample_size: tournament size (S in the paper, 1 <= S <= P); larger is greedier.
    """

    def __init__(self, population_size: int = 20, sample_size: int = 5):
        if isinstance(population_size, bool) or not isinstance(population_size, int) or population_size < 2:
            raise ConfigError(f"Invalid population_size: {population_size!r} (must be an int >= 2)")
        if isinstance(sample_size, bool) or not isinstance(sample_size, int) or not 1 <= sample_size <= population_size:
            raise ConfigError(f"Invalid sample_size: {sample_size!r} (must be an int between 1 and "
                              f"population_size={population_size})")
        self.population_size = population_size
        self.sample_size = sample_size
        self.population: deque[dict[str, Any]] = deque()
        self.pending = 0

    def setup(self, schema: Schema, rng: np.random.Generator) -> None:
        self.schema = schema
        self.rng = rng
        self.population = deque()
        self.pending = 0

    def ready(self) -> bool:
        """The random initial population may be asked all at once; a child wants its parents'
        results first."""
        return len(self.population) + self.pending < self.population_size or self.pending == 0

    def ask(self) -> ArchDict:
        self.pending += 1
        if len(self.population) < self.population_size:
            return self.schema.sample(self.rng)
        parents = [m for m in self.population if m["loss"] is not None]
        if not parents:
            return self.schema.sample(self.rng)
        picked = self.rng.choice(len(parents), size=min(self.sample_size, len(parents)), replace=False)
        parent = min((parents[int(i)] for i in picked), key=lambda m: m["loss"])
        return mutate(self.schema, parent["arch"], self.rng)

    def tell(self, arch: ArchDict, result: Result) -> None:
        loss = result.loss if result.ok else None
        if result.resumed:
            for member in reversed(self.population):  # the youngest copy is the one being continued
                if member["arch"] == arch:
                    member.update(loss=loss, budget=float(result.budget))
                    return
            return  # it has aged out: a later rung changes nothing
        self.pending = max(0, self.pending - 1)
        self.population.append({"arch": dict(arch), "loss": loss, "budget": float(result.budget)})
        while len(self.population) > self.population_size:
            self.population.popleft()

    def state_dict(self) -> dict[str, Any]:
        return {"population": [dict(m) for m in self.population], "rng": rng_state(self.rng), "pending": self.pending}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.population = deque(dict(m) for m in state["population"])
        self.pending = int(state.get("pending", 0))
        set_rng_state(self.rng, state["rng"])
