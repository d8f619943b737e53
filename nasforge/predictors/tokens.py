"""An architecture as a sequence of tokens, for the LSTM surrogate.

One token per active decision, in schema order; an ``inputs`` decision gives one per chosen
candidate. A token is a (role, value) pair, where the role is the label with its numbers
replaced by ``#``: ``block3/op1 = sep_conv_3x3`` is the token ``(block#/op1, sep_conv_3x3)``,
the same as in block 0. So what the surrogate learns of a block on cells of b blocks carries
over to the b+1-th block, the reason PNAS reads cells with an RNN. A number too finely
grained for a token of its own (an int of more than ``MAX_INT_TOKENS`` values, a float) is the
token ``(role, #)`` plus its value scaled to [0, 1]. An int decision that other decisions
depend on (the cell's number of blocks, an MLP's depth) gives no token: the tokens present
already say it, and a value never trained on would be a token never seen.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import torch

from nasforge.space.domains import CategoricalDomain, InputsDomain, IntDomain
from nasforge.space.schema import Decision, Schema
from nasforge.types import ArchDict

MAX_INT_TOKENS = 16
PAD, UNKNOWN = 0, 1


def role(label: str) -> str:
    return re.sub(r"\d+", "#", label)


class Tokens:
    def __init__(self, schema: Schema):
        self.schema = schema
        parents = {c.parent for d in schema for c in d.conditions}
        self.decisions = [d for d in schema if not (d.label in parents and isinstance(d.domain, IntDomain))]
        self.vocab: dict[tuple[str, str], int] = {}
        for d in self.decisions:
            for value in _token_values(d):
                self.vocab.setdefault((role(d.label), value), len(self.vocab) + 2)
        self.size = len(self.vocab) + 2
        self.kept = {d.label for d in self.decisions}
        self.roles = {d.label: role(d.label) for d in self.decisions}

    def encode(self, arch: ArchDict) -> tuple[list[int], list[float]]:
        ids: list[int] = []
        numbers: list[float] = []
        for d in self.schema.active(arch):
            if d.label not in self.kept or d.label not in arch:
                continue
            r = self.roles[d.label]
            for value, number in _tokens_of(d, arch[d.label]):
                ids.append(self.vocab.get((r, value), UNKNOWN))
                numbers.append(number)
        return ids or [UNKNOWN], numbers or [0.0]

    def batch(self, archs: Sequence[ArchDict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded ids (n x T), numbers (n x T) and lengths (n)."""
        encoded = [self.encode(a) for a in archs]
        width = max(len(ids) for ids, _ in encoded)
        ids = torch.zeros(len(archs), width, dtype=torch.long)
        numbers = torch.zeros(len(archs), width)
        for row, (i, n) in enumerate(encoded):
            ids[row, : len(i)] = torch.tensor(i)
            numbers[row, : len(n)] = torch.tensor(n)
        lengths = torch.tensor([len(i) for i, _ in encoded])
        return ids, numbers, lengths


def _fine(d: Decision) -> bool:
    """A number with too many values for a token each."""
    if isinstance(d.domain, IntDomain):
        return d.domain.size > MAX_INT_TOKENS
    return not isinstance(d.domain, (CategoricalDomain, InputsDomain))


def _token_values(d: Decision) -> list[str]:
    if _fine(d):
        return ["#"]
    if isinstance(d.domain, InputsDomain):
        return [*map(str, d.domain.candidates), "-"]
    return [repr(v) for v in d.domain.values()]  # type: ignore[union-attr]


def _tokens_of(d: Decision, value: Any) -> list[tuple[str, float]]:
    if _fine(d):
        return [("#", float(d.domain.to_unit(value)))]  # type: ignore[union-attr]
    if isinstance(d.domain, InputsDomain):
        return [(str(v), 0.0) for v in value] or [("-", 0.0)]
    return [(repr(value), 0.0)]
