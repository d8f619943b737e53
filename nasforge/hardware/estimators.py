"""Latency three ways behind one interface: measured, looked up in a table, predicted.

A :class:`LatencyEstimator` answers ``latency_ms(arch, model)`` for a built network of a space:

* :class:`MeasuredLatency`: the network timed on this machine (:func:`measure_latency`'s floor),
  each architecture once (a :class:`~nasforge.hardware.cache.LatencyCache`);
* :class:`~nasforge.hardware.table.LatencyTable`: the sum of its ops' latencies, each timed alone
  once per machine (a supernet's table; it also gives the expected latency under path
  probabilities, differentiably);
* :class:`~nasforge.hardware.predictor.LatencyPredictor`: a regression model trained on
  architectures measured end to end, its held-out error stored with it.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

from torch import nn

from nasforge.hardware.cache import LatencyCache
from nasforge.types import ArchDict


@runtime_checkable
class LatencyEstimator(Protocol):
    name: str

    def latency_ms(self, arch: ArchDict, model: nn.Module) -> float: ...


class MeasuredLatency:
    name = "measured"

    def __init__(self, space: str, input_shape: Sequence[int], cache: LatencyCache | None = None, **options: Any):
        self.space, self.input_shape, self.options = space, tuple(input_shape), options
        self.cache = cache if cache is not None else LatencyCache(None)

    def latency_ms(self, arch: ArchDict, model: nn.Module) -> float:
        return self.cache.get_or_measure(self.space, arch, lambda: model, self.input_shape, **self.options).floor_ms
