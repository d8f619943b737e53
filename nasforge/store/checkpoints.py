"""Checkpoints: a trial's evaluator state and torch RNG state, as files under the study directory.

They are a cache, not the record: training is deterministic, so a missing or damaged checkpoint is
rebuilt by training from scratch to the trial's budget (5 epochs and then 5 more equal 10 at once).
Workers read and write them here; the study drops the ones it no longer needs.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

Payload = dict[str, Any]
"""A checkpoint's contents: ``{"evaluator": trainer state, "torch_rng": rng state}``."""
_CACHE_SIZE = 1024


class CheckpointIO(Protocol):
    """Where a job finds its input checkpoint (None: lost, train from scratch) and leaves its new one."""

    def get(self, relative: str) -> Payload | None: ...
    def put(self, relative: str, payload: Payload) -> None: ...


class CheckpointFiles:
    """Checkpoints as files under ``directory`` (a worker process of the local pool)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def get(self, relative: str) -> Payload | None:
        return read_checkpoint(self.directory / relative)

    def put(self, relative: str, payload: Payload) -> None:
        save_checkpoint(self.directory / relative, payload)


class Collected:
    """Input checkpoints from ``saved``; the new ones kept in ``made`` for the caller (a worker
    that sends them back to the driver)."""

    def __init__(self, saved: Callable[[str], Payload | None]):
        self.get = saved
        self.made: dict[str, Payload] = {}

    def put(self, relative: str, payload: Payload) -> None:
        self.made[relative] = payload


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically: a crash leaves either the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:  # a full disk, a file size limit: leave no half-written file behind
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: Path | None) -> dict[str, Any] | None:
    """A checkpoint, or None when it is missing or damaged (cut short, overwritten): either way
    the trial is trained again from scratch to its budget, which gives the same weights."""
    if path is None or not path.exists():
        return None
    try:
        payload = load_checkpoint(path)
    except Exception:  # noqa: BLE001 - whatever torch.load says of a damaged file
        return None
    ok = isinstance(payload, dict) and isinstance(payload.get("evaluator"), dict) and "torch_rng" in payload
    return payload if ok else None



class CheckpointCache:
    """Checkpoints kept in memory (the latest ``size``), written to the study directory at most
    every ``flush_seconds`` (on ``maybe_flush``) and on ``flush``."""

    def __init__(self, directory: str | None, flush_seconds: float = 30.0, size: int = _CACHE_SIZE):
        self.directory, self.flush_seconds, self.size = directory, flush_seconds, size
        self._cache: OrderedDict[str, Payload] = OrderedDict()
        self._unsaved: dict[str, Payload] = {}
        self._flushed_at = time.monotonic()

    def get(self, relative: str) -> Payload | None:
        if relative in self._cache:
            self._cache.move_to_end(relative)
            return self._cache[relative]
        return read_checkpoint(Path(self.directory) / relative)  # type: ignore[arg-type]

    def put(self, relative: str, payload: Payload) -> None:
        self._unsaved[relative] = payload
        self._cache[relative] = payload
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)

    def discard(self, relative: str) -> None:
        self._unsaved.pop(relative, None)
        self._cache.pop(relative, None)

    def maybe_flush(self) -> None:
        if time.monotonic() - self._flushed_at > self.flush_seconds:
            self.flush()

    def persist(self, relative: str) -> None:
        """Write this checkpoint now if it is only in memory (a trial's weights worth keeping)."""
        payload = self._unsaved.pop(relative, None)
        if payload is not None:
            save_checkpoint(Path(self.directory) / relative, payload)  # type: ignore[arg-type]

    def flush(self) -> None:
        """Write the checkpoints that are only in memory."""
        for relative, payload in list(self._unsaved.items()):
            save_checkpoint(Path(self.directory) / relative, payload)  # type: ignore[arg-type]
            del self._unsaved[relative]
        self._flushed_at = time.monotonic()
