"""Activations of stacked MLP groups: forward and backward kernels, called directly.

A stacked group computes its own gradients (no autograd graph, which for small networks costs
more than the arithmetic), so each activation it takes is differentiated here by hand with the
kernels autograd itself runs.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from nasforge.private_api import aten_out, nn_out, onednn_switch

Forward = Callable[[torch.Tensor, torch.Tensor], object]
"""(input z, out): write the activation of z into out."""
Backward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], object]
"""(gradient w.r.t. the activation's output, its input z, its output h, out): write the gradient
w.r.t. z into out."""


def kernels(act: nn.Module) -> tuple[Forward, Backward] | None:
    """Forward and backward of the activations a stacked group takes: those with f(0) = 0 (a
    zero-padded unit must stay exactly zero), differentiated by hand; None for any other. Both
    write into ``out`` (the candidate rows of one layer's buffer), so candidates with
    different activations need no concatenation. Forwards go through torch's generated bindings
    (ReLU is ``clamp_min(z, 0)``, which is how ATen computes it), backwards through the raw ATen
    overloads: a few microseconds less dispatch per call, and a mixed layer makes one per run.
    All are resolved here, when a group is built, so :func:`~nasforge.private_api.use_private`
    takes effect for the next group."""
    if isinstance(act, nn.ReLU):
        relu_backward = aten_out("threshold_backward", "grad_input")
        return (lambda z, out: torch.clamp_min(z, 0, out=out),
                lambda g, z, h, out: relu_backward(g, h, 0, grad_input=out))
    if isinstance(act, nn.Tanh):
        tanh_backward = aten_out("tanh_backward", "grad_input")
        return (lambda z, out: torch.tanh(z, out=out),
                lambda g, z, h, out: tanh_backward(g, h, grad_input=out))
    if isinstance(act, nn.GELU):
        approximate, gelu, onednn = act.approximate, nn_out("gelu"), onednn_switch()
        gelu_backward = aten_out("gelu_backward", "grad_input")
        return (lambda z, out: _native_if_small(gelu, onednn, z, approximate=approximate, out=out),
                lambda g, z, h, out: _native_if_small(gelu_backward, onednn, g, z, approximate=approximate, grad_input=out))
    if isinstance(act, nn.SiLU):
        silu, silu_backward = nn_out("silu"), aten_out("silu_backward", "grad_input")
        return (lambda z, out: silu(z, out=out),
                lambda g, z, h, out: silu_backward(g, z, grad_input=out))
    if isinstance(act, nn.ELU):
        alpha, elu, elu_backward = float(act.alpha), nn_out("elu"), aten_out("elu_backward", "grad_input")
        return (lambda z, out: elu(z, alpha, 1, 1, out=out),
                lambda g, z, h, out: elu_backward(g, alpha, 1, 1, False, z, grad_input=out))
    if isinstance(act, nn.LeakyReLU):
        slope, leaky_relu = float(act.negative_slope), nn_out("leaky_relu")
        leaky_backward = aten_out("leaky_relu_backward", "grad_input")
        return (lambda z, out: leaky_relu(z, slope, out=out),
                lambda g, z, h, out: leaky_backward(g, z, slope, False, grad_input=out))
    if isinstance(act, nn.Identity):
        return lambda z, out: out.copy_(z), lambda g, z, h, out: out.copy_(g)
    return None


ONEDNN_FROM = 32768
"""Elements from which GELU runs through oneDNN. Below it ATen's own kernels are 2-5x faster:
oneDNN's per-call set-up dominates (1,600 elements: 28 us against 5.5 us backward); from ~30k
(forward) and ~50k (backward) oneDNN wins."""


def _native_if_small(fn: Callable[..., Any], onednn: tuple[Callable[[], bool], Callable[[bool], None]],
                     x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    """``fn(x, ...)`` with oneDNN switched off while ``x`` is small. The switch is torch's global
    one, so another thread running at the same instant may take ATen's kernels too: the same
    results up to rounding."""
    enabled, switch = onednn
    if x.numel() >= ONEDNN_FROM or not enabled():
        return fn(x, *args, **kwargs)
    switch(False)
    try:
        return fn(x, *args, **kwargs)
    finally:
        switch(True)
