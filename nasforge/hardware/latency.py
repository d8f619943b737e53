"""Inference latency of a model, measured on the machine (and device) it will run on.

What is measured: the wall time of one forward pass ``model(x)`` on a fixed input ``x`` of shape
``(batch_size, *input_shape)``, with the model in eval mode under ``torch.inference_mode``, with
``threads`` intra-op threads (``torch.set_num_threads``, restored afterwards).

How:

1. ``warmup`` calls are made and discarded (one-time allocations, oneDNN/cuDNN set-up, caches).
2. The number of back-to-back calls per timed repeat is calibrated so that one repeat lasts at
   least ``_MIN_REPEAT_S`` (1 ms): a 20 µs MLP is timed 50 calls at a time, so clock resolution
   and the timer's own overhead do not matter; a model slower than 1 ms is timed one call per
   repeat. The reported times are per call (repeat time / calls per repeat).
3. The ``repeats`` timed repeats are taken in a few rounds (``rounds``, 5 by default); each round
   has a median. While the timed total is under ``min_seconds``, more rounds of the same size are
   taken: a fast model is measured over the same minimum time as a slow one.
4. Two numbers come out of the round medians. ``median_ms``, their median, is the typical latency
   under the conditions seen. ``floor_ms``, the median of the fastest tenth of them (at least 3
   rounds), is the latency when nothing else disturbs the core, and it is the one to compare
   architectures by: on a shared virtual machine each core switches, every fraction of a second,
   between an undisturbed speed and one 1.5-1.8x slower (interference from the host, invisible
   to the guest: no steal time shows), so a median depends on which phases a measurement happened
   to meet, while the fast phase's speed stays within a few percent (measured on this project's
   2-vCPU machine: a small CNN at 0.19-0.21 ms when undisturbed, 0.30-0.38 ms otherwise).
   ``hardware_metrics`` reports ``floor_ms`` as ``latency_ms``.
5. CPU: each repeat is timed with ``time.perf_counter``. CUDA: each repeat is timed with a pair
   of CUDA events (GPU time between the two); the device is synchronised before each round and
   after it. The garbage collector is paused while timing.

``p10_ms``/``p90_ms`` are percentiles over all timed repeats and ``spread = (p90 - p10) / median``,
a measure of how noisy the machine was. ``benchmarks/latency_repeatability.py`` measures models
twice and reports how far the two ``floor_ms`` (and ``median_ms``) differ.
"""
from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Hashable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from nasforge.errors import ConfigError

_MIN_REPEAT_S = 1e-3  # one timed repeat lasts at least this long (several calls when the model is fast)
_MAX_CALLS_PER_REPEAT = 10_000
_MAX_ROUNDS = 1_000


@dataclass(frozen=True)
class LatencyResult:
    """One latency measurement. Times are per forward call, in milliseconds.

    ``repeats`` is the number of timed repeats actually taken (at least the number asked; more
    when ``min_seconds`` needed more rounds), ``calls_per_repeat`` the calls in one repeat,
    ``rounds`` the rounds they were split into, ``seconds`` the wall time of the whole
    measurement (warm-up included). ``median_ms``: the median of the round medians; ``floor_ms``:
    the median of the fastest tenth of them (see the module docstring).
    """

    median_ms: float
    floor_ms: float
    p10_ms: float
    p90_ms: float
    spread: float
    repeats: int
    batch_size: int
    threads: int
    device: str
    rounds: int = 1
    calls_per_repeat: int = 1
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyResult:
        return cls(**data)


