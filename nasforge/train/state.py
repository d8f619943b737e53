"""Small helpers for torch state: seeding and snapshots."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch


def seed_torch(seed: int) -> None:
    """``torch.manual_seed``, without its per-call cost on CPU-only machines (it records a stack
    trace for each accelerator it seeds lazily, about 1 ms a call)."""
    if torch.cuda.is_available():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def clone_state(obj: Any) -> Any:
    """A snapshot of nested dicts/lists of tensors that later training cannot change; a few times
    cheaper than ``copy.deepcopy``. Keeps a state dict's ``_metadata``."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        out = OrderedDict((k, clone_state(v)) for k, v in obj.items()) if isinstance(obj, OrderedDict) else \
            {k: clone_state(v) for k, v in obj.items()}
        metadata = getattr(obj, "_metadata", None)
        if metadata is not None:
            out._metadata = metadata  # type: ignore[attr-defined]
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_state(v) for v in obj)
    return obj
