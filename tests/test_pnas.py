"""PNAS: the cell space, the progressive strategy, the surrogates and predictor-guided search."""
from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
import torch

import nasforge
from nasforge.errors import ConfigError, DataError, SpaceError
from nasforge.predictors import SURROGATES, spearman
from nasforge.predictors.tokens import Tokens
from nasforge.report.html import write_report
from nasforge.space import Space
from nasforge.space.enumeration import count, all_options
from nasforge.spaces.pnas import pnas
from nasforge.strategies.predictor import PredictorGuided
from nasforge.strategies.progressive import ProgressiveSearch
from nasforge.strategies.random import RandomSearch
from nasforge.types import Result

GOOD = {"sep_conv_3x3": 1.0, "sep_conv_5x5": 0.8, "max_pool_3x3": 0.5, "avg_pool_3x3": 0.3, "identity": 0.0}


def pnas_space(**args):
    return Space(pnas, {"input_shape": (1, 40), "n_out": 10, "max_blocks": 3, **args})


def synthetic_loss(arch) -> float:
    """A cell's quality, no training: the mean over its blocks of its ops' worth, a bonus for a
    block reading the block before it, and a little for size; its best is 3 blocks of sep 3x3 in
    a chain, and a random cell is rarely near it."""
    blocks = arch["blocks"]
    worth = []
    for b in range(blocks):
        w = GOOD[arch[f"block{b}/op1"]] + GOOD[arch[f"block{b}/op2"]]
        w += 0.6 * (b > 0 and arch[f"block{b}/input1"] == [f"block{b - 1}"])
        worth.append(w)
    return -(sum(worth) / blocks + 0.1 * blocks)


def drive(strategy, schema, n, seed, loss=synthetic_loss):
    strategy.setup(schema, np.random.default_rng(seed))
    asked = []
    while len(asked) < n:
        arch = strategy.ask()
        if arch is None:
            break
        asked.append(arch)
        value = loss(arch)
        strategy.tell(arch, Result({"val_loss": value}, value, 1.0))
    return asked


# --- the space -------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, stem_stride", [((1, 40), 1), ((1, 16, 16), 2), ((64,), 1)])
def test_cells_of_every_size_build_and_run_in_1d_and_2d(shape, stem_stride):
    space = Space(pnas, {"input_shape": shape, "n_out": 3, "max_blocks": 3, "stem_stride": stem_stride,
                         "ops": ["identity", "sep_conv_7x7", "conv_1x7_7x1", "dil_conv_3x3", "avg_pool_3x3"]})
    rng = np.random.default_rng(0)
    for blocks in (1, 2, 3):
        arch = space.schema.repair({"blocks": blocks}, rng)
        model = space.build(arch)
        out = model(torch.randn(4, *shape))
        out.sum().backward()
        assert out.shape == (4, 3)


def test_blocks_is_a_decision_and_each_block_asks_inputs_ops_and_combine():
    schema = Space(pnas, {"input_shape": (1, 40), "n_out": 3, "max_blocks": 3, "combine": ["add", "concat"]}).schema
    assert schema["blocks"].domain.values() == [1, 2, 3]
    assert not schema["block0/op1"].conditional
    assert schema["block2/input2"].conditions[0].values == (3,)
    assert schema["block1/input1"].domain.candidates == ("c0", "c1", "block0")
    assert "block0/combine" in schema
    # one-block cells: 2 inputs x 2 inputs x 5 ops x 5 ops x 2 combines
    assert count(schema, all_options(schema), {"blocks": 1}) == 2 * 2 * 5 * 5 * 2


def test_a_cell_outputs_the_blocks_no_other_block_reads():
    space = pnas_space(C=4)
    chain = {"blocks": 2, "block0/input1": ["c0"], "block0/op1": "identity", "block0/input2": ["c1"],
             "block0/op2": "identity", "block1/input1": ["block0"], "block1/op1": "identity",
             "block1/input2": ["c1"], "block1/op2": "identity"}
    side = {**chain, "block1/input1": ["c1"]}
    assert space.build(chain).cells[0].channels == 4  # block0 is read by block1: only block1 is output
    assert space.build(side).cells[0].channels == 8  # both are output


@pytest.mark.parametrize("args, says", [({"ops": ["sep_conv_9x9"]}, "unknown"), ({"ops": []}, "non-empty"),
                                        ({"ops": ["identity", "identity"]}, "repeated"), ({"combine": ["mul"]}, "allowed: add, concat"),
                                        ({"max_blocks": 0}, "max_blocks")])
def test_bad_space_arguments_name_what_is_allowed(args, says):
    with pytest.raises(SpaceError, match=says):
        pnas_space(**args).schema


