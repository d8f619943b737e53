"""Record a space's schema by running it in recording mode, including conditional decisions.

Define-by-run spaces only reveal the decisions of the branch they take, so recording explores:
every decision found is probed over a spread of its values, with the rest of the run that found
it held fixed. A decision that appears for some values of an earlier decision and not for others
is conditional on it. Random runs then check the derived conditions against the real space.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from nasforge.errors import SpaceError
from nasforge.space.arch import RecordingArch
from nasforge.space.domains import CategoricalDomain, Domain, IntDomain
from nasforge.space.schema import Condition, Decision, Schema
from nasforge.types import ArchDict

RunFn = Callable[[RecordingArch], Any]


@dataclass
class _Run:
    order: list[str]
    values: ArchDict
    domains: dict[str, Domain]
    failed: bool = False


class _Explorer:
    def __init__(self, run_space: RunFn, max_runs: int):
        self.run_space = run_space
        self.max_runs = max_runs
        self.n_runs = 0
        self.domains: dict[str, Domain] = {}
        self.found_in: dict[str, _Run] = {}
        self.order: list[str] = []  # discovery order, each new label placed after its predecessor
        self.probes: dict[str, list[tuple[Any, set[str], list[str]]]] = {}
        self.queue: list[str] = []

    def run(self, overrides: ArchDict) -> _Run | None:
        if self.n_runs >= self.max_runs:
            return None
        self.n_runs += 1
        arch = RecordingArch(overrides)
        failed = False
        try:
            self.run_space(arch)
        except SpaceError:
            raise
        except Exception:  # noqa: BLE001 - the space may reject some combinations of values
            if not arch.values:
                raise
            failed = True
        run = _Run(list(arch.values), dict(arch.values), dict(arch.domains), failed)
        self._learn(run)
        return run

    def _learn(self, run: _Run) -> None:
        for pos, label in enumerate(run.order):
            domain = run.domains[label]
            if label in self.domains and self.domains[label] != domain:
                raise SpaceError(
                    f"Decision {label!r} is asked with different domains in different branches: "
                    f"{self.domains[label].describe()} and {domain.describe()}; give each branch its own label"
                )
            if label not in self.domains:
                self.domains[label] = domain
                self.found_in[label] = run
                self.queue.append(label)
                at = self.order.index(run.order[pos - 1]) + 1 if pos else 0
                self.order.insert(at, label)

    def explore(self) -> None:
        while self.queue:
            label = self.queue.pop(0)
            domain = self.domains[label]
            if not isinstance(domain, (IntDomain, CategoricalDomain)):
                continue  # only discrete decisions can condition others
            base = self.found_in[label]
            results = []
            for value in domain.probe_values():
                run = self.run({**base.values, label: value})
                if run is None:
                    return
                if not run.failed:
                    results.append((value, set(run.order), run.order))
            self.probes[label] = results


def _conditions(ex: _Explorer, label: str) -> tuple[Condition, ...]:
    out = []
    for parent, probes in ex.probes.items():
        if parent == label:
            continue
        present = [(v, order) for v, seen, order in probes if label in seen]
        if not present or len(present) == len(probes):
            continue
        if any(order.index(label) < order.index(parent) for _, order in present if parent in order):
            continue
        domain = ex.domains[parent]
        values = [v for v, _ in present]
        if isinstance(domain, IntDomain) and domain.size > len(probes):
            out.append(Condition(parent, low=min(values), high=max(values)))  # probed sparsely: an interval
        else:
            out.append(Condition(parent, values=tuple(values)))
    return tuple(out)


def _ordered(decisions: dict[str, Decision], order: list[str]) -> list[Decision]:
    """Discovery order, adjusted so each decision follows its parents."""
    out: list[Decision] = []
    placed: set[str] = set()

    def place(label: str, stack: tuple[str, ...] = ()) -> None:
        if label in placed or label in stack:
            return
        for c in decisions[label].conditions:
            place(c.parent, stack + (label,))
        placed.add(label)
        out.append(decisions[label])

    for label in order:
        place(label)
    return out


def record_schema(run_space: RunFn, *, max_runs: int = 5000, check_runs: int = 30, seed: int = 0) -> Schema:
    """Explore a space and return its schema. ``run_space(arch)`` runs the space function."""
    ex = _Explorer(run_space, max_runs)
    first = ex.run({})
    if first is None or not first.order:
        raise SpaceError("The space asked for no decisions: a search space needs at least one arch.int/float/categorical/choice/inputs call")
    rng = np.random.default_rng(seed)
    exact = True
    for _ in range(3):
        ex.explore()
        decisions = {label: Decision(label, ex.domains[label], _conditions(ex, label)) for label in ex.domains}
        schema = Schema(tuple(_ordered(decisions, ex.order)))
        n_known = len(ex.domains)
        exact = True
        for _ in range(check_runs):
            proposal = schema.sample(rng)
            run = ex.run(proposal)
            if run is None:
                break
            if not run.failed and set(run.order) != set(proposal):
                exact = False
        if len(ex.domains) == n_known:
            break
    return Schema(schema.decisions, exact=exact)
