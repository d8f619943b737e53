"""The direct fused Adam/AdamW step must be torch.optim's fused step, bit for bit."""
from __future__ import annotations

import pytest
import torch

from nasforge.engine.flat_optim import FusedFlatAdam, flat_optimizer
from nasforge.private_api import fused_adam_kernel
from nasforge.train.trainer import SupervisedTrainer

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def _steps(optimizer, param, grads):
    for g in grads:
        param.grad = g.clone()
        optimizer.step()


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_equals_torch_optim_fused_and_shares_its_state(name):
    torch.manual_seed(0)
    start = torch.randn(1000)
    grads = [torch.randn(1000) * 10 ** k for k in range(-3, 3)]
    ours, theirs = start.clone().requires_grad_(), start.clone().requires_grad_()
    reference = OPTIMIZERS[name]([theirs], lr=0.01, weight_decay=0.1, fused=True)
    group = {k: v for k, v in reference.state_dict()["param_groups"][0].items() if k != "params"}
    direct = FusedFlatAdam(ours, name, group, fused_adam_kernel(name))
    _steps(direct, ours, grads[:3])
    _steps(reference, theirs, grads[:3])
    assert torch.equal(ours, theirs)
    assert ours.data_ptr() != theirs.data_ptr()
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert torch.equal(direct.state[ours][key], reference.state[theirs][key]), key
    # a state handed over continues identically: torch.optim's state into ours
    moved = theirs.detach().clone().requires_grad_()
    resumed = FusedFlatAdam(moved, name, group, fused_adam_kernel(name))
    resumed.state[moved] = {k: v.clone() for k, v in reference.state[theirs].items()}
    _steps(resumed, moved, grads[3:])
    _steps(reference, theirs, grads[3:])
    assert torch.equal(moved, theirs)


def test_other_optimizers_keep_torch_optim():
    param = torch.zeros(3, requires_grad=True)
    assert isinstance(flat_optimizer(SupervisedTrainer(optimizer="adam", device="cpu"), param), FusedFlatAdam)
    assert isinstance(flat_optimizer(SupervisedTrainer(optimizer="sgd", device="cpu"), param), torch.optim.SGD)
    double = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    assert isinstance(flat_optimizer(SupervisedTrainer(optimizer="adam", device="cpu"), double), torch.optim.Adam)
