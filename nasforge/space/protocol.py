"""The ``arch`` protocol: the five decisions a space function may ask.

A space is ordinary PyTorch code that receives an ``arch`` object and asks it for decisions as it
builds the model. Which object it receives decides what the same code produces (the modes:
``fixed``, ``recording``, ``fill`` in :mod:`nasforge.space.arch`; ``controller`` in
:mod:`nasforge.space.controller`; ``supernet`` in :mod:`nasforge.space.supernet`).

What holds in every mode:

* labels are non-empty strings; asking a label again with the same domain is the same decision
  (its value is shared: every cell of a network may ask ``"normal/node2/op"``);
* ``int``, ``float`` and ``categorical`` return a plain value of their domain;
* ``choice(label, candidates)`` returns a module built from ``candidates`` (name -> factory of a
  module): the chosen candidate's module in the modes that pick one value, a mixed module that
  holds every candidate in supernet mode. Each call builds new modules: a repeated label shares
  the decision, never the weights;
* ``inputs(label, candidates, k)`` returns names among ``candidates`` (exactly ``k`` of them, or
  any subset with ``k=None``) that the space wires and sizes the layer by. In supernet mode it
  returns every candidate as a :class:`~nasforge.space.supernet.MixedInputs`: combine the
  tensors with :func:`~nasforge.space.supernet.sum_inputs` or
  :func:`~nasforge.space.supernet.concat_inputs`, which do the same as a sum or concatenation of
  the chosen ones in the other modes;
* a mode that cannot search a decision raises :class:`~nasforge.errors.UnsupportedDecision`,
  naming the decision, the mode and what to do, when the space asks it.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from torch import nn


@runtime_checkable
class Arch(Protocol):
    mode: str

    def int(self, label: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def float(self, label: str, low: float, high: float, *, log: bool = False) -> float: ...

    def categorical(self, label: str, options: Sequence[Any]) -> Any: ...

    def choice(self, label: str, candidates: Mapping[str, Callable[[], nn.Module]]) -> nn.Module: ...

    def inputs(self, label: str, candidates: Sequence[str], k: int | None = 1) -> list[str]: ...


SpaceWalk = Callable[[Any], Any]
"""Runs the space with the given ``arch`` mode object answering its decisions (see :meth:`Space.walk`)."""
