"""One-shot search: the supernet mode of arch, DARTS, ENAS, the loop's checkpoints and record."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nasforge
from nasforge.datasets import load_dataset
from nasforge.errors import ConfigError, UnsupportedDecision
from nasforge.oneshot.base import Batches, task_loss
from nasforge.oneshot.darts import Darts
from nasforge.oneshot.enas import Enas, SampledPathMixer
from nasforge.oneshot.loop import CHECKPOINT, OneShotSearch, build_supernet
from nasforge.space.protocol import Arch
from nasforge.space.space import Space
from nasforge.space.supernet import MixedInputs, MixedOp, SupernetArch, sum_inputs
from nasforge.spaces.darts import darts
from nasforge.spaces.enas import enas_macro, enas_micro
from nasforge.spaces.nb201 import LABELS, OPS, nb201
from nasforge.strategies import ONE_SHOT
import nasforge.spaces.mlp


def _supernet(space: Space, method) -> nn.Module:
    model, arch = build_supernet(space, method)
    method.setup(model, dict(arch.searched), torch.Generator().manual_seed(0))
    return model


def test_every_mode_implements_the_arch_protocol():
    from nasforge.space.arch import FillArch, FixedArch, RecordingArch
    from nasforge.space.controller import Controller, ControllerArch
    space = Space(nb201, {"input_shape": (1, 8, 8), "n_out": 3}, args={"C": 2, "N": 1})
    controller = Controller(space.schema)
    modes = [FixedArch({}), RecordingArch(), FillArch({}, np.random.default_rng(0)), SupernetArch(Darts().mixer),
             ControllerArch(controller, None, None, 0.0)]
    assert all(isinstance(mode, Arch) for mode in modes)
    assert len({mode.mode for mode in modes}) == len(modes)


def test_the_supernet_holds_every_candidate_and_shares_decisions_not_weights():
    space = Space(nb201, {"input_shape": (1, 8, 8), "n_out": 3}, args={"C": 4, "N": 2})
    method = Darts()
    model, arch = build_supernet(space, method)
    mixed = [m for m in model.modules() if isinstance(m, MixedOp)]
    assert len(mixed) == 6 * 3 * 2  # six edges in each of 3 stages x 2 cells
    assert all(list(m.ops) == list(OPS) for m in mixed)
    assert list(arch.searched) == list(LABELS)  # one decision per edge label, asked 6 times each
    same_label = [m for m in mixed if m.label == "edge_1_0"]
    assert same_label[0].ops["nor_conv_3x3"][1].weight is not same_label[1].ops["nor_conv_3x3"][1].weight
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and any(m is b for x in mixed for b in x.modules())]
    assert bns and all(b.weight is None and not b.track_running_stats for b in bns)  # DARTS's batch norm


def test_a_decision_the_supernet_cannot_search_is_refused_naming_it_and_the_mode():
    def space_fn(arch, n_in, n_out):
        width = arch.int("width", 4, 16, step=4)
        act = arch.choice("act", {"relu": nn.ReLU, "tanh": nn.Tanh})
        return nn.Sequential(nn.Linear(n_in, width), act, nn.Linear(width, n_out))

    space = Space(space_fn, {"n_in": 4, "n_out": 3})
    with pytest.raises(UnsupportedDecision) as info:
        build_supernet(space, Darts())
    message = str(info.value)
    assert "'width'" in message and "supernet" in message and "pin" in message and "\n" not in message
    model, arch = build_supernet(space, Darts(pin={"width": 8}))  # pinned: fixed, and the rest searched
    assert model[0].out_features == 8 and list(arch.searched) == ["act"]
    with pytest.raises(ConfigError, match="never asks: 'depth'"):
        build_supernet(space, Darts(pin={"width": 8, "depth": 2}))


def test_a_one_shot_strategy_refuses_an_unsearchable_space_before_any_trial(tmp_path):
    with pytest.raises(UnsupportedDecision, match="'depth'"):
        nasforge.search("mlp", "iris", strategy="darts", out=tmp_path)
    assert not (tmp_path / CHECKPOINT).exists()


def _copy_shared_weights(supernet: nn.Module, child: nn.Module) -> None:
    """The child's weights are the supernet's weights of the chosen candidates."""
    shared = supernet.state_dict()
    state = {}
    for name, value in child.state_dict().items():
        parts = name.split(".")
        for i in range(len(parts), 0, -1):  # cells.0.edges.3.1.weight <- cells.0.edges.3.ops.<op>.1.weight
            prefix = ".".join(parts[:i])
            hits = [k for k in shared if k.startswith(prefix + ".ops.") and k.endswith("." + ".".join(parts[i:]))]
            if name in shared:
                state[name] = shared[name]
                break
            if len(hits) >= 1 and i < len(parts):
                op = child.get_submodule(prefix).op_name
                state[name] = shared[f"{prefix}.ops.{op}.{'.'.join(parts[i:])}"]
                break
        else:
            state[name] = value
    child.load_state_dict(state, strict=False)


def test_a_sampled_path_of_the_supernet_computes_the_child_network():
    """ENAS's premise: the supernet on one path is that architecture, with the shared weights."""
    space = Space(nb201, {"input_shape": (1, 8, 8), "n_out": 3}, args={"C": 4, "N": 1})
    method = Enas()
    torch.manual_seed(0)
    supernet = _supernet(space, method)
    arch = {label: op for label, op in zip(LABELS, ["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3",
                                                    "none", "nor_conv_3x3"])}
    method.mixer.sample = arch
    child = space.build(arch)
    _copy_shared_weights(supernet, child)
    x = torch.randn(5, 1, 8, 8)
    supernet.train()
    child.train()  # batch statistics in both
    assert torch.allclose(supernet(x), child(x), atol=1e-5)


