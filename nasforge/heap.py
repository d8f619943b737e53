"""Two process-wide memory settings that a search of many small trainings pays for if left alone.

* **The garbage collector.** A process that imported torch holds ~400k objects the collector
  tracks; each full collection visits them all (~0.1 s here), and a search triggers several.
  Frozen (``gc.freeze``), they are left out of every collection until unfrozen: measured on the
  chapter's experiments, 10% (HB) to 19% (BO) of the wall time. Objects made during the search
  are collected as usual.
* **glibc's malloc.** It serves blocks from 128 KiB up with fresh ``mmap`` pages and gives them
  back on free, so every large tensor of a training step is paged in again: a stacked group of
  74 candidates took ~1,000 page faults per step, 22% of its time, before stacked groups kept
  their activations in a workspace; autograd steps (one by one, under vmap) still allocate
  theirs each step (a 512-wide MLP: ~2,300 faults per step). Raising the thresholds keeps
  freed memory in the heap for reuse (the advice of PyTorch's CPU performance guide, which
  reaches it by preloading another allocator). The cost: up to ``TRIM`` of freed memory stays
  with the process. Set ``NASFORGE_KEEP_MALLOC=1`` to leave malloc as it is.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
from typing import Iterator

MMAP_THRESHOLD = 32 << 20
"""Blocks from this size up still get their own pages (glibc's own ceiling for the threshold)."""
TRIM = 256 << 20
"""Freed memory at the heap's top beyond this goes back to the system."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_tuned = False


def reuse_freed_memory() -> bool:
    """Set glibc malloc's thresholds for this process (once); False where it does not apply
    (another C library, or ``NASFORGE_KEEP_MALLOC=1``). Forked workers inherit the setting."""
    global _tuned
    if _tuned:
        return True
    if os.environ.get("NASFORGE_KEEP_MALLOC") == "1" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM))
    return _tuned


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze every object tracked now; unfreeze on exit, unless the heap was already frozen
    on entry (by an outer ``frozen_heap`` or the caller), which then stays as it was."""
    outer = gc.get_freeze_count() > 0
    gc.freeze()
    try:
        yield
    finally:
        if not outer:
            gc.unfreeze()