def test_the_surrogates_tokens_share_a_role_across_blocks():
    schema = pnas_space().schema
    tokens = Tokens(schema)
    arch = schema.repair({"blocks": 2, "block0/op1": "sep_conv_3x3", "block1/op1": "sep_conv_3x3"}, np.random.default_rng(0))
    ids, _ = tokens.encode(arch)
    assert len(ids) == 8  # 4 per block; blocks itself gives no token
    assert ids[1] == ids[5]  # op1 = sep_conv_3x3 in block 0 and in block 1: one token


# --- the progressive strategy ----------------------------------------------------------------
def test_steps_train_every_one_block_cell_then_a_beam_grown_from_them():
    schema = pnas_space(ops=["identity", "sep_conv_3x3", "max_pool_3x3"]).schema
    strategy = ProgressiveSearch(beam=5, patience=None, surrogate_args={"members": 2, "epochs": 20})
    asked = drive(strategy, schema, 1000, seed=0)
    assert [a["blocks"] for a in asked] == [1] * 36 + [2] * 5 + [3] * 5  # then it is done
    assert len({json.dumps(a, sort_keys=True) for a in asked}) == len(asked)
    for child in asked[36:41]:  # each two-block cell keeps the first block of a trained one-block cell
        first = {k: v for k, v in child.items() if k.startswith("block0/")}
        assert any(all(parent[k] == v for k, v in first.items()) for parent in asked[:36])
    log = strategy.search_log()
    assert [(e["step"], e["blocks"], e["trained"]) for e in log] == [(1, 1, 36), (2, 2, 5), (3, 3, 5)]
    assert log[1]["candidates"] == 36 * 81  # every expansion of every one-block cell was ranked
    assert "spearman" not in log[0] and set(log[1]["spearman"]) == {"lstm", "mlp"}


def test_it_stops_after_a_step_that_did_not_improve():
    schema = pnas_space(ops=["identity", "sep_conv_3x3"]).schema
    worse_when_bigger = lambda arch: synthetic_loss(arch) + arch["blocks"]  # noqa: E731
    asked = drive(ProgressiveSearch(beam=3, patience=1, surrogate_args={"members": 2, "epochs": 5}), schema, 1000,
                  seed=0, loss=worse_when_bigger)
    assert [a["blocks"] for a in asked] == [1] * 16 + [2] * 3


def test_progressive_search_beats_random_search_at_equal_trials():
    schema = pnas_space().schema
    pnas_best, random_best = [], []
    for seed in range(5):
        asked = drive(ProgressiveSearch(beam=10, patience=None, surrogate_args={"members": 3, "epochs": 40}), schema,
                      1000, seed=seed)
        pnas_best.append(min(map(synthetic_loss, asked)))
        random_best.append(min(map(synthetic_loss, drive(RandomSearch(), schema, len(asked), seed=seed))))
    assert sum(p < r for p, r in zip(pnas_best, random_best)) >= 4, (pnas_best, random_best)
    assert statistics.fmean(pnas_best) < statistics.fmean(random_best) - 0.1


def test_a_space_without_a_growable_decision_is_refused_naming_its_decisions():
    schema = Space(lambda arch: torch.nn.Linear(2, arch.int("width", 1, 4)), {}).schema
    with pytest.raises(ConfigError, match="'width'.*strategy 'predictor'"):
        ProgressiveSearch().setup(schema, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="cannot grow 'width'"):
        ProgressiveSearch(grow="width").setup(schema, np.random.default_rng(0))


@pytest.mark.parametrize("args, says", [({"beam": 0}, "beam"), ({"surrogate": "gp"}, "surrogate"),
                                        ({"surrogate_args": {"layers": 3}}, "surrogate_args"),
                                        ({"patience": 0}, "patience")])
def test_bad_arguments_are_refused_with_what_is_allowed(args, says):
    with pytest.raises(ConfigError, match=says):
        ProgressiveSearch(**args)


def test_a_pnas_study_resumed_after_a_crash_equals_one_never_stopped(tmp_path):
    calls = {"n": 0}

    def evaluate(model, data, budget, state, arch):
        calls["n"] += 1
        if calls["n"] == 21 and crash["on"]:
            raise KeyboardInterrupt  # as a kill mid-trial
        return {"val_loss": synthetic_loss(arch)}

    crash = {"on": False}
    args = dict(space_args={"max_blocks": 3, "ops": ["identity", "sep_conv_3x3"]}, evaluate=evaluate, budget=1,
                trials=40, seed=2, executor="serial")
    strategy = {"name": "pnas", "args": {"beam": 4, "surrogate_args": {"members": 2, "epochs": 10}}}
    reference = nasforge.search("pnas", "mnist1d", strategy, out=tmp_path / "ref", **args)
    crash["on"], calls["n"] = True, 0
    with pytest.raises(KeyboardInterrupt):
        nasforge.search("pnas", "mnist1d", strategy, out=tmp_path / "cut", **args)
    crash["on"] = False
    resumed = nasforge.resume(tmp_path / "cut", evaluate=evaluate)
    assert [t.arch for t in resumed.trials] == [t.arch for t in reference.trials]
    assert resumed.store.get_meta("search_log") == reference.store.get_meta("search_log")


