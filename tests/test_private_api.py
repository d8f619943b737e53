"""Every private call has a public fallback computing the same values: the population trainer run
with private calls off must train exactly as with them on; a search must not import dynamo."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from nasforge import private_api
from nasforge.datasets import load_dataset
from nasforge.engine.flat_optim import FusedFlatAdam, flat_optimizer
from nasforge.engine.population import PopulationTrainer
from nasforge.space import Space
from nasforge.spaces.mlp import mlp
from nasforge.train.trainer import SupervisedTrainer

ACTIVATIONS = ["relu", "tanh", "gelu", "silu", "elu"]


@pytest.fixture
def public_only():
    private_api.use_private(False)
    yield
    private_api.use_private(True)


def _train_population(optimizer: str):
    data = load_dataset("iris")
    space = Space(mlp, data.context(), args={"activations": ACTIVATIONS})
    rng = np.random.default_rng(3)
    archs = [space.schema.sample(rng) for _ in range(10)]
    trainer = SupervisedTrainer(optimizer=optimizer, lr=0.01, device="cpu")
    pop = PopulationTrainer(trainer)
    cands = []
    for seed, arch in enumerate(archs):
        torch.manual_seed(seed)
        cands.append(pop.candidate(space.build(arch), 3, None))
    pop.train(cands, data)
    assert {a["activation"] for a in archs} >= {"gelu", "silu"}  # the fallbacks in question ran
    return [(c.error, c.result.curve if c.result else None) for c in cands]


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_public_fallbacks_train_exactly_as_the_private_calls(optimizer, public_only):
    public = _train_population(optimizer)
    private_api.use_private(True)
    private = _train_population(optimizer)
    assert public == private  # same kernels reached by other doors: bitwise the same


def test_fallbacks_are_taken_when_private_calls_are_off(public_only):
    param = torch.zeros(4, requires_grad=True)
    assert private_api.fused_adam_kernel("adam") is None
    assert isinstance(flat_optimizer(SupervisedTrainer(optimizer="adam", device="cpu"), param), torch.optim.Adam)
    assert private_api.nn_out("gelu") is torch.ops.aten.gelu.out
    assert private_api.aten_out("tanh_backward", "grad_input") is torch.ops.aten.tanh_backward.grad_input
    private_api.use_private(True)
    assert isinstance(flat_optimizer(SupervisedTrainer(optimizer="adam", device="cpu"), param), FusedFlatAdam)


def test_onednn_switch_turns_onednn_off_and_on(public_only):
    for private in (False, True):
        private_api.use_private(private)
        enabled, switch = private_api.onednn_switch()
        assert enabled()
        switch(False)
        try:
            assert not torch._C._get_mkldnn_enabled() and not enabled()
        finally:
            switch(True)
        assert torch.backends.mkldnn.enabled


def _run(code: str, **env: str) -> str:
    import os
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_optimizers_run_without_importing_dynamo_and_still_disable_it_once_loaded():
    code = """
        import sys, torch
        import nasforge.train.trainer
        p = torch.nn.Parameter(torch.ones(3))
        opt = torch.optim.Adam([p], lr=0.1)
        opt.zero_grad(); opt.load_state_dict(opt.state_dict())  # what the batched path calls (step is not)
        print("torch._dynamo" in sys.modules)
        import torch._dynamo
        opt2 = torch.optim.Adam([p], lr=0.1)
        compiled = torch._dynamo.optimize("eager")(lambda: opt2.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))]}))
        compiled()
        print(len(opt2.param_groups))
    """
    assert _run(code).split() == ["False", "2"]
    assert _run(code, NASFORGE_PUBLIC_API_ONLY="1").split()[1] == "2"  # the fallback: dynamo is imported, works alike


@pytest.mark.parametrize("dataset", ["iris", "mnist1d"])  # a table, and a stratified split
def test_a_search_on_bundled_data_imports_neither_dynamo_nor_scikit_learn(tmp_path, dataset):
    code = f"""
        import sys
        from nasforge.cli import main
        try:
            main(["search", "--space", "mlp", "--dataset", {dataset!r}, "--trials", "6", "--budget", "1",
                  "--out", {str(tmp_path / "study")!r}, "--quiet"])
        except SystemExit as exc:
            assert not exc.code, exc.code
        print(sorted(m for m in ("torch._dynamo", "sklearn", "scipy") if m in sys.modules))
    """
    assert _run(code).splitlines()[-1] == "[]"
