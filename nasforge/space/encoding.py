"""Architecture <-> fixed-length numeric vector, for surrogates (GP, predictors) and distances.

Per decision, in schema order:

* int / float: the value scaled to [0, 1] (log scale if the domain is log); a conditional one also
  gets an "active" column, and is padded with 0 when absent (as the chapter pads MLP widths);
* categorical / choice: one-hot, all zeros when absent;
* inputs: multi-hot over the candidates (plus an "active" column when conditional).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from nasforge.space.domains import (
    CategoricalDomain,
    FloatDomain,
    InputsDomain,
    IntDomain,
)
from nasforge.space.schema import Decision, Schema
from nasforge.types import ArchDict


class Encoder:
    def __init__(self, schema: Schema):
        self.schema = schema
        self._slices: list[tuple[Decision, int, int, bool]] = []
        start = 0
        for d in schema:
            flag = d.conditional and not isinstance(d.domain, CategoricalDomain)
            width = int(flag) + (1 if isinstance(d.domain, (IntDomain, FloatDomain)) else len(_items(d)))
            self._slices.append((d, start, width, flag))
            start += width
        self.dim = start

    def column_names(self) -> list[str]:
        names: list[str] = []
        for d, _, _, flag in self._slices:
            if flag:
                names.append(f"{d.label}?")
            if isinstance(d.domain, (IntDomain, FloatDomain)):
                names.append(d.label)
            else:
                names.extend(f"{d.label}={item}" for item in _items(d))
        return names

    def encode(self, arch: ArchDict) -> np.ndarray:
        vec = np.zeros(self.dim, dtype=np.float64)
        for d, start, _, flag in self._slices:
            if d.label not in arch:
                continue
            value = arch[d.label]
            i = start
            if flag:
                vec[i] = 1.0
                i += 1
            if isinstance(d.domain, (IntDomain, FloatDomain)):
                vec[i] = d.domain.to_unit(value)
            elif isinstance(d.domain, CategoricalDomain):
                vec[i + d.domain.index(value)] = 1.0
            else:
                for name in value:
                    vec[i + d.domain.candidates.index(name)] = 1.0
        return vec

    def encode_many(self, archs: Sequence[ArchDict]) -> np.ndarray:
        out = np.zeros((len(archs), self.dim), dtype=np.float64)
        for row, arch in enumerate(archs):
            out[row] = self.encode(arch)
        return out

    def decode(self, vec: np.ndarray) -> ArchDict:
        """The architecture nearest to ``vec``: rounded numbers, arg-max categories, top-k inputs."""
        vec = np.asarray(vec, dtype=np.float64)
        if vec.shape != (self.dim,):
            raise ValueError(f"Expected a vector of length {self.dim}, got shape {vec.shape}")
        arch: ArchDict = {}
        for d, start, width, flag in self._slices:
            if not self.schema.is_active(d, arch):
                continue
            cols = vec[start + int(flag): start + width]
            arch[d.label] = _decode_one(d, cols)
        return arch


def _items(d: Decision) -> list[Any]:
    if isinstance(d.domain, CategoricalDomain):
        return list(d.domain.options)
    if isinstance(d.domain, InputsDomain):
        return list(d.domain.candidates)
    return []


def _decode_one(d: Decision, cols: np.ndarray) -> Any:
    domain = d.domain
    if isinstance(domain, (IntDomain, FloatDomain)):
        return domain.from_unit(float(cols[0]))
    if isinstance(domain, CategoricalDomain):
        return domain.options[int(np.argmax(cols))]
    assert isinstance(domain, InputsDomain)
    if domain.k is None:
        chosen = {i for i, x in enumerate(cols) if x > 0.5}
    else:
        chosen = set(np.argsort(-cols, kind="stable")[: domain.k].tolist())
    return [c for i, c in enumerate(domain.candidates) if i in chosen]