def test_the_report_shows_each_steps_rank_correlation(tmp_path):
    study = nasforge.search("pnas", "mnist1d", {"name": "pnas", "args": {"beam": 3, "patience": None,
                                                                      "surrogate_args": {"members": 2, "epochs": 10}}},
                            space_args={"max_blocks": 2, "ops": ["identity", "sep_conv_3x3"]},
                            evaluate=lambda model, data, budget, state, arch: {"val_loss": synthetic_loss(arch)},
                            budget=1, trials=40, out=tmp_path, executor="serial")
    assert len(study.trials) == 16 + 3
    page = write_report(tmp_path).read_text()
    assert 'id="search-steps"' in page and "Spearman (lstm)" in page and "Spearman (mlp)" in page


# --- surrogates and predictor-guided search --------------------------------------------------
@pytest.mark.parametrize("name", SURROGATES.names())
def test_each_surrogate_ranks_unseen_cells_better_than_chance(name):
    schema = pnas_space().schema
    rng = np.random.default_rng(0)
    archs = [schema.sample(rng) for _ in range(260)]
    losses = np.array([synthetic_loss(a) for a in archs])
    surrogate = SURROGATES.get(name)(members=3)
    surrogate.bind(schema)
    surrogate.fit(archs[:200], losses[:200], seed=0)
    predicted = surrogate.predict_members(archs[200:])
    assert predicted.shape == (3, 60)
    assert spearman(predicted.mean(axis=0), losses[200:]) > 0.5


def test_spearman_handles_ties_and_constant_series():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 2, 3], [3, 2, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None and spearman([1, 2], [1, 2]) is None


def nb201_lookup():
    from nasforge.train.tabular import NB201Lookup
    try:
        return NB201Lookup()
    except DataError as exc:
        pytest.skip(f"NAS-Bench-201 tables absent (they belong in shared/data/nasbench201): {exc}")


def test_predictor_guided_search_beats_random_search_on_the_nb201_replay():
    from nasforge.spaces.nb201 import nb201
    lookup = nb201_lookup()
    schema = Space(nb201, {"materialize": False}).schema
    metrics = {}

    def loss(arch):  # the 12-epoch validation loss, NAS-Bench-201's search protocol
        key = json.dumps(arch, sort_keys=True)
        metrics[key] = lookup.query(arch, 12)
        return metrics[key]["val_loss"]

    def regret(asked):
        best = min(asked, key=loss)
        return metrics[json.dumps(best, sort_keys=True)]["regret"]

    regrets: dict[str, list[float]] = {"predictor": [], "random": []}
    for seed in range(6):
        regrets["predictor"].append(regret(drive(PredictorGuided(), schema, 100, seed, loss)))
        regrets["random"].append(regret(drive(RandomSearch(), schema, 100, seed, loss)))
    assert statistics.fmean(regrets["predictor"]) < statistics.fmean(regrets["random"]) - 0.2, regrets
    assert statistics.median(regrets["predictor"]) < statistics.median(regrets["random"]), regrets


def test_the_command_line_says_each_step_and_its_rank_correlations(tmp_path, capsys):
    from nasforge.cli import main
    config = tmp_path / "pnas.yaml"
    config.write_text("space: mlp\ndataset: iris\nstrategy: {name: pnas, args: {initial: 6, beam: 3, max_steps: 2, "
                      "patience: null, surrogate_args: {members: 2, epochs: 10}}}\ntrials: 20\nbudget: 2\n"
                      "objective: {metric: val_accuracy}\n")
    assert main(["search", str(config), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "step 1: depth 1, training a random 6 of 297" in out
    assert "step 2: depth 2, training the best 3 of" in out
    assert "step 2 done: best val_accuracy" in out and "Spearman of predicted and measured: lstm" in out


def test_a_refused_strategy_leaves_no_study_behind_and_the_fixed_config_runs_there(tmp_path, capsys):
    from nasforge.cli import main
    out = tmp_path / "study"
    config = tmp_path / "c.yaml"
    config.write_text("space: {name: nb201, args: {materialize: false}}\ndataset: none\n"
                      "evaluator: {name: 'nasforge.train.tabular:NB201Lookup'}\nstrategy: pnas\ntrials: 3\nbudget: 12\n")
    assert main(["search", str(config), "--out", str(out), "--quiet"]) == 2
    assert "'edge_1_0'" in capsys.readouterr().err and not out.exists()
    nb201_lookup()
    config.write_text(config.read_text().replace("strategy: pnas", "strategy: predictor"))
    assert main(["search", str(config), "--out", str(out), "--quiet"]) == 0


def test_the_command_line_warns_when_step_1_alone_outnumbers_the_trials(tmp_path, capsys):
    from nasforge.cli import main
    assert main(["search", "--strategy", "pnas", "--trials", "3", "--budget", "1", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "step 1: depth 1, training all 297" in out and "no architecture will be grown; set the strategy's" in out
