"""The ``arch`` object a space function asks for its decisions, and its modes.

A space is ordinary PyTorch code::

    def my_space(arch, n_in, n_out):
        depth = arch.int("depth", 1, 4)
        ...

What the ``arch`` object is decides what the same code does (the protocol, and what holds in
every mode: :mod:`nasforge.space.protocol`). The modes here answer one question,
``_value(label, domain)``: which value should this decision take? A mode that builds modules
instead of picking values (supernet) also implements ``choice`` and ``inputs`` itself.

* :class:`FixedArch` — the value stored in a given architecture dict (retraining, export, trials).
* :class:`RecordingArch` — a default (or an override), while recording labels and domains.
* :class:`FillArch` — the given value where valid, else a sampled one (canonicalising proposals).

Rules every mode shares: labels are non-empty strings; asking the same label again with the same
domain returns the same value (a shared decision); with another domain it is an error.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
from torch import nn

from nasforge.errors import SpaceError
from nasforge.space.domains import (
    CategoricalDomain,
    ChoiceDomain,
    Domain,
    FloatDomain,
    InputsDomain,
    IntDomain,
)
from nasforge.types import ArchDict


class ArchBase:
    """Implements the space API on top of one method, ``_value``, that each mode provides."""

    mode = "base"

    def __init__(self) -> None:
        self.domains: dict[str, Domain] = {}
        self.values: ArchDict = {}  # label -> value, in the order asked

    # --- the space API -------------------------------------------------------------------
    def int(self, label: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return int(self._decide(label, IntDomain(low, high, step, log)))

    def float(self, label: str, low: float, high: float, *, log: bool = False) -> float:
        return float(self._decide(label, FloatDomain(low, high, log)))

    def categorical(self, label: str, options: Sequence[Any]) -> Any:
        if isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
            raise SpaceError(f"Decision {label!r}: options must be a list, got {type(options).__name__}")
        return self._decide(label, CategoricalDomain(tuple(options)))

    def choice(self, label: str, candidates: Mapping[str, Callable[[], nn.Module]]) -> nn.Module:
        name = self.decide(label, choice_domain(label, candidates))
        return build_candidate(label, name, candidates[name])

    def inputs(self, label: str, candidates: Sequence[str], k: int | None = 1) -> list[str]:
        return list(self.decide(label, inputs_domain(label, candidates, k)))

    # --- shared bookkeeping --------------------------------------------------------------
    def decide(self, label: str, domain: Domain) -> Any:
        """The value of decision ``label`` in ``domain``: the one given before if it was asked
        already (a shared decision), else this mode's answer (recorded)."""
        return self._decide(label, domain)

    def _decide(self, label: str, domain: Domain) -> Any:
        if not isinstance(label, str) or not label:
            raise SpaceError(f"Decision labels must be non-empty strings, got {label!r}")
        if label in self.domains:
            if self.domains[label] != domain:
                raise SpaceError(
                    f"Decision {label!r} asked twice with different domains: "
                    f"{self.domains[label].describe()} and {domain.describe()}"
                )
            return self.values[label]
        value = self._value(label, domain)
        self.domains[label] = domain
        self.values[label] = value
        return value

    def _value(self, label: str, domain: Domain) -> Any:
        raise NotImplementedError


def choice_domain(label: str, candidates: Mapping[str, Callable[[], nn.Module]]) -> ChoiceDomain:
    if not isinstance(candidates, Mapping):
        raise SpaceError(f"Decision {label!r}: candidates must be a dict of name -> factory, got {type(candidates).__name__}")
    return ChoiceDomain(tuple(candidates))


def inputs_domain(label: str, candidates: Sequence[str], k: int | None) -> InputsDomain:
    if isinstance(candidates, str) or not isinstance(candidates, Sequence):
        raise SpaceError(f"Decision {label!r}: candidates must be a list of names")
    return InputsDomain(tuple(candidates), k)


def build_candidate(label: str, name: str, factory: Callable[[], nn.Module]) -> nn.Module:
    if not callable(factory):
        raise SpaceError(f"Decision {label!r}: candidate {name!r} must be a callable that builds a module")
    module = factory()
    if not isinstance(module, nn.Module):
        raise SpaceError(f"Decision {label!r}: candidate {name!r} built a {type(module).__name__}, not a torch.nn.Module")
    return module


class FixedArch(ArchBase):
    """Answers every decision from a stored architecture; a missing or invalid value is an error."""

    mode = "fixed"

    def __init__(self, arch: ArchDict):
        super().__init__()
        if not isinstance(arch, Mapping):
            raise SpaceError(f"An architecture must be a dict of label -> value, got {type(arch).__name__}")
        self.arch = dict(arch)

    def _value(self, label: str, domain: Domain) -> Any:
        if label not in self.arch:
            raise SpaceError(f"The architecture has no value for decision {label!r} ({domain.describe()})")
        value = self.arch[label]
        if not domain.contains(value):
            raise SpaceError(f"Invalid value {value!r} for decision {label!r}: allowed {domain.describe()}")
        if isinstance(domain, IntDomain):
            return int(value)
        return value

    def check_all_used(self) -> None:
        """Values for decisions the space never asked mean the architecture is not of this space."""
        unused = [k for k in self.arch if k not in self.domains]
        if unused:
            raise SpaceError(
                f"The architecture has values for decisions the space never asked: {', '.join(map(repr, unused))}; "
                f"asked: {', '.join(self.domains) or 'none'}"
            )


class RecordingArch(ArchBase):
    """Returns each domain's default, or an override, and records what was asked."""

    mode = "recording"

    def __init__(self, overrides: ArchDict | None = None):
        super().__init__()
        self.overrides = dict(overrides or {})

    def _value(self, label: str, domain: Domain) -> Any:
        value = self.overrides.get(label)
        if value is not None and domain.contains(value):
            return value
        return domain.default()


class FillArch(ArchBase):
    """Keeps given values that are valid, samples the others: turns any proposal into a valid one."""

    mode = "fill"

    def __init__(self, values: ArchDict, rng: np.random.Generator):
        super().__init__()
        self.given = dict(values)
        self.rng = rng

    def _value(self, label: str, domain: Domain) -> Any:
        value = self.given.get(label)
        if value is not None and domain.contains(value):
            return int(value) if isinstance(domain, IntDomain) else value
        return domain.sample(self.rng)
