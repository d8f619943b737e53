"""Candidates with one identical architecture, of any kind: weights stacked with ``torch.func``,
one vectorised forward and backward under ``vmap``, one optimiser step over the stacked tensors
(Adam and SGD are elementwise, so each candidate's update is the one its own optimiser makes)."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from nasforge.train.state import clone_state, optimizer_slots, optimizer_state, with_step
from nasforge.train.trainer import SupervisedTrainer, _shape_like

_STATEFUL = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def vmap_supported(model: nn.Module) -> bool:
    """No batch norm (its running statistics update in place) and no dropout (random draws under
    vmap differ from one model at a time): then vmap trains exactly as one by one would."""
    return not any(isinstance(m, _STATEFUL) for m in model.modules()) and any(True for _ in model.parameters())


class VmapNet:
    """The :class:`~nasforge.engine.population.StackedNet` protocol for identical architectures."""

    def __init__(self, trainer: SupervisedTrainer, models: list[nn.Module], states: list[dict[str, Any] | None], data: Any):
        self.trainer, self.models, self.data = trainer, models, data
        device = trainer.device
        for model in models:
            model.to(device)
        params, buffers = stack_module_state(models)  # type: ignore[arg-type]
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        self.base = copy.deepcopy(models[0]).to("meta")  # the structure; the weights come from the stacks
        self.optimizer = trainer._make_optimizer_for(list(self.params.values()))
        if states[0] is not None:
            self._load_optimizer_states(states)  # type: ignore[arg-type]
        loss_fn = nn.CrossEntropyLoss() if data.task == "classification" else nn.MSELoss()

        def loss_one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return loss_fn(_shape_like(functional_call(self.base, (p, b), (x,)), data), y)

        self._grad_and_loss = vmap(grad_and_value(loss_one))

    def _load_optimizer_states(self, states: list[dict[str, Any]]) -> None:
        per_model = [optimizer_slots(self.trainer._make_optimizer_for, m, s["optimizer"]) for m, s in zip(self.models, states)]
        step = per_model[0][1]
        for j, stacked in enumerate(self.params.values()):
            slots = [slots[j] for slots, _ in per_model]
            if slots[0]:
                self.optimizer.state[stacked] = with_step(step, {name: torch.stack([s[name] for s in slots]) for name in slots[0]})

    def step(self, x: torch.Tensor, y: torch.Tensor, also_predict: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        predicted = self.predict(also_predict) if also_predict is not None else None  # before the update
        grads, losses = self._grad_and_loss(self.params, self.buffers, x, y)
        for name, param in self.params.items():
            param.grad = grads[name]
        self.optimizer.step()
        return losses.detach(), predicted

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return vmap(lambda p, b: functional_call(self.base, (p, b), (x,)))(self.params, self.buffers)

    def export(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        model = self.models[i]
        state = {name: value[i].detach() for name, value in {**self.params, **self.buffers}.items()}
        model.load_state_dict(state)  # copies; the state dict returned below is cloned from the model
        slots: list[dict[str, torch.Tensor]] = []
        step = None
        for stacked in self.params.values():
            saved = self.optimizer.state.get(stacked) or {}
            step = saved.get("step", step)
            slots.append({k: v[i].clone() for k, v in saved.items() if k != "step"})
        return clone_state(model.state_dict()), optimizer_state(self.trainer.param_group(), slots, step)
