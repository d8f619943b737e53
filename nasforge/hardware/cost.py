"""Static cost of a model: parameter count and forward FLOPs for one sample.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of a single
sample (input shape ``(1, *input_shape)``, eval mode, no autograd). What it counts: the matrix
multiplications, convolutions and attention kernels (``mm``, ``addmm``, ``bmm``, ``convolution``,
SDPA, ...), each multiply-add as 2 FLOPs; bias additions, activations, normalisation and pooling
are not counted. So ``Linear(10, 20)`` on one sample is ``2 * 10 * 20 = 400`` FLOPs.

When a model runs a compute-heavy op that FlopCounterMode has no formula for (an LSTM's fused
``mkldnn_rnn_layer``, a matrix-vector ``mv``, ...), the count would silently be too low, so
:func:`count_flops` returns ``None`` instead; it also returns ``None`` when the forward pass fails
under the counter. It never raises for the model's sake (only for a bad ``input_shape``).
"""
from __future__ import annotations

import logging
import re
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from nasforge.errors import ConfigError
from nasforge.hardware.latency import check_input_shape, make_input, model_device, on_device

logger = logging.getLogger(__name__)

# Ops that do real arithmetic work; one of these that the counter has no formula for means the
# count would be an undercount.
_HEAVY_OP = re.compile(r"(mm|mv|dot|conv|rnn|lstm|gru|linear|matmul|einsum|attention|tensordot)")


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements (a parameter shared by several modules counts once)."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"Invalid model: expected a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class _LeafOps(TorchDispatchMode):
    """Records every op that reaches the dispatcher below the FLOP counter."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[Any] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops.add(func._overloadpacket)
        return func(*args, **(kwargs or {}))


def count_flops(model: nn.Module, input_shape: Sequence[int], *, seed: int = 0) -> int | None:
    """Forward FLOPs of ``model`` for one sample of shape ``input_shape`` (no batch dimension).

    The model runs once, in eval mode (its flags are restored), on the device it is on, with a
    seeded standard-normal input. Returns ``None`` when FlopCounterMode cannot count the model
    (see the module docstring).
    """
    shape = check_input_shape(input_shape)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"Invalid model: expected a torch.nn.Module, got {type(model).__name__}")
    device = model_device(model) or torch.device("cpu")
    leaf = _LeafOps()
    counter = FlopCounterMode(display=False)
    try:
        with on_device(model, device) as ready, torch.inference_mode():
            x = make_input(ready, (1, *shape), device, seed)
            with leaf, counter:
                ready(x)
    except Exception as exc:  # a model the counter cannot run: no count, no crash
        logger.debug("FLOPs not counted for %s: %s: %s", type(model).__name__, type(exc).__name__, exc)
        return None
    known = getattr(counter, "flop_registry", {})
    missed = sorted(str(op) for op in leaf.ops if op not in known and _HEAVY_OP.search(str(op).split(".")[-1]))
    if missed:
        logger.debug("FLOPs not counted for %s: no formula for %s", type(model).__name__, ", ".join(missed))
        return None
    return int(counter.get_total_flops())
