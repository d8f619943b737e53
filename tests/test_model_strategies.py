"""Behaviour of the model-based strategies (GP BO, regularised evolution) beyond the contract suite."""
from __future__ import annotations

import json

import numpy as np
import pytest
from torch import nn

from conftest import nested_space
from nasforge.errors import ConfigError
from nasforge.space import (CategoricalDomain, Condition, Decision, Encoder, FloatDomain, InputsDomain, IntDomain,
                            Schema, Space)
from nasforge.spaces.mlp import mlp
from nasforge.space.codes import ArrayCodes as _Codes
from nasforge.strategies.bayesopt import GPBayesOpt, expected_improvement
from nasforge.space.mutation import mutate
from nasforge.strategies.evolution import RegularizedEvolution
from nasforge.strategies.random import RandomSearch
from nasforge.types import Result

SEEDS = range(10)


def mlp_schema(**args) -> Schema:
    return Space(mlp, {"n_in": 4, "n_out": 3}, args=args).schema


def true_loss(arch) -> float:
    """0 at depth 3, widths 40 and tanh; about 1.2 for the best of 60 random samples."""
    widths = [arch[f"width_{i}"] for i in range(arch["depth"])]
    return abs(arch["depth"] - 3) + sum(abs(w - 40) / 40 for w in widths) + float(arch["activation"] != "tanh")


def best_after(strategy, seed: int, n: int = 60) -> float:
    """Best true loss among ``n`` asks; the strategy is told the loss plus noise."""
    strategy.setup(mlp_schema(), np.random.default_rng(seed))
    noise = np.random.default_rng(1000 + seed)
    best = np.inf
    for _ in range(n):
        arch = strategy.ask()
        best = min(best, true_loss(arch))
        strategy.tell(arch, Result({}, true_loss(arch) + 0.05 * float(noise.normal()), 1.0))
    return best


def ok(loss: float, budget: float = 1.0) -> Result:
    return Result({"val_loss": loss}, loss, budget)


FAILED = Result({}, None, 1.0, failed=True)


# -- both strategies ------------------------------------------------------------------------------

@pytest.mark.parametrize("make, factor", [
    (lambda: GPBayesOpt(n_initial=10, n_candidates=500), 0.3),
    (lambda: RegularizedEvolution(population_size=10, sample_size=3), 0.75),
], ids=["bayesopt", "evolution"])
def test_beats_random_search_at_the_same_number_of_asks(make, factor):
    random = np.mean([best_after(RandomSearch(), seed) for seed in SEEDS])
    model = np.mean([best_after(make(), seed) for seed in SEEDS])
    assert model < factor * random, (model, random)