def test_mixed_inputs_combine_as_the_chosen_ones_do():
    mixer = SampledPathMixer()
    mixed = MixedInputs("skips", ["a", "b", "c"], mixer)
    mixer.sample = {"skips": ["a", "c"]}
    tensors = {n: torch.full((1, 2), float(i + 1)) for i, n in enumerate("abc")}
    from nasforge.space.supernet import concat_inputs, sum_inputs
    assert torch.equal(sum_inputs(mixed, tensors), sum_inputs(["a", "c"], tensors))
    assert torch.equal(concat_inputs(mixed, tensors), torch.tensor([[1.0, 1.0, 0.0, 0.0, 3.0, 3.0]]))  # b's place: zeros


def test_darts_derivation_keeps_the_two_strongest_edges_by_their_strongest_non_none_op():
    space = Space(darts, {"input_shape": (12,), "n_out": 3}, args={"C": 2, "cells": 1, "nodes": 2})
    method = Darts()
    _supernet(space, method)
    mixer = method.mixer
    ops = list(mixer.domains["normal/node1/c0"].options)
    with torch.no_grad():
        for label in mixer.alpha:
            mixer.alpha[label].zero_()
        mixer.alpha["normal/node1/c0"][ops.index("none")] = 9.0  # strongest overall, but none
        mixer.alpha["normal/node1/c0"][ops.index("skip_connect")] = 1.0
        mixer.alpha["normal/node1/c1"][ops.index("sep_conv_3x3")] = 3.0
        mixer.alpha["normal/node1/node0"][ops.index("max_pool_3x3")] = 4.0
    derived = method.derive(None, None)
    assert derived["normal/node1"] == ["c1", "node0"]
    assert derived["normal/node1/c1"] == "sep_conv_3x3" and derived["normal/node1/node0"] == "max_pool_3x3"
    assert derived["normal/node1/c0"] == "skip_connect"  # an edge never takes none


class _Zero(nn.Module):
    def forward(self, x):
        return x * 0.0


def smooth_cell(arch, n_in, n_out):
    """A DARTS-style cell of smooth ops (no ReLU kink or max pool for a finite difference to cross)."""
    def ops():
        return {"none": _Zero, "tanh": lambda: nn.Sequential(nn.Linear(8, 8), nn.Tanh()),
                "linear": lambda: nn.Linear(8, 8), "skip": nn.Identity}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Linear(n_in, 8)
            self.chosen, self.edges = [], nn.ModuleList()
            for i in range(2):
                chosen = arch.inputs(f"n{i}", ["x"] + [f"n{j}" for j in range(i)], k=1)
                self.chosen.append(chosen)
                self.edges.append(nn.ModuleDict({j: arch.choice(f"n{i}/{j}", ops()) for j in chosen}))
            self.head = nn.Linear(8, n_out)

        def forward(self, x):
            states = {"x": torch.tanh(self.stem(x))}
            for i, (chosen, edges) in enumerate(zip(self.chosen, self.edges)):
                states[f"n{i}"] = sum_inputs(chosen, {j: (lambda j=j: edges[j](states[j])) for j in chosen})
            return self.head(states["n1"])
    return Net()


