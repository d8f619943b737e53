"""Every call nasforge makes into a private API (torch's, the standard library's), each beside its
public fallback.

The private calls are speed only: the fallbacks compute the same values (up to rounding where
said) through public APIs. A torch that renames or drops one of them falls back by itself, and
``NASFORGE_PUBLIC_API_ONLY=1`` (or ``use_private(False)``, read when a group or pool is built)
takes every fallback, which the tests run too (``tests/test_private_api.py``).
"""
from __future__ import annotations

import concurrent.futures as cf
import functools
import os
import sys
from typing import Any, Callable

import torch

_private = os.environ.get("NASFORGE_PUBLIC_API_ONLY", "") not in ("1", "true", "yes")


def use_private(enabled: bool) -> None:
    """Take the private calls (True, the default) or only their public fallbacks (False)."""
    global _private
    _private = enabled


def _attr(owner: Any, name: str) -> Any:
    return getattr(owner, name, None) if _private else None


# --- activation kernels ------------------------------------------------------------------------
def aten_out(op: str, overload: str = "out") -> Callable[..., Any]:
    """The ATen kernel ``torch.ops.aten.<op>.<overload>``, through its C callable (``._op``, a few
    microseconds less dispatch per call) where there is one."""
    public = getattr(getattr(torch.ops.aten, op), overload)
    return _attr(public, "_op") or public


def nn_out(op: str) -> Callable[..., Any]:
    """``torch._C._nn.<op>`` (gelu, silu, elu, leaky_relu with ``out=``: the generated binding, the
    fastest way in), else the public ``torch.ops.aten.<op>.out``, which takes the same arguments."""
    return _attr(torch._C._nn, op) or getattr(torch.ops.aten, op).out


def onednn_switch() -> tuple[Callable[[], bool], Callable[[bool], None]]:
    """(is oneDNN on, turn it on/off): torch's private switch, which is what
    ``torch.backends.mkldnn.flags`` sets, without its ~10 us of Python a call; or the public
    ``torch.backends.mkldnn.enabled`` property, which sets it through a few more calls. Resolve
    once, call on the hot path (a context manager's generator costs more than the kernel)."""
    getter, setter = _attr(torch._C, "_get_mkldnn_enabled"), _attr(torch._C, "_set_mkldnn_enabled")
    if getter is None or setter is None:
        return (lambda: torch.backends.mkldnn.enabled), _set_onednn_publicly
    return getter, setter


def _set_onednn_publicly(enabled: bool) -> None:
    torch.backends.mkldnn.enabled = enabled


# --- Adam over one flat parameter -------------------------------------------------------------
def fused_adam_kernel(name: str) -> Callable[..., Any] | None:
    """``torch._fused_adam_`` / ``_fused_adamw_``: torch.optim's fused step without its ~0.2 ms of
    Python. None means: use the torch.optim optimiser itself (bitwise the same step)."""
    return _attr(torch, {"adam": "_fused_adam_", "adamw": "_fused_adamw_"}[name])


# --- first use of torch.optim without torch._dynamo --------------------------------------------
def skip_dynamo_import_in_optimizers() -> bool:
    """torch.optim's methods are wrapped by ``torch._disable_dynamo``, which imports torch._dynamo
    (1.3 s here) on a first call just to mark them untraceable. While nothing has imported
    dynamo, nothing can trace them: each wrapped method is given, in the slot that wrapper caches
    its result in, a function that calls the method directly until dynamo is loaded and the
    real ``torch._dynamo.disable`` from then on. False (nothing changed) when the private slot is
    not there or private calls are off."""
    if not _private or "torch._dynamo" in sys.modules:
        return False
    changed = False
    for cls in (torch.optim.Optimizer, torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):
        for name, fn in vars(cls).items():
            inner = getattr(fn, "__wrapped__", None)
            code = getattr(fn, "__code__", None)
            if inner is None or code is None or not code.co_qualname.startswith("_disable_dynamo."):
                continue
            if not hasattr(inner, "__dynamo_disable"):
                inner.__dynamo_disable = _until_dynamo(inner)  # the slot torch._compile reads
            changed = True
    return changed


def _until_dynamo(fn: Callable[..., Any]) -> Callable[..., Any]:
    disabled: list[Callable[..., Any]] = []

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if "torch._dynamo" not in sys.modules:
            return fn(*args, **kwargs)
        if not disabled:
            import torch._dynamo
            disabled.append(torch._dynamo.disable(fn, recursive=True, wrapping=False))
        return disabled[0](*args, **kwargs)

    return call


# --- the standard library's process pool -------------------------------------------------------
def pool_processes(pool: cf.ProcessPoolExecutor) -> list[Any]:
    """The pool's worker processes (``_processes``), to terminate them; [] when unknown (they then
    end after their current task)."""
    processes = _attr(pool, "_processes")
    return list(processes.values()) if processes else []
