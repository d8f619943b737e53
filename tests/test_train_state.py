"""Optimiser state dicts assembled without an optimiser must be the ones torch.optim writes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nasforge.train.state import optimizer_slots, optimizer_state
from nasforge.train.trainer import SupervisedTrainer


def _trained(trainer):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    optimizer = trainer._make_optimizer_for(list(model.parameters()))
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).pow(2).sum().backward()
        optimizer.step()
    return model, optimizer


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_slots_and_state_round_trip_torch_optim(name):
    trainer = SupervisedTrainer(optimizer=name, lr=0.05, weight_decay=0.01, device="cpu")
    model, optimizer = _trained(trainer)
    saved = optimizer.state_dict()
    slots, step = optimizer_slots(trainer._make_optimizer_for, model, saved)
    assert len(slots) == 4 and all(slots)
    rebuilt = optimizer_state(trainer.param_group(), slots, step)
    assert rebuilt["param_groups"] == saved["param_groups"]
    assert rebuilt["state"].keys() == saved["state"].keys()
    for i, values in saved["state"].items():
        assert rebuilt["state"][i].keys() == values.keys()
        for key, value in values.items():
            assert torch.equal(torch.as_tensor(rebuilt["state"][i][key]), torch.as_tensor(value)), (i, key)
    fresh = trainer._make_optimizer_for(list(model.parameters()))
    fresh.load_state_dict(rebuilt)  # torch.optim takes it back


def test_a_state_of_another_model_is_refused_by_name():
    trainer = SupervisedTrainer(device="cpu")
    _, optimizer = _trained(trainer)
    other = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="parameter group"):
        optimizer_slots(trainer._make_optimizer_for, other, optimizer.state_dict())
