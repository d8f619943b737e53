"""Progressive search (PNAS: Liu et al., "Progressive Neural Architecture Search", ECCV 2018):
grow architectures one block at a time, training only what a learned surrogate ranks best.

It grows one int decision that other decisions depend on: a PNAS cell's ``blocks``, an MLP's
``depth``. Step 1 trains every architecture at its smallest value (all one-block cells). Each
later step expands every architecture the step before trained by one more block (every value of
the decisions the larger size asks, the others kept), ranks the expansions with the surrogate
fitted on every result so far, and trains the best ``beam`` of them. It ends at the largest size,
or after ``patience`` steps that did not improve on the best result before them.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from nasforge.errors import ConfigError
from nasforge.predictors.observations import Observations
from nasforge.predictors.pair import SurrogatePair, correlations
from nasforge.space.domains import IntDomain
from nasforge.space.enumeration import NotEnumerable, all_options, completions, count
from nasforge.space.schema import Schema
from nasforge.strategies.base import rng_state, set_rng_state
from nasforge.types import ArchDict, Result, arch_key

MAX_INITIAL = 512
"""Step 1 trains every smallest architecture up to this many; a sample of this many beyond it."""
MAX_LISTED = 100_000
"""Expansions of one architecture are listed (and subsampled) up to this many; sampled beyond it."""


def _int_arg(name: str, value: Any, low: int, none: bool = False) -> None:
    if none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"Invalid {name}: {value!r} (must be an int >= {low}{' or null' if none else ''})")


def growable(schema: Schema) -> list[str]:
    """The int decisions that other decisions depend on, in schema order."""
    parents = {c.parent for d in schema for c in d.conditions}
    return [d.label for d in schema if d.label in parents and isinstance(d.domain, IntDomain)]


class ProgressiveSearch:
    """PNAS: grows an int decision others depend on (blocks, depth), a surrogate-ranked beam a step.

    Args:
        beam: architectures trained per step after the first (K; the chapter says 2, the paper
            uses 256).
        initial: architectures trained in step 1 (None: all of the smallest size, up to 512).
        max_steps: the most steps, so the largest size grown to (None: the decision's largest).
        patience: steps without improvement before it stops (None: never stops early).
        surrogate: ``lstm`` (the paper's, over block tokens) or ``mlp`` (an ensemble over the
            space's encoding); ``surrogate_args`` are passed to it.
        compare_surrogates: also fit the other surrogate and record how it would have ranked each
            step's architectures (it chooses nothing).
        max_candidates: the most expansions ranked per step (beyond it, each architecture is
            expanded into a random subset of an equal share).
        grow: the decision grown (None: the first int decision others depend on).
    """

    def __init__(self, beam: int = 8, initial: int | None = None, max_steps: int | None = None,
                 patience: int | None = 1, surrogate: str = "lstm", surrogate_args: Mapping[str, Any] | None = None,
                 compare_surrogates: bool = True, max_candidates: int = 50_000, grow: str | None = None):
        _int_arg("beam", beam, 1)
        _int_arg("initial", initial, 1, none=True)
        _int_arg("max_steps", max_steps, 1, none=True)
        _int_arg("patience", patience, 1, none=True)
        _int_arg("max_candidates", max_candidates, 1)
        if not isinstance(compare_surrogates, bool):
            raise ConfigError(f"Invalid compare_surrogates: {compare_surrogates!r} (must be true or false)")
        self.beam, self.initial, self.max_steps, self.patience = beam, initial, max_steps, patience
        self.max_candidates, self.grow_label = max_candidates, grow
        self.pair = SurrogatePair(surrogate, surrogate_args, compare_surrogates)

    # -- set-up -----------------------------------------------------------------------------------
    def setup(self, schema: Schema, rng: np.random.Generator) -> None:
        self.schema, self.rng = schema, rng
        self.grow = self._grow_decision(schema)
        self.sizes: list[int] = schema[self.grow].domain.values()[: self.max_steps]  # type: ignore[union-attr]
        self.options = all_options(schema)
        self.pair.bind(schema)
        self._reset()

    def _grow_decision(self, schema: Schema) -> str:
        labels = growable(schema)
        if self.grow_label is not None:
            if self.grow_label not in labels:
                raise ConfigError(f"strategy 'pnas' cannot grow {self.grow_label!r}: it must be an int decision that "
                                  f"others depend on; this space's are: {', '.join(map(repr, labels)) or 'none'}")
            return self.grow_label
        if not labels:
            single = [d.label for d in schema if isinstance(d.domain, IntDomain) and d.domain.size == 1]
            hint = f" ({single[0]!r} has a single value: nothing to grow)" if single else ""
            raise ConfigError(f"strategy 'pnas' grows an int decision that other decisions depend on (a cell's "
                              f"blocks, an MLP's depth); none of this space's decisions "
                              f"({', '.join(map(repr, schema.labels))}) is one{hint}; strategy 'predictor' "
                              f"searches any space")
        return labels[0]

    def _reset(self) -> None:
        self.obs = Observations()
        self.steps: list[dict[str, Any]] = []  # per step: size, candidates, keys, predicted, measured
        self.where: dict[str, tuple[int, int]] = {}  # key -> (step index, position in it)
        self.queue: list[ArchDict] = []
        self.outstanding = 0  # handed out in the current steps, not yet told
        self.done = False

    # -- protocol ---------------------------------------------------------------------------------
    def ready(self) -> bool:
        """A step hands its architectures out at once; the next one wants their results."""
        return self.done or bool(self.queue) or self.outstanding == 0

    def ask(self) -> ArchDict | None:
        if not self.queue and not self.done:
            self._advance()
        if not self.queue:
            return None
        self.outstanding += 1
        return dict(self.queue.pop(0))

    def tell(self, arch: ArchDict, result: Result) -> None:
        loss = self.obs.add(arch, result)
        if result.resumed:
            return  # a later rung of a trial told already: the surrogate sees it, the step is done with it
        self.outstanding = max(0, self.outstanding - 1)
        place = self.where.get(arch_key(arch))
        if place is not None:
            step = self.steps[place[0]]
            if not step["told"][place[1]]:  # the first result counts (a repeat's is the same architecture's)
                step["measured"][place[1]], step["told"][place[1]] = loss, True

    # -- steps ------------------------------------------------------------------------------------
    def _advance(self) -> None:
        if len(self.steps) >= len(self.sizes) or self._stalled():
            self.done = True
            return
        size = self.sizes[len(self.steps)]
        if not self.steps:
            picks, total = self._grown({self.grow: size}, self.initial or MAX_INITIAL, set())
            predicted: dict[str, list[float]] = {}
            picked, candidates = ("all" if total == len(picks) else "sampled"), total
        else:
            expansions = self._expansions(size)
            picks, predicted = self._rank(expansions)
            picked, candidates = "ranked", len(expansions)
        if not picks:
            self.done = True
            return
        index = len(self.steps)
        self.steps.append({"size": size, "candidates": candidates, "picked": picked, "keys": [arch_key(a) for a in picks],
                           "archs": picks, "predicted": predicted, "measured": [None] * len(picks),
                           "told": [False] * len(picks)})
        for position, arch in enumerate(picks):
            self.where[arch_key(arch)] = (index, position)
        self.queue = [dict(a) for a in picks]

    def _stalled(self) -> bool:
        """Whether the last ``patience`` steps each failed to improve on the best before them."""
        if self.patience is None or len(self.steps) <= self.patience:
            return False
        best = [min((m for m in s["measured"] if m is not None), default=math.inf) for s in self.steps]
        before = min(best[: -self.patience])
        return all(b >= before for b in best[-self.patience:])

    def _expansions(self, size: int) -> list[ArchDict]:
        parents = self.steps[-1]["archs"]
        share = max(1, self.max_candidates // len(parents))
        seen = set(self.where)
        out: list[ArchDict] = []
        for parent in parents:
            for child in self._grown({**parent, self.grow: size}, share, seen)[0]:
                seen.add(arch_key(child))
                out.append(child)
        return out

    def _grown(self, fixed: ArchDict, n: int, seen: set[str]) -> tuple[list[ArchDict], int | None]:
        """Up to ``n`` unseen completions of ``fixed`` and how many there are (None: too many to
        list, or a float decision among them): all of them where there are no more, a random
        subset of the listed ones where there are, random samples where they cannot be listed."""
        try:
            listed = count(self.schema, self.options, fixed, limit=MAX_LISTED) <= MAX_LISTED
        except NotEnumerable:
            listed = False
        if listed:
            fresh = [a for a in completions(self.schema, self.options, fixed) if arch_key(a) not in seen]
            if len(fresh) <= n:
                return fresh, len(fresh)
            return [fresh[i] for i in sorted(self.rng.choice(len(fresh), size=n, replace=False))], len(fresh)
        out: dict[str, ArchDict] = {}
        for _ in range(3 * n):
            arch = self.schema.repair(fixed, self.rng)
            key = arch_key(arch)
            if key not in seen:
                out.setdefault(key, arch)
                if len(out) == n:
                    break
        return list(out.values()), None

    def _rank(self, candidates: list[ArchDict]) -> tuple[list[ArchDict], dict[str, list[float]]]:
        """The best ``beam`` candidates by the surrogate (random ones before it can be fitted),
        and every surrogate's prediction for them."""
        archs, losses = self.obs.training_set()
        seed = int(self.rng.integers(2**31))
        if len(archs) < 3 or np.ptp(losses) == 0:
            order = self.rng.permutation(len(candidates))[: self.beam]
            return [candidates[i] for i in order], {}
        self.pair.fit(archs, losses, seed)
        scores = self.pair.predict(candidates)
        picks = [candidates[i] for i in np.argsort(scores, kind="stable")[: self.beam]]
        return picks, self.pair.predict_all(picks)

    # -- record and state -------------------------------------------------------------------------
    def search_log(self) -> list[dict[str, Any]]:
        """Per step: the size grown to, the candidates ranked, the architectures trained, the best
        loss among them, and each surrogate's Spearman correlation on them (once all are told)."""
        out = []
        for i, s in enumerate(self.steps):
            measured = [m for m in s["measured"] if m is not None]
            complete = all(s["told"])
            entry = {"step": i + 1, self.grow: s["size"], "picked": s.get("picked", "ranked" if i else "all"),
                     "candidates": s["candidates"], "trained": len(s["keys"]),
                     "best_loss": min(measured) if measured else None, "complete": complete}
            if complete and s["predicted"]:
                pairs = [(j, m) for j, m in enumerate(s["measured"]) if m is not None]
                entry["spearman"] = correlations(
                    {name: [p[j] for j, _ in pairs] for name, p in s["predicted"].items()}, [m for _, m in pairs])
            out.append(entry)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"observations": self.obs.state(), "steps": self.steps, "queue": self.queue,
                "outstanding": self.outstanding, "done": self.done, "rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reset()
        self.obs = Observations(state["observations"])
        self.steps = [dict(s) for s in state["steps"]]
        for index, step in enumerate(self.steps):
            for position, key in enumerate(step["keys"]):
                self.where[key] = (index, position)
        self.queue = [dict(a) for a in state["queue"]]
        self.outstanding, self.done = int(state["outstanding"]), bool(state["done"])
        set_rng_state(self.rng, state["rng"])
