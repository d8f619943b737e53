"""The surrogate protocol, and the rank correlation its quality is judged by."""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from nasforge.space.schema import Schema
from nasforge.types import ArchDict


class Surrogate(Protocol):
    """Learns the loss of architectures of one schema; lower predictions rank first.

    ``fit`` starts afresh each time (from ``seed``, so a refit on the same pairs predicts the
    same); ``predict`` returns one predicted loss per architecture, each member's prediction
    along the first axis (``members x n``: an ensemble's spread is its uncertainty).
    """

    def bind(self, schema: Schema) -> None: ...
    def fit(self, archs: Sequence[ArchDict], losses: np.ndarray, seed: int) -> None: ...
    def predict_members(self, archs: Sequence[ArchDict]) -> np.ndarray: ...


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    out = np.empty(len(x))
    for s, e in zip(starts, ends):
        out[order[s:e]] = (s + e + 1) / 2
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation of two equal-length series; None below 3 points or when
    one series is constant (the correlation is undefined)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def standardise(losses: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Losses as z-scores (a surrogate learns ranks, not units), with the mean and scale."""
    mean, scale = float(np.mean(losses)), float(np.std(losses))
    scale = scale if scale > 0 else 1.0
    return (losses - mean) / scale, mean, scale
