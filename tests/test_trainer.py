"""The built-in supervised trainer: curves, determinism, exact continuation, divergence, arguments."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nasforge.datasets import load_dataset
from nasforge.errors import ConfigError
from nasforge.space import Space
from nasforge.spaces.mlp import mlp
from nasforge.train.data import Data
from nasforge.train.trainer import SupervisedTrainer
from nasforge.types import EvalResult

SMALL = {"depth": 1, "width_0": 16, "activation": "relu"}


@pytest.fixture(scope="module")
def iris() -> Data:
    return load_dataset("iris")


@pytest.fixture(scope="module")
def diabetes() -> Data:
    return load_dataset("diabetes")


def build(data: Data, arch: dict | None = None, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Space(mlp, data.context()).build(arch or SMALL)


def train(data: Data, epochs: int, *, seed: int = 0, state=None, model=None, **kwargs) -> EvalResult:
    """Seed as the worker does, build, train."""
    torch.manual_seed(seed)
    model = model if model is not None else Space(mlp, data.context()).build(SMALL)
    return SupervisedTrainer(device="cpu", **kwargs)(model, data, epochs, state)


# --- curves and metrics -----------------------------------------------------------------------
def test_classification_curve_has_one_point_per_epoch(iris):
    result = train(iris, 4)
    assert [p["epoch"] for p in result.curve] == [1.0, 2.0, 3.0, 4.0]
    for point in result.curve:
        assert set(point) == {"epoch", "train_loss", "val_loss", "val_accuracy"}
        assert math.isfinite(point["val_loss"]) and 0.0 <= point["val_accuracy"] <= 1.0
    assert {k: result.metrics[k] for k in result.curve[-1]} == result.curve[-1]
    assert result.metrics["params"] == 4 * 16 + 16 + 16 * 3 + 3
    assert result.metrics["train_seconds"] >= 0
    assert result.state is not None and result.state["epochs"] == 4 and result.state["steps"] == 16


def test_final_metrics_match_the_returned_weights(iris):
    result = train(iris, 3)
    model = build(iris, seed=99)
    model.load_state_dict(result.state["model"])
    again = SupervisedTrainer(device="cpu").validate(model, iris)
    assert again["val_loss"] == pytest.approx(result.metrics["val_loss"], abs=1e-6)
    assert again["val_accuracy"] == result.metrics["val_accuracy"]
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(iris.x_val), iris.y_val)
    assert again["val_loss"] == pytest.approx(float(expected), abs=1e-6)


def test_regression_reports_rmse_and_lowers_loss(diabetes):
    before = SupervisedTrainer(device="cpu").validate(build(diabetes), diabetes)
    result = train(diabetes, 15, lr=0.01)
    assert "val_accuracy" not in result.metrics
    for point in result.curve:
        assert point["val_rmse"] == pytest.approx(math.sqrt(point["val_loss"]), rel=1e-4)
    assert result.curve[-1]["val_loss"] < result.curve[0]["val_loss"] < before["val_loss"]
    assert result.curve[-1]["train_loss"] < result.curve[0]["train_loss"]
    assert result.metrics["val_loss"] < 0.7  # targets are standardised: 1.0 is predicting the mean


def test_regression_mse_is_per_sample_not_broadcast(diabetes):
    """A (N, 1) output against (N,) targets must not broadcast to an (N, N) difference."""
    model = build(diabetes)
    metrics = SupervisedTrainer(device="cpu").validate(model, diabetes)
    with torch.no_grad():
        expected = float(((model(diabetes.x_val)[:, 0] - diabetes.y_val) ** 2).mean())
    assert metrics["val_loss"] == pytest.approx(expected, rel=1e-5)


def test_multi_output_regression():
    torch.manual_seed(0)
    x = torch.rand(64, 3)
    y = torch.stack([x.sum(1), x[:, 0] - x[:, 1]], 1)
    data = Data("two", "regression", x[:48], y[:48], x[48:], y[48:])
    assert data.n_out == 2
    result = train(data, 20, lr=0.02)
    assert result.curve[-1]["val_loss"] < result.curve[0]["val_loss"]


def test_validate_on_test_split(iris):
    data = Data("t", "classification", iris.x_train, iris.y_train, iris.x_val, iris.y_val, iris.x_val[:10], iris.y_val[:10])
    metrics = SupervisedTrainer(device="cpu").validate(build(data), data, split="test")
    assert set(metrics) == {"test_loss", "test_accuracy"}


def test_learns_iris(iris):
    torch.manual_seed(0)
    model = Space(mlp, iris.context()).build({"depth": 1, "width_0": 32, "activation": "relu"})
    result = SupervisedTrainer(lr=0.01, batch_size=16, device="cpu")(model, iris, 30, None)
    assert result.metrics["val_accuracy"] > 0.9
    assert result.curve[-1]["train_loss"] < 0.5 * result.curve[0]["train_loss"]


def test_sgd_with_momentum_trains(iris):
    result = train(iris, 10, optimizer="sgd", lr=0.1, momentum=0.9)
    assert result.curve[-1]["train_loss"] < result.curve[0]["train_loss"]
    buffers = [s["momentum_buffer"] for s in result.state["optimizer"]["state"].values()]
    assert buffers and all(b is not None for b in buffers)
    assert result.state["optimizer"]["param_groups"][0]["momentum"] == 0.9


# --- determinism and continuation ---------------------------------------------------------------
def test_deterministic_under_the_global_seed(iris):
    a, b = train(iris, 3, seed=5), train(iris, 3, seed=5)
    assert a.curve == b.curve
    c = train(iris, 3, seed=6)
    assert c.curve != a.curve


def test_shuffling_follows_the_seed_not_just_the_weights(iris):
    """Same initial weights, different global seed at call time: a different batch order."""
    trainer = SupervisedTrainer(device="cpu")
    first, second = build(iris, seed=0), build(iris, seed=0)
    torch.manual_seed(1)
    a = trainer(first, iris, 2, None)
    torch.manual_seed(2)
    b = trainer(second, iris, 2, None)
    assert a.curve != b.curve


def _weights(state) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in state["model"].items()}


def test_five_then_ten_equals_ten_straight(iris):
    straight = train(iris, 10, seed=3)
    first = train(iris, 5, seed=3)
    resumed = SupervisedTrainer(device="cpu")(build(iris, seed=123), iris, 10, first.state)  # other init: state wins
    assert [p["epoch"] for p in resumed.curve] == [6.0, 7.0, 8.0, 9.0, 10.0]
    assert resumed.metrics["val_loss"] == straight.metrics["val_loss"]
    assert resumed.curve == straight.curve[5:]
    for name, value in straight.state["model"].items():
        assert torch.equal(resumed.state["model"][name], value), name
    assert resumed.state["epochs"] == 10


def test_continuing_twice_from_one_state_gives_the_same_result(iris):
    """The returned state is a snapshot: continuing from it must not change it."""
    first = train(iris, 3, seed=4)
    saved = _weights(first.state)
    trainer = SupervisedTrainer(device="cpu")
    a = trainer(build(iris), iris, 6, first.state)
    b = trainer(build(iris), iris, 6, first.state)
    assert a.curve == b.curve
    assert all(torch.equal(first.state["model"][k], v) for k, v in saved.items())


def test_state_does_not_follow_later_training_of_the_same_model(iris):
    torch.manual_seed(0)
    model = build(iris)
    trainer = SupervisedTrainer(device="cpu")
    first = trainer(model, iris, 2, None)
    saved = _weights(first.state)
    trainer(model, iris, 4, first.state)  # keeps training the very same module
    assert all(torch.equal(first.state["model"][k], v) for k, v in saved.items())


def test_budget_already_reached_trains_nothing(iris):
    first = train(iris, 3)
    again = SupervisedTrainer(device="cpu")(build(iris), iris, 2, first.state)
    assert again.curve == []
    assert again.metrics["epoch"] == 3.0
    assert again.metrics["val_loss"] == pytest.approx(first.metrics["val_loss"], abs=1e-7)
    assert again.state["epochs"] == 3


def test_fractional_epochs_train_that_share_of_the_batches(iris):
    # iris: 100 training rows, batch 32 -> 4 steps per epoch; 2.4 epochs -> round(9.6) = 10 steps
    result = train(iris, 2.4)
    assert [p["epoch"] for p in result.curve] == [1.0, 2.0, 2.5]
    assert result.state["steps"] == 10 and result.state["position"] == 64
    assert [p["epoch"] for p in train(iris, 1.4).curve] == [1.0, 1.5]  # round(5.6) = 6 steps


def test_stopping_mid_epoch_and_continuing_equals_straight(iris):
    """Hyperband promotes from fractional budgets (1.11 epochs): continuing mid-epoch must be exact."""
    straight = train(iris, 5, seed=8)
    first = train(iris, 1.11, seed=8)
    second = SupervisedTrainer(device="cpu")(build(iris, seed=1), iris, 3.33, first.state)
    third = SupervisedTrainer(device="cpu")(build(iris, seed=2), iris, 5, second.state)
    assert third.metrics["val_loss"] == straight.metrics["val_loss"]
    for name, value in straight.state["model"].items():
        assert torch.equal(third.state["model"][name], value), name


def test_data_fraction_budget_trains_nested_subsets(iris):
    trainer = SupervisedTrainer(device="cpu", budget_unit="data_fraction", epochs=2)
    torch.manual_seed(0)
    small = trainer(build(iris), iris, 1 / 3, None)
    assert small.state["seen"] == 2 * 34  # two epochs over ceil(100 / 3) rows
    assert small.curve[-1]["epoch"] == pytest.approx(0.68)
    full = trainer(build(iris), iris, 1.0, small.state)  # continues on all rows
    assert full.state["seen"] == 2 * 34 + 2 * 100
    assert full.metrics["val_loss"] < small.metrics["val_loss"]
    with pytest.raises(ConfigError, match="data fraction must be in"):
        trainer(build(iris), iris, 1.5, None)
    with pytest.raises(ConfigError, match="Invalid budget_unit 'samples'"):
        SupervisedTrainer(budget_unit="samples")


def test_a_reused_trainer_follows_new_datasets():
    """The trainer caches the data on its device; a new dataset (even at a freed one's address) is used."""
    trainer = SupervisedTrainer(device="cpu")

    def run(width: int) -> EvalResult:
        data = Data(f"w{width}", "classification", torch.rand(20, width), torch.arange(20) % 2,
                    torch.rand(6, width), torch.arange(6) % 2)
        torch.manual_seed(0)
        return trainer(nn.Linear(width, 2), data, 1, None)

    for width in (3, 4, 5, 6, 7, 8):
        assert run(width).metrics["params"] == width * 2 + 2


# --- divergence -------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_huge_learning_rate_raises(iris, optimizer):
    with pytest.raises(FloatingPointError, match="nan|inf"):
        train(iris, 3, optimizer=optimizer, lr=1e30)


def test_divergence_in_the_last_step_of_an_epoch_raises(iris):
    """One batch per epoch: the training loss is measured before the step that breaks the weights."""
    with pytest.raises(FloatingPointError, match="validation loss"):
        train(iris, 1, optimizer="sgd", lr=1e30, batch_size=1000)


class _NaNOut(nn.Module):
    def __init__(self, only_in_eval: bool = False):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.only_in_eval = only_in_eval

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        return out if self.only_in_eval and self.training else out * float("nan")


@pytest.mark.parametrize("only_in_eval", [False, True])
def test_model_producing_nan_raises(iris, only_in_eval):
    torch.manual_seed(0)
    with pytest.raises(FloatingPointError, match="nan"):
        SupervisedTrainer(device="cpu")(_NaNOut(only_in_eval), iris, 2, None)


# --- arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"lr": 0}, "learning rate: 0"),
    ({"lr": -0.1}, "learning rate: -0.1"),
    ({"lr": float("nan")}, "learning rate: nan"),
    ({"optimizer": "rmsprop"}, "'rmsprop'; allowed: adam, adamw, sgd"),
    ({"batch_size": 0}, "batch_size: 0"),
    ({"batch_size": 2.5}, "batch_size: 2.5"),
    ({"weight_decay": -1.0}, "weight_decay: -1.0"),
    ({"device": "toaster"}, "'toaster'"),
])
def test_invalid_arguments_name_the_value(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SupervisedTrainer(**kwargs)


def test_weight_decay_reaches_the_optimizer(iris):
    result = train(iris, 1, optimizer="adamw", weight_decay=0.05)
    assert result.state["optimizer"]["param_groups"][0]["weight_decay"] == 0.05
