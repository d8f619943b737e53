"""Adam and AdamW over one flat parameter, calling torch's fused kernel directly.

A group of stacked candidates has a single parameter tensor, so torch.optim's step is one kernel
call wrapped in ~0.2 ms of Python (hooks, grouping by device and dtype, a profiler record): more
than the kernel costs for a small group. This calls the same kernel with the same state
(``state[param]`` holds exactly what ``torch.optim.Adam(..., fused=True)`` keeps), so the
results are bitwise equal and the state moves freely between the two (a test checks both).
"""
from __future__ import annotations

from typing import Any

import torch

from nasforge.private_api import fused_adam_kernel

FLAT_OPTIMIZERS = ("adam", "adamw")


class FusedFlatAdam:
    """``step()`` and ``state`` of torch.optim.Adam/AdamW(fused=True) for one parameter, with the
    settings of one of their state dicts' param groups (``lr``, ``betas``, ``eps``, ...)."""

    def __init__(self, param: torch.Tensor, name: str, group: dict[str, Any], kernel: Any):
        self.param = param
        self.kernel = kernel
        beta1, beta2 = group["betas"]
        self.options: dict[str, Any] = {"amsgrad": False, "lr": group["lr"], "beta1": beta1, "beta2": beta2,
                                        "weight_decay": group["weight_decay"], "eps": group["eps"],
                                        "maximize": group["maximize"]}
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def step(self) -> None:
        slots = self.state.get(self.param)
        if not slots:
            slots = self.state[self.param] = {
                "step": torch.zeros((), dtype=torch.float32, device=self.param.device),
                "exp_avg": torch.zeros_like(self.param, requires_grad=False),
                "exp_avg_sq": torch.zeros_like(self.param, requires_grad=False)}
        slots["step"].add_(1)
        self.kernel([self.param], [self.param.grad], [slots["exp_avg"]], [slots["exp_avg_sq"]], [], [slots["step"]],
                    **self.options)


def flat_optimizer(trainer: Any, param: torch.Tensor) -> Any:
    """The optimiser a group's flat parameter trains with: the fused kernel called directly where
    the trainer's own optimiser is fused Adam or AdamW (its settings come from that optimiser),
    else (or without the private kernel) the trainer's torch.optim optimiser."""
    group = trainer.param_group()  # built on the trainer's device, float32, as the flat buffer is
    kernel = fused_adam_kernel(trainer.optimizer) if trainer.optimizer in FLAT_OPTIMIZERS else None
    if kernel is None or not group.get("fused") or group.get("amsgrad") or param.dtype != torch.float32:
        return trainer._make_optimizer_for([param])
    return FusedFlatAdam(param, trainer.optimizer, group, kernel)
