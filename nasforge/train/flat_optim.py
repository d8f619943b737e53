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

KERNELS = {"adam": "_fused_adam_", "adamw": "_fused_adamw_"}


class FusedFlatAdam:
    """``step()`` and ``state`` of torch.optim.Adam/AdamW(fused=True) for one parameter."""

    def __init__(self, param: torch.Tensor, name: str, lr: float, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param = param
        self.kernel = getattr(torch, KERNELS[name])
        self.options: dict[str, Any] = {"amsgrad": False, "lr": lr, "beta1": betas[0], "beta2": betas[1],
                                        "weight_decay": weight_decay, "eps": eps, "maximize": False}
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
    """The optimiser a group's flat parameter trains with: the direct fused kernel where there is
    one (Adam, AdamW on CPU and CUDA), else the trainer's torch.optim optimiser."""
    fused = getattr(torch, KERNELS.get(trainer.optimizer, ""), None) if trainer.optimizer in KERNELS else None
    if fused is None or param.device.type not in ("cpu", "cuda") or param.dtype != torch.float32:
        return trainer._make_optimizer_for([param])
    return FusedFlatAdam(param, trainer.optimizer, trainer.lr, trainer.weight_decay)
