"""What a surrogate learns from: the (architecture, loss, budget) results told so far."""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from nasforge.types import ArchDict, Result, arch_key


class Observations:
    """Every result told, in order. The training set is the results at one budget: the one with
    the most successful results (the larger on a tie), which under a multi-fidelity scheduler is
    its first rung, the only one that every trained architecture reaches. A failure counts as the
    worst loss seen at its budget: the surrogate learns to avoid what fails."""

    def __init__(self, rows: list[dict[str, Any]] | None = None):
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows or []]

    def add(self, arch: ArchDict, result: Result) -> float | None:
        loss = float(result.loss) if result.ok and result.loss is not None and math.isfinite(result.loss) else None
        self.rows.append({"arch": dict(arch), "loss": loss, "budget": float(result.budget)})
        return loss

    def budget(self) -> float | None:
        counts = Counter(r["budget"] for r in self.rows if r["loss"] is not None)
        return max(counts, key=lambda b: (counts[b], b)) if counts else None

    def training_set(self) -> tuple[list[ArchDict], np.ndarray]:
        budget = self.budget()
        if budget is None:
            return [], np.zeros(0)
        latest: dict[str, dict[str, Any]] = {}
        for r in self.rows:
            if r["budget"] == budget:
                latest[arch_key(r["arch"])] = r  # an architecture evaluated again: its latest result
        worst = max(r["loss"] for r in latest.values() if r["loss"] is not None)
        archs = [r["arch"] for r in latest.values()]
        return archs, np.array([worst if r["loss"] is None else r["loss"] for r in latest.values()])

    def best(self) -> dict[str, Any] | None:
        scored = [r for r in self.rows if r["loss"] is not None]
        return min(scored, key=lambda r: r["loss"]) if scored else None

    def state(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.rows]
