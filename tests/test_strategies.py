"""One contract suite run over every registered strategy (STYLE habit 8)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from nasforge.errors import ConfigError
from nasforge.space import Space
from nasforge.spaces.mlp import mlp
from nasforge.strategies import ASK_TELL, STRATEGIES
from nasforge.strategies.grid import GridSearch
from nasforge.types import Result

SMALL_GRID = {"depth": [1, 2], "width_0": [4, 8], "width_1": [4, 8]}


def make(name: str):
    cls = STRATEGIES.get(name)
    small = {"grid": {"values": SMALL_GRID}, "bayesopt": {"n_initial": 3, "n_candidates": 200},
             "evolution": {"population_size": 4, "sample_size": 2},
             "reinforce": {"batch_size": 3}, "ppo": {"batch_size": 3, "epochs": 2},
             "pnas": {"initial": 3, "beam": 2, "surrogate_args": {"members": 2, "epochs": 5}},
             "predictor": {"n_initial": 3, "n_candidates": 200, "batch_size": 2}}
    return cls(**small.get(name, {}))


def schema():
    return Space(mlp, {"n_in": 4, "n_out": 3}).schema


def drive(strategy, n: int, seed: int = 0):
    """ask/tell n times on a synthetic objective; returns the asked architectures."""
    strategy.setup(schema(), np.random.default_rng(seed))
    out = []
    for _ in range(n):
        arch = strategy.ask()
        if arch is None:
            break
        out.append(arch)
        loss = sum(v for k, v in arch.items() if k.startswith("width")) / 100.0
        strategy.tell(arch, Result({"val_loss": loss}, loss, 1.0))
    return out


@pytest.mark.parametrize("name", ASK_TELL.names())  # one-shot ones: test_oneshot.py
def test_asks_are_valid_architectures(name):
    space = Space(mlp, {"n_in": 4, "n_out": 3})
    for arch in drive(make(name), 8):
        space.validate(arch)
        json.dumps(arch)  # plain JSON


@pytest.mark.parametrize("name", ASK_TELL.names())  # one-shot ones: test_oneshot.py
def test_same_seed_same_sequence(name):
    assert drive(make(name), 8, seed=3) == drive(make(name), 8, seed=3)


@pytest.mark.parametrize("name", ASK_TELL.names())  # one-shot ones: test_oneshot.py
def test_state_dict_round_trip_continues_identically(name):
    a = make(name)
    drive(a, 4, seed=1)
    state = json.loads(json.dumps(a.state_dict()))  # must survive JSON
    b = make(name)
    b.setup(schema(), np.random.default_rng(1))
    b.load_state_dict(state)
    assert [a.ask() for _ in range(3)] == [b.ask() for _ in range(3)]


@pytest.mark.parametrize("name", ASK_TELL.names())  # one-shot ones: test_oneshot.py
def test_reproducible_in_another_process(name):
    code = (
        "import json, sys; sys.path.insert(0, 'tests');"
        "from test_strategies import drive, make;"
        f"print(json.dumps(drive(make({name!r}), 6, seed=7)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == drive(make(name), 6, seed=7)


def test_grid_enumerates_conditional_grid_exactly():
    archs = drive(GridSearch(values=SMALL_GRID), 100)
    # depth 1: 2 widths x 3 activations; depth 2: 2 x 2 x 3
    assert len(archs) == 6 + 12
    assert len({json.dumps(a, sort_keys=True) for a in archs}) == 18
    assert all("width_1" not in a for a in archs if a["depth"] == 1)


def test_grid_errors_name_the_problem():
    with pytest.raises(ConfigError, match="more than max_size"):
        GridSearch().setup(schema(), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="unknown decision"):
        GridSearch(values={"depht": [1]}).setup(schema(), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="outside its domain"):
        GridSearch(values={"depth": [9]}).setup(schema(), np.random.default_rng(0))


def test_grid_shuffle_is_seeded_permutation():
    plain = drive(GridSearch(values=SMALL_GRID), 100)
    shuffled = drive(GridSearch(values=SMALL_GRID, shuffle=True), 100, seed=5)
    assert shuffled != plain
    assert sorted(map(json.dumps, shuffled)) == sorted(map(json.dumps, plain))


def test_registry_lists_names_on_unknown():
    with pytest.raises(ConfigError, match="unknown strategy 'nope'; available: .*random"):
        STRATEGIES.get("nope")
