"""Measuring a model on the machine it will run on: latency, parameters, FLOPs, and a cache.

* :func:`measure_latency` — forward latency (median of round medians, p10/p90, spread) on the
  CPU or a CUDA device, with a fixed thread count; see :mod:`nasforge.hardware.latency`.
* :func:`count_params`, :func:`count_flops` — parameter elements; forward FLOPs for one sample by
  ``torch.utils.flop_counter.FlopCounterMode`` (``None`` when it cannot count the model).
* :class:`LatencyCache` — a JSON file of results by (space, architecture, input shape, batch
  size, threads, device, machine), so each architecture is measured once per study.
* :func:`hardware_metrics` — all of it as a flat metrics dict, ready to merge into a trial's.
* Latency three ways, one interface (:class:`LatencyEstimator`, ``latency_ms(arch, model)``):
  :class:`MeasuredLatency`, :class:`~nasforge.hardware.table.LatencyTable` (per-op lookup table of
  a supernet), :class:`~nasforge.hardware.predictor.LatencyPredictor` (learned, with its MAPE).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from nasforge.hardware.cache import LatencyCache
from nasforge.hardware.cost import count_flops, count_params
from nasforge.hardware.estimators import LatencyEstimator, MeasuredLatency
from nasforge.hardware.latency import LatencyResult, fixed_threads, measure_latency

__all__ = ["measure_latency", "LatencyResult", "count_params", "count_flops", "LatencyCache",
           "hardware_metrics", "fixed_threads", "LatencyEstimator", "MeasuredLatency"]


def hardware_metrics(model: nn.Module, input_shape: Sequence[int], *, batch_size: int = 1, threads: int = 1,
                     device: str | torch.device = "cpu", latency: LatencyResult | None = None,
                     **options: Any) -> dict[str, float]:
    """``{"latency_ms", "latency_median_ms", "latency_spread", "params", "flops"}`` for ``model``.

    ``latency_ms`` is the undisturbed forward latency at ``batch_size`` (ms: ``floor_ms`` of
    :func:`measure_latency`), ``latency_median_ms`` the typical one under the conditions seen,
    ``latency_spread`` its (p90 - p10) / median, ``params`` the parameter count, ``flops`` the forward FLOPs of one
    sample (omitted when FlopCounterMode cannot count the model). Pass ``latency`` (e.g. from a
    :class:`LatencyCache`) to skip the measurement; other ``options`` (``warmup``, ``repeats``,
    ``min_seconds``, ...) go to :func:`measure_latency`.
    """
    if latency is None:
        latency = measure_latency(model, input_shape, batch_size=batch_size, threads=threads, device=device,
                                  **options)
    metrics = {"latency_ms": latency.floor_ms, "latency_median_ms": latency.median_ms,
               "latency_spread": latency.spread, "params": float(count_params(model))}
    flops = count_flops(model, input_shape)
    if flops is not None:
        metrics["flops"] = float(flops)
    return metrics
