"""A small JSON file of latency measurements, so each architecture is measured once per study.

An entry is keyed by everything that changes the measurement: the space's name, the
architecture (JSON with sorted keys), the input shape, the batch size, the thread count, the
device, and the machine (CPU model, core count and torch version; the GPU's name for a CUDA
device), so a cache file copied to another machine does not hand out this machine's latencies.

The file is plain JSON ``{"format": "nasforge-latency-cache", "version": 1, "entries": {...}}``.
A missing file starts an empty cache; an unreadable or corrupt one does too, with a warning in
the log. Every :meth:`LatencyCache.put` re-reads the file, merges, and replaces it atomically
(write a temporary file, then ``os.replace``), so processes sharing a file rarely lose entries
and never leave a half-written file; there is no lock, so two simultaneous writers may drop one
entry, which is then measured again.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence

import torch
from torch import nn

from nasforge.errors import ConfigError
from nasforge.hardware.latency import LatencyResult, check_input_shape, measure_latency, measure_many, resolve_measure_device

logger = logging.getLogger(__name__)
_FORMAT = "nasforge-latency-cache"
_VERSION = 2  # 2: results carry floor_ms


@functools.lru_cache(maxsize=None)
def machine_fingerprint(device: str = "cpu") -> str:
    """What identifies this machine for a latency: CPU model, cores, torch version (+ GPU name)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    parts = [cpu, f"{os.cpu_count()} cpus", f"torch {torch.__version__}"]
    if device.startswith("cuda") and torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(torch.device(device)))
    return "; ".join(parts)


def default_cache_path(name: str = "op_latency.json") -> Path:
    """The per-machine latency cache: ``$NASFORGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/nasforge``,
    else ``~/.cache/nasforge`` (entries carry the machine's identity, so a shared home is safe)."""
    root = os.environ.get("NASFORGE_CACHE_DIR")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nasforge")
    return Path(root) / name


def cache_key(space: str, arch: Mapping[str, Any], input_shape: Sequence[int], *, batch_size: int = 1,
              threads: int = 1, device: str | torch.device = "cpu", machine: str | None = None) -> str:
    """The entry's key: a JSON list of every field the measurement depends on."""
    if not isinstance(space, str) or not space:
        raise ConfigError(f"Invalid space name: {space!r}; must be a non-empty string")
    if not isinstance(arch, Mapping):
        raise ConfigError(f"Invalid architecture: expected a dict, got {type(arch).__name__}")
    try:
        arch_json = json.dumps(dict(arch), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid architecture {arch!r}: not JSON-serialisable ({exc})") from exc
    dev = str(resolve_measure_device(device))
    fields = [space, arch_json, list(check_input_shape(input_shape)), int(batch_size), int(threads), dev,
              machine if machine is not None else machine_fingerprint(dev)]
    return json.dumps(fields, separators=(",", ":"))


def keyed(options: Mapping[str, Any]) -> dict[str, Any]:
    """The measurement options a cache entry is keyed by (batch size, threads, device)."""
    return {k: options[k] for k in ("batch_size", "threads", "device") if k in options}


class LatencyCache:
    """Latency results by architecture, backed by a JSON file (``path=None``: in memory only).

    ``get`` returns the stored :class:`LatencyResult` or ``None``; ``put`` stores one (its batch
    size, threads and device come from the result) and writes the file. ``machine`` overrides
    the machine fingerprint (tests; sharing a cache between identical machines).
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, machine: str | None = None):
        self.path = Path(path) if path is not None else None
        self.machine = machine
        self._entries: dict[str, dict[str, Any]] = {}
        self._stamp: tuple[int, int] | None = None
        self._reload()

    def __len__(self) -> int:
        self._reload()
        return len(self._entries)

    def key(self, space: str, arch: Mapping[str, Any], input_shape: Sequence[int], *, batch_size: int = 1,
            threads: int = 1, device: str | torch.device = "cpu") -> str:
        return cache_key(space, arch, input_shape, batch_size=batch_size, threads=threads, device=device,
                         machine=self.machine)

    def get(self, space: str, arch: Mapping[str, Any], input_shape: Sequence[int], *, batch_size: int = 1,
            threads: int = 1, device: str | torch.device = "cpu") -> LatencyResult | None:
        key = self.key(space, arch, input_shape, batch_size=batch_size, threads=threads, device=device)
        self._reload()
        entry = self._entries.get(key)
        if entry is None:
            return None
        try:
            return LatencyResult.from_dict(entry)
        except TypeError:
            logger.warning("Ignoring a malformed latency cache entry in %s", self.path)
            return None

    def put(self, space: str, arch: Mapping[str, Any], input_shape: Sequence[int], result: LatencyResult) -> None:
        if not isinstance(result, LatencyResult):
            raise ConfigError(f"Invalid result: expected a LatencyResult, got {type(result).__name__}")
        key = self.key(space, arch, input_shape, batch_size=result.batch_size, threads=result.threads,
                       device=result.device)
        self._reload()
        self._entries[key] = result.to_dict()
        self._write()

    def get_or_measure(self, space: str, arch: Mapping[str, Any], build: Callable[[], nn.Module],
                       input_shape: Sequence[int], *, batch_size: int = 1, threads: int = 1,
                       device: str | torch.device = "cpu", **options: Any) -> LatencyResult:
        """The cached result, or build the model, :func:`measure_latency` it and store the result."""
        found = self.get(space, arch, input_shape, batch_size=batch_size, threads=threads, device=device)
        if found is not None:
            return found
        result = measure_latency(build(), input_shape, batch_size=batch_size, threads=threads, device=device,
                                 **options)
        self.put(space, arch, input_shape, result)
        return result

    def get_or_measure_many(self, jobs: Mapping[Hashable, tuple[str, Mapping[str, Any], nn.Module, Sequence[int]]], *,
                            passes: int = 2, **options: Any) -> dict[Hashable, LatencyResult]:
        """Per job ``(space, arch, model, input_shape)``: the cached result, else the best of
        ``passes`` interleaved passes over every uncached model
        (:func:`~nasforge.hardware.latency.measure_many`), then stored."""
        out: dict[Hashable, LatencyResult] = {}
        todo: dict[Hashable, tuple[nn.Module, Sequence[int]]] = {}
        for key, (space, arch, model, shape) in jobs.items():
            found = self.get(space, arch, shape, **keyed(options))
            if found is not None:
                out[key] = found
            else:
                todo[key] = (model, shape)
        for key, result in measure_many(todo, passes=passes, **options).items():
            space, arch, _, shape = jobs[key]
            self.put(space, arch, shape, result)
            out[key] = result
        return out

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat() if self.path is not None else None
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size) if st is not None else None

    def _reload(self) -> None:
        """Re-read the file when it changed since it was last read (another process wrote it)."""
        if self.path is None:
            return
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not (isinstance(data, dict) and data.get("format") == _FORMAT and isinstance(data.get("entries"), dict)):
                raise ValueError("not a nasforge latency cache")
            if data.get("version") != _VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {_VERSION}")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            logger.warning("Latency cache %s is unreadable (%s); starting from an empty cache", self.path, exc)
            return
        self._entries.update({k: v for k, v in data["entries"].items() if isinstance(v, dict)})

    def _write(self) -> None:
        if self.path is None:
            return
        payload = {"format": _FORMAT, "version": _VERSION, "entries": self._entries}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(payload, f, sort_keys=True)
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            logger.warning("Could not write the latency cache %s (%s); results stay in memory", self.path, exc)
            return
        self._stamp = self._file_stamp()