@pytest.mark.parametrize("call, message", [
    (lambda: GPBayesOpt(n_candidates=0), r"Invalid n_candidates: 0 \(must be an int >= 1\)"),
    (lambda: GPBayesOpt(batch_size=2.5), r"Invalid batch_size: 2.5"),
    (lambda: GPBayesOpt(xi=-1), r"Invalid xi: -1"),
    (lambda: GPBayesOpt(max_points=1), r"Invalid max_points: 1"),
    (lambda: GPBayesOpt(min_points=1), r"Invalid min_points: 1"),
    (lambda: RegularizedEvolution(population_size=0), r"Invalid population_size: 0 \(must be an int >= 2\)"),
    (lambda: RegularizedEvolution(population_size=5, sample_size=6), r"Invalid sample_size: 6 .*population_size=5"),
    (lambda: RegularizedEvolution(sample_size=0), r"Invalid sample_size: 0"),
])
def test_constructor_errors_name_the_bad_value(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


# -- expected improvement -------------------------------------------------------------------------

def test_ei_is_zero_without_uncertainty_at_or_above_the_best():
    ei = expected_improvement(np.array([1.0, 2.0, 0.5]), np.zeros(3), best=1.0, xi=0.0)
    assert ei.tolist() == [0.0, 0.0, 0.5]  # a sure improvement of 0.5 is worth 0.5
    assert expected_improvement(np.array([0.995]), np.zeros(1), best=1.0, xi=0.01)[0] == 0.0


@pytest.mark.parametrize("mu", [0.5, 1.0, 1.5])
def test_ei_grows_with_sigma_and_falls_with_mu(mu):
    sigmas = np.linspace(0.0, 3.0, 31)
    by_sigma = expected_improvement(np.full(31, mu), sigmas, best=1.0, xi=0.01)
    assert np.all(np.diff(by_sigma) >= 0) and by_sigma[-1] > by_sigma[0]
    by_mu = expected_improvement(np.linspace(-1, 3, 41), np.full(41, 0.5), best=1.0)
    assert np.all(np.diff(by_mu) < 0) and np.all(by_mu > 0)


def test_ei_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mu, sigma, best, xi = 1.2, 0.7, 1.0, 0.05
    samples = rng.normal(mu, sigma, 400_000)
    expected = np.mean(np.maximum(best - xi - samples, 0.0))
    assert expected_improvement(np.array([mu]), np.array([sigma]), best, xi)[0] == pytest.approx(expected, rel=0.01)


# -- GP Bayesian optimisation ---------------------------------------------------------------------

def tiny_schema() -> Schema:
    """24 architectures: depth 1 (3 widths) or 2 (9 width pairs), times 2 activations."""
    return mlp_schema(max_depth=2, min_width=2, max_width=4, activations=["relu", "tanh"])


def key(arch) -> str:
    return json.dumps(arch, sort_keys=True)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_bo_never_repeats_while_alternatives_exist(batch_size):
    def fresh() -> GPBayesOpt:
        bo = GPBayesOpt(n_initial=3, n_candidates=50, batch_size=batch_size)
        bo.setup(tiny_schema(), np.random.default_rng(0))
        return bo

    bo = fresh()
    asked = []
    for i in range(24):
        if i == 13:  # resuming keeps what was asked and is still pending
            state = json.loads(json.dumps(bo.state_dict()))
            bo = fresh()
            bo.load_state_dict(state)
        arch = bo.ask()
        asked.append(arch)
        if i % 3 != 2:  # leave every third pending: pending ones must not be proposed again either
            bo.tell(arch, ok(true_loss(arch)))
    assert len({key(a) for a in asked}) == 24  # the whole space, each architecture once
    # once the space is exhausted, a repeat rather than an error
    assert key(bo.ask()) in {key(a) for a in asked}


def test_bo_batch_ranks_once_per_batch(monkeypatch):
    bo = GPBayesOpt(n_initial=6, n_candidates=100, batch_size=5)
    steps = []
    original = bo._model_step
    monkeypatch.setattr(bo, "_model_step", lambda: steps.append(1) or original())
    bo.setup(mlp_schema(), np.random.default_rng(0))
    for _ in range(16):
        arch = bo.ask()
        bo.tell(arch, ok(true_loss(arch)))
    assert len(steps) == 2  # asks 7-11 and 12-16 each come from one fit


def test_bo_survives_failures_and_state_round_trip_mid_batch():
    bo = GPBayesOpt(n_initial=4, n_candidates=100, batch_size=3)
    bo.setup(mlp_schema(), np.random.default_rng(2))
    for i in range(11):
        arch = bo.ask()
        bo.tell(arch, FAILED if i % 3 == 0 else ok(true_loss(arch)))
    assert bo.queue  # in the middle of a batch
    state = json.loads(json.dumps(bo.state_dict()))
    again = GPBayesOpt(n_initial=4, n_candidates=100, batch_size=3)
    again.setup(mlp_schema(), np.random.default_rng(2))
    again.load_state_dict(state)
    for _ in range(5):
        a, b = bo.ask(), again.ask()
        assert a == b
        bo.tell(a, ok(true_loss(a)))
        again.tell(b, ok(true_loss(b)))


def test_bo_models_the_largest_budget_with_enough_points():
    """Short training favours shallow nets, long training deep ones: once 3 long results are in,
    BO follows them (BOHB), while before it follows the many short ones."""
    schema = mlp_schema()
    bo = GPBayesOpt(n_initial=0, n_candidates=300, min_points=3)
    bo.setup(schema, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    for _ in range(20):
        arch = schema.sample(rng)
        bo.tell(arch, ok(float(arch["depth"]), budget=1.0))
    shallow = [bo.ask()["depth"] for _ in range(5)]
    for depth in (1, 3, 6):
        arch = {**schema.sample(rng), "depth": depth}
        arch = schema.repair(arch, rng)
        bo.tell(arch, ok(float(6 - depth), budget=9.0))
    deep = [bo.ask()["depth"] for _ in range(5)]
    assert np.mean(shallow) <= 2 and np.mean(deep) >= 5, (shallow, deep)


def schema_with_every_domain() -> Schema:
    return Schema((
        Decision("kind", CategoricalDomain(("a", "b", 3))),
        Decision("lr", FloatDomain(1e-4, 1e-1, log=True)),
        Decision("units", IntDomain(8, 64, step=8), (Condition("kind", ("a", 3)),)),
        Decision("heads", IntDomain(1, 300, log=True), (Condition("lr", low=1e-3, high=1e-2),)),
        Decision("skip", InputsDomain(("x", "y", "z"), None), (Condition("kind", ("b",)),)),
        Decision("pair", InputsDomain(("p", "q", "r", "s"), 2)),
        Decision("drop", FloatDomain(0.0, 0.5), (Condition("units", low=32, high=64),)),
    ))


@pytest.mark.parametrize("make_schema", [mlp_schema, schema_with_every_domain,
                                         lambda: Space(nested_space).schema], ids=["mlp", "domains", "nested"])
def test_vectorised_candidates_are_valid_and_encode_like_the_encoder(make_schema):
    schema = make_schema()
    rng = np.random.default_rng(0)
    codes = _Codes(schema)
    fresh = codes.repair(np.full((300, len(schema)), np.nan), rng)
    mutants = codes.mutate(fresh, rng)
    for batch in (fresh, mutants):
        archs = [codes.to_arch(row) for row in batch]
        assert all(schema.repair(a, rng) == a for a in archs)  # valid, nothing missing or inactive
        np.testing.assert_array_equal(codes.encode(batch), Encoder(schema).encode_many(archs))
        np.testing.assert_array_equal(np.array([codes.from_arch(a) for a in archs]), batch)
    changed = [a != b for a, b in zip(map(codes.to_arch, fresh), map(codes.to_arch, mutants))]
    assert np.mean(changed) > 0.9


# -- regularised evolution ------------------------------------------------------------------------

def test_evolution_keeps_population_size_and_removes_the_oldest():
    evo = RegularizedEvolution(population_size=5, sample_size=2)
    evo.setup(mlp_schema(), np.random.default_rng(0))
    told = []
    for _ in range(12):
        arch = evo.ask()
        evo.tell(arch, ok(true_loss(arch)))
        told.append(arch)
        assert len(evo.population) == min(len(told), 5)
    assert [m["arch"] for m in evo.population] == told[-5:]


def test_evolution_never_chooses_a_failed_parent():
    """A child of the one healthy member keeps at least two of its three traits; a child of a
    failed member (depth 6, width_0 2, relu) keeps at most one of them."""
    schema = mlp_schema()
    evo = RegularizedEvolution(population_size=4, sample_size=4)
    evo.setup(schema, np.random.default_rng(0))
    healthy = {"depth": 1, "width_0": 50, "activation": "tanh"}
    for i in range(3):
        arch = {"depth": 6, **{f"width_{j}": 2 + i for j in range(6)}, "activation": "relu"}
        evo.tell(arch, FAILED)
    evo.tell(healthy, ok(1.0))
    for _ in range(50):
        child = evo.ask()
        traits = [child["depth"] == 1, child["width_0"] == 50, child["activation"] == "tanh"]
        assert sum(traits) >= 2, child


def test_evolution_asks_before_any_tell_and_with_only_failures():
    schema = mlp_schema()
    evo = RegularizedEvolution(population_size=3, sample_size=2)
    evo.setup(schema, np.random.default_rng(0))
    archs = [evo.ask() for _ in range(10)]  # parallel workers: nothing told yet
    for arch in archs[:3]:
        evo.tell(arch, FAILED)
    archs.append(evo.ask())  # a full population of failures: random again, no error
    assert all(schema.repair(a, np.random.default_rng(0)) == a for a in archs)


def test_evolution_updates_a_member_told_again_at_a_larger_budget():
    evo = RegularizedEvolution(population_size=3, sample_size=2)
    evo.setup(mlp_schema(), np.random.default_rng(0))
    arch = evo.ask()
    evo.tell(arch, ok(2.0, budget=1.0))
    evo.tell(arch, Result({"val_loss": 1.0}, 1.0, 3.0, resumed=True))
    assert [(m["loss"], m["budget"]) for m in evo.population] == [(1.0, 3.0)]


def test_evolution_adds_a_new_evaluation_equal_to_a_member_as_the_youngest():
    """Aging evolution with a duplicate: the child joins as the youngest (the oldest dies) and its
    ask is no longer pending, so a population of 3 on a tiny space keeps breeding."""
    schema = Space(lambda arch: nn.Linear(1, arch.categorical("w", [1, 2])), {}).schema
    evo = RegularizedEvolution(population_size=3, sample_size=2)
    evo.setup(schema, np.random.default_rng(0))
    for step in range(12):
        assert evo.ready()
        arch = evo.ask()
        evo.tell(arch, ok(float(step)))
        assert evo.pending == 0
    assert [m["loss"] for m in evo.population] == [9.0, 10.0, 11.0]


def test_mutate_changes_exactly_one_decision_unless_depth_moves():
    schema = mlp_schema()
    rng = np.random.default_rng(0)
    for _ in range(300):
        parent = schema.sample(rng)
        child = mutate(schema, parent, rng)
        assert schema.repair(child, rng) == child and child != parent
        if child["depth"] == parent["depth"]:
            assert sum(child[k] != parent[k] for k in parent) == 1
        else:
            shared = [f"width_{i}" for i in range(min(child["depth"], parent["depth"]))] + ["activation"]
            assert all(child[k] == parent[k] for k in shared)
