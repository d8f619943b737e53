"""Strategy wrappers, by composition: each wraps any strategy and keeps the protocol."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from nasforge.space.schema import Schema
from nasforge.strategies.base import SpaceWalk, Strategy, is_ready, rng_state, set_rng_state
from nasforge.types import ArchDict, Result, arch_key

Fill = Callable[[ArchDict, np.random.Generator], "tuple[ArchDict, Exception | None]"]


class Canonical:
    """Passes every proposal through the real space, so the study only ever sees architectures the
    space builds exactly: missing decisions are sampled, values of inactive ones dropped. A proposal
    the space rejects (it raises part-way) is handed out as far as the space got: the study
    records it as a failed trial with the space's error, and the strategy is told so.

    Each architecture is evaluated once (unless ``repeats``, for noisy objectives): a proposal
    equal to one already evaluated is told that evaluation's latest result, one equal to an
    evaluation still running is told its result when it arrives, and another is asked. After
    ``max_repeats`` repeats in a row the strategy has nothing new to propose: ``ask`` returns None.
    """

    def __init__(self, inner: Strategy, fill: Fill, walk: SpaceWalk | None = None, repeats: bool = False,
                 max_repeats: int = 200):
        self.inner = inner
        self.fill = fill
        self.walk = walk
        self.repeats, self.max_repeats = repeats, max_repeats
        self.rejected = 0
        self.reused = 0  # proposals answered from an earlier evaluation
        self.pending: set[str] = set()  # asked, not yet told
        self.seen: dict[str, Result | None] = {}  # every architecture handed out: its latest result
        self.waiting: dict[str, int] = {}  # repeats of a running evaluation, told when it ends
        self.min_pending = 1  # the executor's real parallelism: below it, always ready
        self.exhausted = False  # the strategy had nothing new to propose (a finished grid, only repeats)
        self.finished = False  # the strategy said so itself (ask returned None): a grid's end, PNAS's last step

    def setup(self, schema: Schema, rng: np.random.Generator) -> None:
        inner_rng, self.rng = rng.spawn(2)
        use_space = getattr(self.inner, "use_space", None)
        if self.walk is not None and callable(use_space):
            use_space(self.walk)
        self.inner.setup(schema, inner_rng)

    def remember(self, evaluated: Iterable[tuple[ArchDict, Result | None]]) -> None:
        """The architectures the study holds already (on resume), each with its latest result
        (None: not finished), so that repeats of them are not evaluated again."""
        for arch, result in evaluated:
            self.seen[arch_key(arch)] = result

    def ask(self) -> ArchDict | None:
        for _ in range(self.max_repeats):
            proposal = self.inner.ask()
            if proposal is None:
                self.exhausted = self.finished = True
                return None
            arch, error = self.fill(proposal, self.rng)
            self.rejected += error is not None
            key = arch_key(arch)
            if self.repeats or key not in self.seen:
                self.seen[key] = None
                self.pending.add(key)
                return arch
            self._reuse(key, arch)
        self.exhausted = True  # only repeats: the strategy has nothing new to propose
        return None

    def _reuse(self, key: str, arch: ArchDict) -> None:
        self.reused += 1
        known = self.seen[key]
        if known is None:
            self.waiting[key] = self.waiting.get(key, 0) + 1
        else:
            self.inner.tell(arch, Result(known.metrics, known.loss, known.budget, known.failed))

    def ready(self) -> bool:
        return len(self.pending) < self.min_pending or is_ready(self.inner)

    def tell(self, arch: ArchDict, result: Result) -> None:
        key = arch_key(arch)
        self.pending.discard(key)
        self.seen[key] = result
        self.inner.tell(arch, result)
        for _ in range(self.waiting.pop(key, 0)):
            self.inner.tell(arch, Result(result.metrics, result.loss, result.budget, result.failed))

    def state_dict(self) -> dict[str, Any]:
        """``seen`` is not saved: the study's store holds every architecture (see ``remember``)."""
        return {"inner": self.inner.state_dict(), "rng": rng_state(self.rng), "rejected": self.rejected,
                "reused": self.reused, "pending": sorted(self.pending), "waiting": dict(sorted(self.waiting.items()))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        set_rng_state(self.rng, state["rng"])
        self.rejected = int(state.get("rejected", 0))
        self.reused = int(state.get("reused", 0))
        self.pending = set(state.get("pending", []))
        self.waiting = {str(k): int(v) for k, v in state.get("waiting", {}).items()}
