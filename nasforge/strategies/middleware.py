"""Strategy wrappers, by composition: each wraps any strategy and keeps the protocol."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from nasforge.errors import SpaceError
from nasforge.space.schema import Schema
from nasforge.strategies.base import Strategy, is_ready, rng_state, set_rng_state
from nasforge.types import ArchDict, Result, arch_key

Canonicalise = Callable[[ArchDict, np.random.Generator], ArchDict]


class Canonical:
    """Passes every proposal through the real space, so the study only ever sees architectures the
    space builds exactly: missing decisions are sampled, values of inactive ones dropped. A proposal
    the space rejects (it raises) is told back to the strategy as failed and another is asked."""

    def __init__(self, inner: Strategy, canonicalise: Canonicalise, max_rejects: int = 100):
        self.inner = inner
        self.canonicalise = canonicalise
        self.max_rejects = max_rejects
        self.rejected = 0
        self.pending: set[str] = set()  # asked, not yet told
        self.min_pending = 1  # the executor's real parallelism: below it, always ready

    def setup(self, schema: Schema, rng: np.random.Generator) -> None:
        inner_rng, self.rng = rng.spawn(2)
        self.inner.setup(schema, inner_rng)

    def ask(self) -> ArchDict | None:
        last_error: Exception | None = None
        for _ in range(self.max_rejects):
            proposal = self.inner.ask()
            if proposal is None:
                return None
            try:
                arch = self.canonicalise(proposal, self.rng)
                self.pending.add(arch_key(arch))
                return arch
            except Exception as exc:  # noqa: BLE001 - the user's space rejected this architecture
                last_error = exc
                self.rejected += 1
                self.inner.tell(proposal, Result({}, None, 0.0, failed=True))
        raise SpaceError(f"The space rejected {self.max_rejects} proposals in a row; last error: "
                         f"{type(last_error).__name__}: {last_error}")

    def ready(self) -> bool:
        return len(self.pending) < self.min_pending or is_ready(self.inner)

    def tell(self, arch: ArchDict, result: Result) -> None:
        self.pending.discard(arch_key(arch))
        self.inner.tell(arch, result)

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "rng": rng_state(self.rng), "rejected": self.rejected,
                "pending": sorted(self.pending)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        set_rng_state(self.rng, state["rng"])
        self.rejected = int(state.get("rejected", 0))
        self.pending = set(state.get("pending", []))
