"""A latency lookup table of a supernet: every candidate op, measured at the input it sees.

ProxylessNAS (Cai et al., ICLR 2019, section 3.3) models a network's latency as the sum of its
ops' latencies, each looked up in a table measured once per device. :func:`measure_table` builds
that table for any supernet (:mod:`nasforge.space.supernet`):

1. one forward pass of a sample records the input and output shape of every mixed op;
2. every candidate of every mixed op is timed alone (:func:`measure_latency`, eval mode, as a
   child network runs it: :func:`as_child`) at its input shape, the best of three passes
   (:func:`~nasforge.hardware.latency.measure_many`); ops with the same structure and input are
   timed once, and each result goes to a :class:`LatencyCache` keyed by the op's structure, the
   shape and the machine's identity, so a second search on the same machine measures nothing;
3. ``fixed_ms``: the network with every mixed op replaced by zeros of its output shape (the stem,
   the head, the shortcuts, the fixed layers);
4. ``scale``: five sampled paths extracted as child networks and run end to end, in the same
   passes; the median of their latency over the sum. Ops timed alone run faster than in a chain
   (measured on this project's machine: the plain sum 0.86-1.01 of the end-to-end latency, 0.92
   on average), and that part is much the same for every path.

A discrete architecture's latency is then ``scale x (fixed_ms + sum over mixed ops of the chosen
candidate's entry)``; the expected latency under per-decision probabilities is the same sum
weighted by them, differentiable in the probabilities (:meth:`LatencyTable.expected`). What
the table leaves out (the sum is not the whole: per-call overhead, caches warm across ops) is
measured against end-to-end latencies by ``benchmarks/proxyless.py``.
"""
from __future__ import annotations

import copy
import hashlib
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from nasforge.hardware.cache import LatencyCache, machine_fingerprint
from nasforge.hardware.latency import check_input_shape, make_input, on_device
from nasforge.space.supernet import MixedOp
from nasforge.types import ArchDict


@dataclass(frozen=True)
class OpEntry:
    """One mixed op of the supernet: its decision, its candidates and their latencies (ms)."""

    label: str
    candidates: tuple[str, ...]
    ms: tuple[float, ...]
    input_shape: tuple[int, ...]


