from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch
from torch import nn

# op latency tables are cached per machine in the user's cache directory; tests keep theirs apart
os.environ.setdefault("NASFORGE_CACHE_DIR", tempfile.mkdtemp(prefix="nasforge-test-cache-"))


@pytest.fixture(autouse=True)
def _quiet_threads():
    torch.set_num_threads(1)  # tests are small; one thread keeps timings steady on 2 cores
    yield


def nested_space(arch, n_in: int = 4, n_out: int = 3) -> nn.Module:
    """A space with nested conditions: a block kind chooses which sub-decisions exist."""
    n_blocks = arch.int("n_blocks", 1, 3)
    layers: list[nn.Module] = []
    width = n_in
    for i in range(n_blocks):
        kind = arch.categorical(f"kind_{i}", ["linear", "residual"])
        if kind == "linear":
            out = arch.int(f"units_{i}", 4, 16, step=4)
            layers += [nn.Linear(width, out), nn.ReLU()]
            width = out
        else:
            act = arch.choice(f"act_{i}", {"relu": nn.ReLU, "tanh": nn.Tanh})
            layers += [nn.Linear(width, width), act]
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray cluster of three nodes on this machine: a head that runs no actor (0 CPUs) and two
    nodes of one CPU each. Tests that use it carry ``pytest.mark.xdist_group("ray")``: they run in
    one worker process, one module's cluster at a time."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def split_every_poll(monkeypatch):
    """Worker processes train a shard of every poll: test studies are small, and by default
    their polls would all train in the driver (``ShardPlan.min_split_us``)."""
    from nasforge.execution.batch_pool import ShardPlan

    monkeypatch.setattr(ShardPlan, "min_split_us", 0.0)
    monkeypatch.setattr(ShardPlan, "remote_us", 0.0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def hard_latency_study(out):
    """A grid over four MLP widths whose accuracy and latency both grow with the width, searched
    for val_accuracy under a hard 3 ms latency target: width 30 is the best that meets it."""
    import nasforge

    def evaluate(model, data, budget, state):
        width = model[1].out_features
        return {"val_accuracy": 0.5 + width / 100, "latency_ms": width / 10.0}  # wider: better and slower

    grid = {"name": "grid", "args": {"values": {"depth": [1], "width_0": [10, 20, 30, 40], "activation": ["relu"]}}}
    return nasforge.search("mlp", "iris", grid, evaluate=evaluate, budget=1, trials=4, objective="val_accuracy",
                           mode="max", out=out, constraint={"metric": "latency_ms", "target": 3.0, "kind": "hard"})