def test_second_order_gradient_is_the_unrolled_one():
    """DARTS's eq. 7-8: the finite difference gives the gradient through one virtual SGD step,
    which autograd computes exactly here by differentiating through the step."""
    data = load_dataset("iris")
    space = Space(smooth_cell, data.context())
    torch.manual_seed(0)
    method = Darts(order=2, w_momentum=0.0, w_weight_decay=0.0)
    model = _supernet(space, method)
    batches = Batches(data, 32, torch.Generator().manual_seed(1))
    x, y = next(batches.train())
    xv, yv = batches.val()
    lr = 0.1
    approx = method._unrolled_grads(model, batches, x, y, xv, yv, lr, 0.0)
    train_grads = torch.autograd.grad(task_loss(data, model(x), y), method.weights, create_graph=True)
    unrolled = {name: p - lr * g for (name, p), g in zip(model.named_parameters(), train_grads)}
    exact = torch.autograd.grad(task_loss(data, torch.func.functional_call(model, unrolled, (xv,)), yv), method.alphas)
    first = torch.autograd.grad(task_loss(data, model(xv), yv), method.alphas)
    a, e, f = (torch.cat([t.flatten() for t in ts]) for ts in (approx, exact, first))
    assert torch.norm(e - f) > 0.02 * torch.norm(e)  # the second-order term matters here
    assert torch.norm(a - e) < 1e-3 * torch.norm(e - f)  # and the finite difference gives it (measured: 4e-5)


def test_beta_decay_pulls_every_distribution_down_by_its_softmax():
    method = Darts(beta_decay=2.0)
    method.alphas = [torch.tensor([1.0, 0.0, -1.0], requires_grad=True), torch.tensor([0.5, 0.5], requires_grad=True)]
    (grad_a, grad_b) = torch.autograd.grad(method._regulariser(1.0), method.alphas)
    assert torch.allclose(grad_a, torch.softmax(method.alphas[0], -1) / 2)
    assert torch.allclose(grad_b, torch.softmax(method.alphas[1], -1) / 2)


@pytest.mark.parametrize("space_fn, args", [(enas_macro, {"C": 4, "layers": 4}), (enas_micro, {"C": 4, "N": 1, "nodes": 2})])
def test_enas_searches_macro_and_micro_spaces_and_derives_a_valid_architecture(tmp_path, space_fn, args):
    data = load_dataset("mnist1d")
    space = Space(space_fn, data.context(), args=args)
    method = Enas(epochs=2, batch_size=128, controller_steps=10, derive_samples=3)
    history = []
    derived = OneShotSearch(method, space, data, tmp_path, seed=0, record=lambda h: history.append(list(h))).run()
    space.validate(derived)
    assert [h[-1]["epoch"] for h in history] == [1, 2]
    assert len(method.controller.core.history) == 2 * 10  # REINFORCE was told every sampled reward
    dist = history[-1][-1]["distribution"]
    assert set(dist) == set(method.mixer.domains)
    assert all(abs(sum(p.values()) - 1) < 1e-6 for label, p in dist.items() if label.endswith("/op"))


def _record_stopping_after(epochs: int, store: list):
    class Killed(Exception):
        pass

    def record(history):
        store.append([dict(h) for h in history])
        if len(history) == epochs:
            raise Killed  # after the checkpoint of that epoch: as a kill there
    return record, Killed


SMALL = {"darts": {"epochs": 3, "batch_size": 256}, "enas": {"epochs": 3, "batch_size": 256, "controller_steps": 6,
                                                                "controller_batch": 3, "derive_samples": 3},
         "proxyless": {"epochs": 3, "batch_size": 256}}


@pytest.mark.parametrize("name", ONE_SHOT.names())
def test_a_search_resumed_from_its_checkpoint_ends_as_an_uninterrupted_one(tmp_path, name):
    """Contract of every one-shot method: its state_dict carries everything the next epochs use."""
    data = load_dataset("mnist1d")
    space = Space(enas_macro, data.context(), args={"C": 4, "layers": 3})

    def method():
        return ONE_SHOT.get(name)(**SMALL[name])

    whole = OneShotSearch(method(), space, data, tmp_path / "a", seed=3).run()
    seen: list = []
    record, killed = _record_stopping_after(2, seen)
    with pytest.raises(killed):
        OneShotSearch(method(), space, data, tmp_path / "b", seed=3, record=record).run()
    torch.manual_seed(12345)  # the resumed run must not depend on the state the process is in
    resumed = OneShotSearch(method(), space, data, tmp_path / "b", seed=3).run()
    assert resumed == whole
    first = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=False)
    second = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=False)
    assert first["history"] == [dict(h, seconds=a["seconds"]) for h, a in zip(second["history"], first["history"])]
    for key, value in first["model"].items():
        assert torch.equal(value, second["model"][key]), key