class LatencyTable:
    """The lookup table (see the module): ``latency_ms(arch)`` for a discrete architecture,
    ``expected(probabilities)`` for a distribution over each decision's candidates."""

    name = "table"

    def __init__(self, entries: Sequence[OpEntry], fixed_ms: float, machine: str, settings: Mapping[str, Any],
                 scale: float = 1.0):
        self.entries, self.fixed_ms, self.scale = list(entries), float(fixed_ms), float(scale)
        self.machine, self.settings = machine, dict(settings)
        self._ms = [torch.tensor(e.ms, dtype=torch.float32) for e in self.entries]

    def latency_ms(self, arch: ArchDict, model: nn.Module | None = None) -> float:
        return self.scale * (self.fixed_ms + sum(e.ms[e.candidates.index(arch[e.label])] for e in self.entries))

    def expected(self, probabilities: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``scale x (fixed + sum over mixed ops of probabilities[label] . ms)`` (a scalar tensor)."""
        total = torch.tensor(self.fixed_ms)
        for entry, ms in zip(self.entries, self._ms):
            total = total + (probabilities[entry.label] * ms).sum()
        return self.scale * total

    def span(self) -> tuple[float, float]:
        """The fastest and slowest architecture the table knows (ms)."""
        return (self.scale * (self.fixed_ms + sum(min(e.ms) for e in self.entries)),
                self.scale * (self.fixed_ms + sum(max(e.ms) for e in self.entries)))

    def to_dict(self) -> dict[str, Any]:
        return {"entries": [asdict(e) for e in self.entries], "fixed_ms": self.fixed_ms, "scale": self.scale,
                "machine": self.machine, "settings": self.settings}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyTable:
        entries = [OpEntry(e["label"], tuple(e["candidates"]), tuple(e["ms"]), tuple(e["input_shape"]))
                   for e in data["entries"]]
        return cls(entries, data["fixed_ms"], data["machine"], data["settings"], data.get("scale", 1.0))


class _Shapes:
    """A mixer that runs a mixed op's first candidate and records the shapes it sees."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def mix_op(self, label: str, ops: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        out = next(iter(ops.values()))(x)
        self.seen[id(ops)] = (tuple(x.shape), tuple(out.shape))
        return out


class _Zeros:
    """A mixer that replaces a mixed op by zeros of its output shape (the rest of the network is timed)."""

    def __init__(self, shapes: Mapping[int, tuple[tuple[int, ...], tuple[int, ...]]]):
        self.shapes = shapes

    def mix_op(self, label: str, ops: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(self.shapes[id(ops)][1])


def as_child(op: nn.Module) -> nn.Module:
    """A copy of a supernet candidate as a child network runs it: batch norm with running
    statistics (a supernet's mixed ops normalise by the batch's, which costs more at inference)."""
    child = copy.deepcopy(op)
    for m in child.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.track_running_stats:
            m.track_running_stats = True
            m.register_buffer("running_mean", torch.zeros(m.num_features))
            m.register_buffer("running_var", torch.ones(m.num_features))
            m.register_buffer("num_batches_tracked", torch.tensor(0))
    return child


def _structure(module: nn.Module) -> str:
    return hashlib.sha1(repr(module).encode()).hexdigest()


def measure_table(supernet: nn.Module, input_shape: Sequence[int], *, batch_size: int = 1, threads: int = 1,
                  device: str = "cpu", repeats: int = 20, min_seconds: float = 0.2, passes: int = 3,
                  calibrate: int = 5, cache: LatencyCache | None = None) -> LatencyTable:
    """Time every candidate of every mixed op of ``supernet`` (see the module), each the best of
    ``passes`` (:func:`~nasforge.hardware.latency.measure_many`). ``cache``: where op latencies
    are kept between searches (default: in memory only). ``calibrate``: sampled paths measured end
    to end, in the same passes, to scale the sum by (0: none)."""
    shape = check_input_shape(input_shape)
    cache = cache if cache is not None else LatencyCache(None)
    mixed = [m for m in supernet.modules() if isinstance(m, MixedOp)]
    owners = [m.mixer for m in mixed]
    recorder = _Shapes()
    options = {"batch_size": batch_size, "threads": threads, "device": device, "repeats": repeats,
               "min_seconds": min_seconds}
    try:
        for m in mixed:
            object.__setattr__(m, "mixer", recorder)
        with on_device(supernet, torch.device("cpu")) as ready, torch.no_grad():
            ready(make_input(ready, (batch_size, *shape), torch.device("cpu"), 0))
        timed = {id(op): as_child(op) for m in mixed for op in m.ops.values()}
        op_keys = {id(op): ("op", _structure(timed[id(op)]), recorder.seen[id(m.ops)][0][1:])
                   for m in mixed for op in m.ops.values()}
        jobs = {op_keys[id(op)]: (timed[id(op)], op_keys[id(op)][2]) for m in mixed for op in m.ops.values()}
        paths = _sampled_paths(mixed, calibrate)
        children = {("network", _structure(child), shape): (child, path) for child, path in
                    ((_extract(supernet, path), path) for path in paths)}
        jobs.update({key: (child, shape) for key, (child, _) in children.items()})
        fixed_key = ("fixed", _structure(supernet), shape)
        jobs[fixed_key] = (supernet, shape)
        zeros = _Zeros(recorder.seen)
        for m in mixed:
            object.__setattr__(m, "mixer", zeros)
        results = cache.get_or_measure_many({key: (key[0], {"structure": key[1]}, model, job_shape)
                                             for key, (model, job_shape) in jobs.items()}, passes=passes, **options)
        ms = {key: result.floor_ms for key, result in results.items()}  # ops, children, the rest: interleaved
    finally:
        for m, owner in zip(mixed, owners):
            object.__setattr__(m, "mixer", owner)
    entries = [OpEntry(m.label, tuple(m.ops), tuple(ms[op_keys[id(op)]] for op in m.ops.values()),
                       recorder.seen[id(m.ops)][0][1:]) for m in mixed]
    table = LatencyTable(entries, ms[fixed_key], machine_fingerprint(str(device)), {**options, "passes": passes})
    if children:  # what the sum misses, much the same for every path: the median ratio
        table.scale = float(statistics.median(
            ms[key] / table.latency_ms({e.label: e.candidates[path[e.label]] for e in entries})
            for key, (_, path) in children.items()))
    return table


def _sampled_paths(mixed: list[MixedOp], n: int) -> list[dict[str, int]]:
    generator = torch.Generator().manual_seed(0)
    sizes = {m.label: len(m.ops) for m in mixed}
    return [{label: int(torch.randint(0, k, (1,), generator=generator)) for label, k in sizes.items()} for _ in range(n)]


def _extract(supernet: nn.Module, path: Mapping[str, int]) -> nn.Module:
    """The child network on ``path``: a copy of ``supernet`` with each mixed op replaced by that
    candidate, batch norm as a child runs it (:func:`as_child`)."""
    child = as_child(supernet)
    for name, module in list(child.named_modules()):
        if isinstance(module, MixedOp):
            parent, _, attr = name.rpartition(".")
            setattr(child.get_submodule(parent), attr, list(module.ops.values())[path[module.label]])
    return child
