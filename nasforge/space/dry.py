"""Dry runs of a space function: building a model only to see which decisions it asks.

The weights of a dry run are never used, so their random initialisation, most of the build time
of a small model and nearly all of a large one's, is skipped: while a dry run is active in a
thread, the random initialisers of ``torch.nn.init`` (which torch's layers call in their
``reset_parameters``) return their tensor untouched. Everywhere else, and in other threads, they
are torch's own. This is ~2.5x cheaper than building on the meta device, whose per-call dispatch
costs more than a small model's initialisation.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from typing import Any, Callable, Iterator

import torch

_RANDOM_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                 "xavier_normal_", "orthogonal_", "sparse_")
_state = threading.local()
_lock = threading.Lock()


def _skippable(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def init(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if getattr(_state, "dry", False):
            return tensor
        return original(tensor, *args, **kwargs)

    init.__nasforge_skippable__ = True  # type: ignore[attr-defined]
    return init


def _install() -> None:
    with _lock:  # idempotent: an initialiser already wrapped is left as it is
        for name in _RANDOM_INITS:
            original = getattr(torch.nn.init, name, None)
            if original is not None and not getattr(original, "__nasforge_skippable__", False):
                setattr(torch.nn.init, name, _skippable(original))


@contextlib.contextmanager
def dry_run() -> Iterator[None]:
    """Build without random initialisation (and without torch's warnings) in this thread."""
    _install()
    previous = getattr(_state, "dry", False)
    _state.dry = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        _state.dry = previous
