"""Deliberately awkward search spaces: every registered strategy must search each of them, or
refuse it at the start with one line naming the decision (tests/test_strategy_contract.py)."""
from __future__ import annotations

from torch import nn


def _head(n_in: int, width: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, n_out))


def two_parent_conditions(arch, n_in: int = 4, n_out: int = 3) -> nn.Module:
    """A node's allowed ops depend on two earlier decisions, the link pattern and the previous
    node's op: where 'id' is not allowed the op is asked under a second label, with fewer options
    (a condition 'link is chain or previous op is not id' that no single-parent condition states)."""
    link = arch.categorical("link", ["chain", "skip", "dense"])
    layers: list[nn.Module] = []
    previous = "relu"
    for node in range(3):
        if link != "chain" and previous == "id":
            op = arch.categorical(f"op{node}_no_id", ["relu", "tanh"])
        else:
            op = arch.categorical(f"op{node}", ["relu", "tanh", "id"])
        layers.append({"relu": nn.ReLU(), "tanh": nn.Tanh(), "id": nn.Identity()}[op])
        previous = op
    return nn.Sequential(_head(n_in, 8, 8), *layers, nn.Linear(8, n_out))


def shared_label(arch, n_in: int = 4, n_out: int = 3) -> nn.Module:
    """The same label ('act') is reached from two branches."""
    kind = arch.categorical("kind", ["wide", "deep"])
    if kind == "wide":
        width = arch.int("wide_units", 8, 32, step=8)
        act = arch.choice("act", {"relu": nn.ReLU, "gelu": nn.GELU})
        body = [nn.Linear(8, width), act, nn.Linear(width, 8)]
    else:
        depth = arch.int("deep_layers", 1, 3)
        body = []
        for _ in range(depth):
            body += [nn.Linear(8, 8), arch.choice("act", {"relu": nn.ReLU, "gelu": nn.GELU})]
    return nn.Sequential(_head(n_in, 8, 8), *body, nn.Linear(8, n_out))


def nested_choice(arch, n_in: int = 4, n_out: int = 3) -> nn.Module:
    """An arch.choice whose candidates ask decisions of their own."""
    def mlp() -> nn.Module:
        units = arch.int("mlp_units", 4, 16, step=4)
        return nn.Sequential(nn.Linear(8, units), arch.choice("mlp_act", {"relu": nn.ReLU, "tanh": nn.Tanh}),
                             nn.Linear(units, 8))

    def gated() -> nn.Module:
        return nn.Sequential(nn.Linear(8, 8), arch.choice("gate", {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh}))

    block = arch.choice("block", {"mlp": mlp, "gated": gated, "skip": nn.Identity})
    return nn.Sequential(_head(n_in, 8, 8), block, nn.Linear(8, n_out))


def input_sets(arch, n_in: int = 4, n_out: int = 3) -> nn.Module:
    """arch.inputs with any number (k=None) and with exactly k=2."""
    any_skips = arch.inputs("any_skips", ["layer_0", "layer_1", "layer_2"], None)
    two = arch.inputs("two_of", ["layer_0", "layer_1", "layer_2", "layer_3"], 2)
    width = 4 + 4 * len(any_skips) + len(two)
    return nn.Sequential(_head(n_in, width, n_out))


def log_int(arch, n_in: int = 4, n_out: int = 3) -> nn.Module:
    """A log-scaled integer over a wide range."""
    return _head(n_in, arch.int("units", 4, 512, log=True), n_out)


def floats(arch, n_in: int = 4, n_out: int = 3) -> nn.Module:
    """Continuous decisions, one log-scaled."""
    p = arch.float("dropout", 0.0, 0.5)
    scale = arch.float("init_scale", 1e-3, 1.0, log=True)
    return nn.Sequential(_head(n_in, 8, 8), nn.Dropout(p), nn.Linear(8, n_out, bias=scale > 0.1))


def six_archs(arch, n_in: int = 4, n_out: int = 3) -> nn.Module:
    """Only 6 architectures."""
    width = arch.categorical("width", [4, 8, 16])
    act = arch.categorical("act", ["relu", "tanh"])
    return nn.Sequential(_head(n_in, width, width), nn.ReLU() if act == "relu" else nn.Tanh(), nn.Linear(width, n_out))


def growing(arch, n_in: int = 4, n_out: int = 3) -> nn.Module:
    """An int that other decisions depend on (progressive search grows it), adding a float and an
    inputs decision as it grows."""
    depth = arch.int("depth", 1, 3)
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(arch.choice(f"act{i}", {"relu": nn.ReLU, "tanh": nn.Tanh}))
        if i == 1:
            layers.append(nn.Dropout(arch.float("dropout1", 0.0, 0.5)))
        if i == 2:
            arch.inputs("skips2", ["layer0", "layer1"], None)
    return nn.Sequential(_head(n_in, 8, 8), *layers, nn.Linear(8, n_out))


AWKWARD = {f.__name__: f for f in (two_parent_conditions, shared_label, nested_choice, input_sets, log_int, floats,
                                   six_archs, growing)}


def lookup(arch: dict) -> float:
    """A deterministic pseudo-score of an architecture (a stand-in for a tabular benchmark)."""
    import hashlib
    import json
    digest = hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "little") / 2**32