@pytest.mark.parametrize("name", ONE_SHOT.names())
def test_every_one_shot_method_refuses_what_it_cannot_search_and_is_seeded(tmp_path, name):
    with pytest.raises(UnsupportedDecision, match="'depth'"):
        build_supernet(Space(nasforge.spaces.mlp.mlp, {"n_in": 4, "n_out": 3}), ONE_SHOT.get(name)())
    data = load_dataset("mnist1d")
    space = Space(enas_macro, data.context(), args={"C": 4, "layers": 3})
    runs = [OneShotSearch(ONE_SHOT.get(name)(**SMALL[name]), space, data, tmp_path / str(i), seed=s).run()
            for i, s in enumerate((7, 7, 8))]
    assert runs[0] == runs[1]
    records = [torch.load(tmp_path / str(i) / CHECKPOINT, weights_only=False)["history"] for i in range(3)]
    assert [h["distribution"] for h in records[0]] == [h["distribution"] for h in records[1]]
    assert [h["distribution"] for h in records[0]] != [h["distribution"] for h in records[2]]


def test_a_one_shot_study_is_stored_reported_and_exported_like_any_other(tmp_path):
    from nasforge.cli import main
    from nasforge.report.html import write_report
    study = nasforge.search("enas_macro", "mnist1d", {"name": "enas", "args": SMALL["enas"]}, budget=1, trials=5,
                            space_args={"C": 4, "layers": 3}, out=tmp_path / "s")
    assert len(study.trials) == 1 and study.best.arch == study.store.get_meta("oneshot")[-1]["derived"]
    page = write_report(tmp_path / "s").read_text()
    assert 'id="oneshot"' in page and "Architecture weights per decision" in page and 'id="oneshot-derived"' in page
    assert main(["export", str(tmp_path / "s"), "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "arch.json").exists()
    assert main(["status", str(tmp_path / "s")]) == 0


DARTS_CONFIG = """\
space: {name: darts, args: {C: 2, cells: 1, nodes: 2}}
dataset: digits
strategy: {name: darts, args: {epochs: 3, batch_size: 128, order: 2}}
budget: 1
seed: 5
"""


def _search_process(config, out):
    import subprocess
    import sys
    return subprocess.Popen([sys.executable, "-m", "nasforge.cli", "search", str(config), "--out", str(out), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**__import__("os").environ,
                                                                                    "OMP_NUM_THREADS": "1"})


def _final(out):
    from nasforge.store.sqlite import SQLiteStore
    state = torch.load(out / CHECKPOINT, weights_only=False)
    store = SQLiteStore(out, read_only=True)
    try:
        trials, record = store.trials(), store.get_meta("oneshot")
    finally:
        store.close()
    return state["method"]["alpha"], trials, record


def test_darts_killed_mid_search_and_resumed_ends_with_the_same_architecture(tmp_path):
    """kill -9 in the middle of a (second-order) DARTS search, then `nasforge resume`: the same
    architecture weights and the same derived architecture as a search that never stopped."""
    import subprocess
    import sys
    import time
    config = tmp_path / "darts.yaml"
    config.write_text(DARTS_CONFIG)
    whole = _search_process(config, tmp_path / "whole")
    assert whole.wait(timeout=300) == 0, whole.stderr.read().decode()
    killed = _search_process(config, tmp_path / "killed")
    checkpoint = tmp_path / "killed" / CHECKPOINT
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it in the epoch after its first checkpoint
        if checkpoint.exists() and torch.load(checkpoint, weights_only=False)["epoch"] >= 1:
            break
        time.sleep(0.05)
    killed.kill()
    killed.wait()
    assert torch.load(checkpoint, weights_only=False)["epoch"] < 3, "the search ended before the kill"
    resumed = subprocess.run([sys.executable, "-m", "nasforge.cli", "resume", str(tmp_path / "killed"), "--quiet"],
                             capture_output=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr.decode()
    alpha_a, trials_a, record_a = _final(tmp_path / "whole")
    alpha_b, trials_b, record_b = _final(tmp_path / "killed")
    assert alpha_a.keys() == alpha_b.keys()
    for label in alpha_a:
        assert torch.allclose(alpha_a[label], alpha_b[label], atol=1e-6), label
    assert [t.arch for t in trials_a] == [t.arch for t in trials_b] and len(trials_a) == 1
    assert trials_a[0].arch == record_a[-1]["derived"]  # the trial retrains what the search derived
    assert [r["epoch"] for r in record_b] == [1, 2, 3]
    assert [r["derived"] for r in record_a] == [r["derived"] for r in record_b]


def test_the_mnas_space_is_a_supernet_of_its_ops_once_the_rest_is_pinned():
    from nasforge.spaces.mnas import OPS as MNAS_OPS, mnas
    space = Space(mnas, {"input_shape": (1, 28, 28), "n_out": 10})
    sample = space.sample(np.random.default_rng(0))
    pinned = {label: value for label, value in sample.items() if not label.endswith("/op")}
    with pytest.raises(UnsupportedDecision, match="'block_0/kernel'"):
        build_supernet(space, Darts())
    model, arch = build_supernet(space, Darts(pin=pinned))
    assert list(arch.searched) == [f"block_{i}/op" for i in range(7)]
    mixed = [m for m in model.modules() if isinstance(m, MixedOp)]
    assert len(mixed) == sum(len(getattr(model, f"block_{i}")) for i in range(7))
    assert all(list(m.ops) == list(MNAS_OPS) for m in mixed)
    out = _supernet(space, Darts(pin=pinned))(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10)


def _chain_with_a_dead_end(arch, n_in, n_out):
    """Four layers, each dense, identity or zero: a zero layer cuts the signal (a constant
    prediction), so most random architectures are useless and a working method must avoid it."""
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(n_in, 32), nn.ReLU()]
    for i in range(4):
        layers.append(arch.choice(f"layer{i}", {"dense": lambda: nn.Sequential(nn.Linear(32, 32), nn.ReLU()),
                                                "identity": nn.Identity, "zero": _Zero}))
    return nn.Sequential(*layers, nn.Linear(32, n_out))


@pytest.mark.parametrize("name", ONE_SHOT.names())
def test_the_derived_architecture_beats_random_architectures_of_the_space(tmp_path, name):
    """A small configuration of the benchmark (benchmarks/oneshot.py): the method's architecture,
    retrained, against the mean of 10 random ones retrained alike."""
    kw = {"budget": 3, "objective": "val_accuracy", "trainer": {"lr": 0.01, "batch_size": 64}}
    random = nasforge.search(_chain_with_a_dead_end, "digits", "random", trials=10, seed=0, out=tmp_path / "r", **kw)
    random_mean = float(np.mean([t.metrics["val_accuracy"] for t in random.trials]))
    args = {"darts": {"epochs": 4, "batch_size": 64}, "enas": {"epochs": 4, "batch_size": 64, "controller_steps": 20},
            "proxyless": {"epochs": 12, "warmup": 2, "batch_size": 64, "alpha_lr": 0.05}}[name]  # one path per step: slower
    for seed in range(2):
        found = nasforge.search(_chain_with_a_dead_end, "digits", {"name": name, "args": args}, trials=1, seed=seed,
                                out=tmp_path / f"{name}{seed}", **kw)
        assert "zero" not in found.best.arch.values(), found.best.arch
        assert found.best.metrics["val_accuracy"] > random_mean + 0.2, (found.best.metrics, random_mean)


def test_one_shot_mistakes_are_named_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="dataset: none"):  # before the space asks for the data's context
        nasforge.search(enas_macro, "none", "darts", evaluate=lambda model, data, budget, state: {"val_loss": 1.0},
                        out=tmp_path / "a")
    with pytest.raises(ConfigError, match="scheduler 'hyperband' would cut that short"):
        nasforge.search("enas_macro", "mnist1d", "enas", "hyperband", out=tmp_path / "b")
    with pytest.raises(UnsupportedDecision) as info:  # every decision to pin, in one message
        nasforge.search("mlp", "iris", "darts", out=tmp_path / "c")
    assert set(info.value.decisions) >= {"depth", "width_0", "activation"}, info.value.decisions


def test_a_sampled_path_that_chose_no_input_sums_to_zeros():
    from nasforge.space.supernet import sum_inputs
    mixer = SampledPathMixer()
    mixed = MixedInputs("skips", ["a", "b"], mixer)
    mixer.sample = {"skips": []}
    out = sum_inputs(mixed, {"a": torch.ones(2, 3), "b": lambda: torch.ones(2, 3)})
    assert torch.equal(out, torch.zeros(2, 3))
    with pytest.raises(Exception, match="k=None may choose none"):
        sum_inputs([], {})
