"""A guiding surrogate and, beside it, the other kind, fitted on the same pairs only to be
compared: both predict the architectures the guide picks, and the study records how well each
ranked them once they are trained."""
from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

import numpy as np

from nasforge.errors import ConfigError
from nasforge.predictors import SURROGATES
from nasforge.predictors.base import Surrogate, spearman
from nasforge.space.schema import Schema
from nasforge.types import ArchDict


def make_surrogate(name: Any, args: Mapping[str, Any] | None) -> Surrogate:
    cls = SURROGATES.get(name)
    if args is not None and not isinstance(args, Mapping):
        raise ConfigError(f"Invalid surrogate_args: {args!r} (must be a mapping of argument -> value)")
    allowed = [p for p in inspect.signature(cls).parameters]
    unknown = [k for k in (args or {}) if k not in allowed]
    if unknown:
        raise ConfigError(f"surrogate_args: the {name!r} surrogate has no argument(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(allowed)}")
    return cls(**dict(args or {}))


class SurrogatePair:
    def __init__(self, guide: str, args: Mapping[str, Any] | None, compare: bool):
        self.guide_name = guide
        self.guide = make_surrogate(guide, args)
        self.others = {n: make_surrogate(n, None) for n in SURROGATES.names() if n != guide} if compare else {}
        self.fitted = False

    @property
    def names(self) -> list[str]:
        return [self.guide_name, *self.others]

    def bind(self, schema: Schema) -> None:
        for surrogate in (self.guide, *self.others.values()):
            surrogate.bind(schema)

    def fit(self, archs: Sequence[ArchDict], losses: np.ndarray, seed: int) -> None:
        for surrogate in (self.guide, *self.others.values()):
            surrogate.fit(archs, losses, seed)
        self.fitted = True

    def predict(self, archs: Sequence[ArchDict]) -> np.ndarray:
        """The guide's ensemble mean: the predicted loss."""
        return self.guide.predict_members(archs).mean(axis=0)

    def predict_all(self, archs: Sequence[ArchDict]) -> dict[str, list[float]]:
        out = {self.guide_name: self.predict(archs).tolist()}
        out.update({n: s.predict_members(archs).mean(axis=0).tolist() for n, s in self.others.items()})
        return out


def correlations(predicted: Mapping[str, Sequence[float]], measured: Sequence[float]) -> dict[str, float | None]:
    """Each surrogate's Spearman correlation between its predicted and the measured losses."""
    return {name: spearman(p, measured) for name, p in predicted.items()}