@contextlib.contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``; the previous count is restored."""
    _check_int("threads", threads, 1)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def resolve_measure_device(device: str | torch.device) -> torch.device:
    """The device to time on: ``"cpu"``, ``"cuda"``/``"cuda:N"`` (when available) or ``"auto"``."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"Invalid device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"Invalid device {device!r}: CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= torch.cuda.device_count():
            raise ConfigError(f"Invalid device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ConfigError(f"Invalid device {device!r}; latency is measured on 'cpu' or 'cuda[:N]'")
    return dev


def measure_latency(model: nn.Module, input_shape: Sequence[int], *, batch_size: int = 1,
                    device: str | torch.device = "cpu", threads: int = 1, warmup: int = 10,
                    repeats: int = 50, min_seconds: float = 1.0, rounds: int = 5,
                    seed: int = 0) -> LatencyResult:
    """Measure the forward latency of ``model`` on inputs of shape ``(batch_size, *input_shape)``.

    ``input_shape`` is the shape of one sample (no batch dimension). The model is moved to
    ``device`` for the measurement if it is elsewhere and moved back afterwards; its train/eval
    flags are restored too. The input is drawn once from a generator seeded with ``seed``. See the
    module docstring for the method. Raises :class:`~nasforge.errors.ConfigError` for a bad
    argument, and whatever the model raises if its forward pass fails.
    """
    shape = check_input_shape(input_shape)
    _check_int("batch_size", batch_size, 1)
    _check_int("threads", threads, 1)
    _check_int("warmup", warmup, 0)
    _check_int("repeats", repeats, 1)
    _check_int("rounds", rounds, 1)
    _check_int("seed", seed, 0)
    if isinstance(min_seconds, bool) or not isinstance(min_seconds, (int, float)) or not 0 <= min_seconds < math.inf:
        raise ConfigError(f"Invalid min_seconds: {min_seconds!r}; must be a finite number >= 0")
    dev = resolve_measure_device(device)
    start = time.perf_counter()
    with fixed_threads(threads), on_device(model, dev) as ready, torch.inference_mode():
        x = make_input(ready, (batch_size, *shape), dev, seed)
        timer = _cuda_timer(dev) if dev.type == "cuda" else _cpu_timer
        per_round, calls = _timed_rounds(lambda: ready(x), timer, warmup, repeats, min(rounds, repeats),
                                         float(min_seconds))
    return _summarise(per_round, calls, batch_size, threads, str(dev), time.perf_counter() - start)


def measure_many(models: Mapping[Hashable, tuple[nn.Module, Sequence[int]]], *, passes: int = 2,
                 **options: Any) -> dict[Hashable, LatencyResult]:
    """Measure every ``(model, input_shape)`` of ``models`` ``passes`` times, one pass over all of
    them after another, and keep each one's result with the lowest ``floor_ms``. A slow phase of a
    shared machine can outlast one measurement (seen here: a whole second at 1.35x); passes apart
    in time rarely all meet one. ``options`` go to :func:`measure_latency`."""
    _check_int("passes", passes, 1)
    best: dict[Hashable, LatencyResult] = {}
    for _ in range(passes):
        for key, (model, shape) in models.items():
            result = measure_latency(model, shape, **options)
            if key not in best or result.floor_ms < best[key].floor_ms:
                best[key] = result
    return best


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints, or a ConfigError naming it."""
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, (Sequence, torch.Size)):
        raise ConfigError(f"Invalid input_shape: {input_shape!r}; must be a sequence of positive ints "
                          "(one sample's shape, without the batch dimension), e.g. (1, 28, 28)")
    shape = tuple(input_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ConfigError(f"Invalid input_shape: {input_shape!r}; must be a non-empty sequence of positive ints "
                          "(one sample's shape, without the batch dimension), e.g. (1, 28, 28)")
    return shape


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"Invalid {name}: {value!r}; must be an int >= {low}")


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter or buffer (None when it has neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return None


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (float32 when it has none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


@contextlib.contextmanager
def on_device(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """The model in eval mode on ``device``; its place and train/eval flags are restored after."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"Invalid model: expected a torch.nn.Module, got {type(model).__name__}")
    flags = {m: m.training for m in model.modules()}
    home = model_device(model)
    moved = home is not None and home != device
    if moved:
        model.to(device)
    model.eval()
    try:
        yield model
    finally:
        for m, training in flags.items():
            m.training = training
        if moved:
            model.to(home)


def make_input(model: nn.Module, shape: tuple[int, ...], device: torch.device, seed: int) -> torch.Tensor:
    """A fixed standard-normal input (seeded, drawn on the CPU) in the model's dtype, on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=model_dtype(model))


# A timer runs ``fn`` ``calls`` times per repeat for ``n`` repeats and returns each repeat's seconds.
Timer = Callable[[Callable[[], Any], int, int], list[float]]


def _cpu_timer(fn: Callable[[], Any], calls: int, n: int) -> list[float]:
    clock = time.perf_counter
    out: list[float] = []
    for _ in range(n):
        t0 = clock()
        for _ in range(calls):
            fn()
        out.append(clock() - t0)
    return out


def _cuda_timer(device: torch.device) -> Timer:
    def timer(fn: Callable[[], Any], calls: int, n: int) -> list[float]:
        with torch.cuda.device(device):
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
            torch.cuda.synchronize()
            for begin, end in events:
                begin.record()
                for _ in range(calls):
                    fn()
                end.record()
            torch.cuda.synchronize()
            return [begin.elapsed_time(end) / 1e3 for begin, end in events]
    return timer


def _calls_per_repeat(fn: Callable[[], Any], timer: Timer) -> int:
    """Back-to-back calls needed for one repeat to last at least ``_MIN_REPEAT_S``."""
    one = min(timer(fn, 1, 3))
    if one >= _MIN_REPEAT_S:
        return 1
    calls = min(_MAX_CALLS_PER_REPEAT, max(1, math.ceil(_MIN_REPEAT_S / max(one, 1e-7))))
    # the single-call estimate includes the timer's overhead; check on a real repeat and correct once
    actual = min(timer(fn, calls, 3)) / calls
    return min(_MAX_CALLS_PER_REPEAT, max(1, math.ceil(_MIN_REPEAT_S / max(actual, 1e-7))))


def _round_sizes(repeats: int, rounds: int) -> list[int]:
    base, extra = divmod(repeats, rounds)
    return [base + (1 if i < extra else 0) for i in range(rounds)]


def _timed_rounds(fn: Callable[[], Any], timer: Timer, warmup: int, repeats: int, rounds: int,
                  min_seconds: float) -> tuple[list[list[float]], int]:
    """Warm up, calibrate, then time rounds until ``repeats`` are taken and ``min_seconds`` spent.

    Returns the per-call seconds of each repeat, grouped by round, and the calls per repeat.
    """
    for _ in range(warmup):
        fn()
    calls = _calls_per_repeat(fn, timer)
    sizes = _round_sizes(repeats, rounds)
    per_round: list[list[float]] = []
    spent = 0.0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        i = 0
        while i < len(sizes) or (spent < min_seconds and len(per_round) < _MAX_ROUNDS):
            size = sizes[i] if i < len(sizes) else sizes[-1]
            times = timer(fn, calls, size)
            spent += sum(times)
            per_round.append([t / calls for t in times])
            i += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    return per_round, calls


def _summarise(per_round: list[list[float]], calls: int, batch_size: int, threads: int, device: str,
               seconds: float) -> LatencyResult:
    """Median of round medians, the median of their fastest tenth; p10/p90 over every repeat
    (clamped around the median)."""
    medians = sorted(statistics.median(r) * 1e3 for r in per_round)
    median = statistics.median(medians)
    floor = statistics.median(medians[:max(3, len(medians) // 10)])
    pooled = np.array([t for r in per_round for t in r]) * 1e3
    p10, p90 = (float(v) for v in np.percentile(pooled, [10, 90]))
    p10, p90 = min(p10, median), max(p90, median)
    return LatencyResult(
        median_ms=median, floor_ms=floor, p10_ms=p10, p90_ms=p90, spread=(p90 - p10) / median if median > 0 else 0.0,
        repeats=len(pooled), batch_size=batch_size, threads=threads, device=device,
        rounds=len(per_round), calls_per_repeat=calls, seconds=seconds,
    )
