"""Built-in datasets: sizes, splits, scaling, and the errors a user sees for bad files or arguments."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

from nasforge.datasets import DATASETS, load_dataset
from nasforge.errors import ConfigError, DataError
from nasforge.train.data import Data

# name -> (sklearn loader, task, n_train, n_val, n_features, n_classes)
TABULAR = {
    "iris": (skd.load_iris, "classification", 100, 50, 4, 3),
    "digits": (skd.load_digits, "classification", 1203, 594, 64, 10),
    "wine": (skd.load_wine, "classification", 119, 59, 13, 3),
    "breast_cancer": (skd.load_breast_cancer, "classification", 381, 188, 30, 2),
    "diabetes": (skd.load_diabetes, "regression", 296, 146, 10, None),
}


# --- bundled tabular sets ---------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TABULAR))
def test_tabular_sizes_types_and_task(name):
    _, task, n_train, n_val, n_features, n_classes = TABULAR[name]
    data = load_dataset(name)
    assert data.name == name and data.task == task
    assert data.x_train.shape == (n_train, n_features) and data.x_val.shape == (n_val, n_features)
    assert data.x_train.dtype == torch.float32
    assert data.y_train.dtype == (torch.int64 if task == "classification" else torch.float32)
    assert data.x_test is None and data.y_test is None
    assert data.n_classes == n_classes
    assert data.n_in == n_features and data.n_out == (n_classes or 1)


@pytest.mark.parametrize("name", sorted(TABULAR))
def test_tabular_split_is_67_33_seed_42_and_minmax_fitted_on_train(name):
    loader = TABULAR[name][0]
    x, y = loader(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(np.asarray(x, dtype=np.float64), y, test_size=0.33, random_state=42)
    scaler = MinMaxScaler().fit(x_tr)
    data = load_dataset(name)
    np.testing.assert_allclose(data.x_train.numpy(), scaler.transform(x_tr), atol=1e-6)
    np.testing.assert_allclose(data.x_val.numpy(), scaler.transform(x_va), atol=1e-6)
    if TABULAR[name][1] == "classification":
        np.testing.assert_array_equal(data.y_train.numpy(), y_tr)
        np.testing.assert_array_equal(data.y_val.numpy(), y_va)


def test_minmax_scaling_uses_train_statistics_only():
    data = load_dataset("wine")
    assert torch.allclose(data.x_train.min(0).values, torch.zeros(13))
    assert torch.allclose(data.x_train.max(0).values, torch.ones(13))
    # validation rows are scaled with the train minimum and maximum, so they need not span [0, 1]
    assert not (torch.allclose(data.x_val.min(0).values, torch.zeros(13))
                and torch.allclose(data.x_val.max(0).values, torch.ones(13)))


def test_diabetes_targets_standardised_on_train():
    data = load_dataset("diabetes")
    assert abs(float(data.y_train.mean())) < 1e-5
    assert abs(float(data.y_train.double().std(unbiased=False)) - 1.0) < 1e-4
    _, _, y_tr, y_va = train_test_split(*skd.load_diabetes(return_X_y=True), test_size=0.33, random_state=42)
    expected = (y_va - y_tr.mean()) / y_tr.std()
    np.testing.assert_allclose(data.y_val.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_loading_is_deterministic_and_seed_changes_the_split():
    a, b = load_dataset("iris"), load_dataset("iris")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    c = load_dataset({"name": "iris", "seed": 7})
    assert not torch.equal(a.x_train, c.x_train)


def test_arguments_may_be_nested_under_args():
    flat = load_dataset({"name": "iris", "seed": 3, "val_fraction": 0.5})
    nested = load_dataset({"name": "iris", "args": {"seed": 3, "val_fraction": 0.5}})
    assert len(flat.x_val) == 75
    assert torch.equal(flat.x_train, nested.x_train)


def test_stratify_keeps_class_proportions():
    # iris has 50 of each class, so a stratified 50-row validation split holds 16 or 17 of each
    counts = torch.bincount(load_dataset({"name": "iris", "stratify": True}).y_val)
    assert sorted(counts.tolist()) == [16, 17, 17]
    assert sorted(torch.bincount(load_dataset("iris").y_val).tolist()) != [16, 17, 17]  # seed 42 unstratified


def test_ready_data_passes_through():
    data = load_dataset("iris")
    assert load_dataset(data) is data


# --- shipped image-like sets ------------------------------------------------------------------
def test_mnist1d_standard_split():
    data = load_dataset("mnist1d")
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (3200, 800, 1000)
    assert data.input_shape == (40,) and data.x_test.shape == (1000, 40) and data.y_test.shape == (1000,)
    assert data.n_classes == 10 and data.task == "classification"
    # stratified: each class keeps its share of the 4,000 train sequences in the validation part
    train_counts = torch.bincount(data.y_train, minlength=10)
    val_counts = torch.bincount(data.y_val, minlength=10)
    share = val_counts.double() / (train_counts + val_counts).double()
    assert torch.all((share - 0.2).abs() < 0.01), share


def test_mnist1d_channels():
    data = load_dataset({"name": "mnist1d", "channels": True})
    assert data.x_train.shape[1:] == (1, 40) and data.x_val.shape[1:] == (1, 40)
    assert data.x_test.shape == (1000, 1, 40)


def test_mnist5k_split_shape_and_range():
    data = load_dataset("mnist5k")
    assert (len(data.x_train), len(data.x_val)) == (4000, 1000)
    assert data.input_shape == (1, 28, 28) and data.x_train.dtype == torch.float32
    assert float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 1.0
    assert float(data.x_val.min()) >= 0.0 and float(data.x_val.max()) <= 1.0
    assert torch.bincount(data.y_val, minlength=10).tolist() == [100] * 10  # 500 a class, stratified
    assert data.x_test is None


def test_mnist5k_flatten():
    data = load_dataset({"name": "mnist5k", "flatten": True})
    assert data.input_shape == (784,) and data.n_in == 784


# --- argument errors --------------------------------------------------------------------------
def test_unknown_dataset_lists_available_names():
    with pytest.raises(ConfigError) as err:
        load_dataset("imagenet")
    message = str(err.value)
    assert "'imagenet'" in message
    for name in DATASETS.names():
        assert name in message


def test_unknown_argument_lists_allowed_ones():
    with pytest.raises(ConfigError) as err:
        load_dataset({"name": "iris", "epochs": 3})
    message = str(err.value)
    assert "epochs" in message
    assert "allowed arguments: val_fraction, seed, scaling, stratify" in message


def test_missing_required_argument_is_named():
    with pytest.raises(ConfigError, match="label"):
        load_dataset({"name": "csv", "path": "x.csv"})


@pytest.mark.parametrize("spec", [["iris"], {"path": "x.csv"}, 3])
def test_malformed_spec(spec):
    with pytest.raises(ConfigError, match="name"):
        load_dataset(spec)


@pytest.mark.parametrize("args, match", [
    ({"val_fraction": 1.5}, "val_fraction: 1.5"),
    ({"val_fraction": 0.0}, "val_fraction: 0.0"),
    ({"scaling": "robust"}, "'robust'.*minmax, standard, none"),
])
def test_invalid_split_arguments(args, match):
    with pytest.raises(ConfigError, match=match):
        load_dataset({"name": "iris", **args})


def test_standard_scaling():
    data = load_dataset({"name": "breast_cancer", "scaling": "standard"})
    assert torch.allclose(data.x_train.mean(0), torch.zeros(30), atol=1e-5)


# --- CSV --------------------------------------------------------------------------------------
def _write_csv(path: Path, header: str, rows: list[str], encoding: str = "utf-8") -> str:
    path.write_text("\n".join([header, *rows]) + "\n", encoding=encoding)
    return str(path)


def _rows(n: int, label) -> list[str]:
    rng = np.random.default_rng(0)
    return [f"{rng.random():.4f},{rng.random() * 10:.4f},{label(i)}" for i in range(n)]


def test_csv_text_labels_become_class_codes(tmp_path):
    path = _write_csv(tmp_path / "flowers.csv", "a,b,kind", _rows(30, lambda i: ["setosa", "virginica", "versicolor"][i % 3]))
    data = load_dataset({"name": "csv", "path": path, "label": "kind"})
    assert data.name == "flowers" and data.task == "classification" and data.n_classes == 3
    assert len(data.x_train) + len(data.x_val) == 30 and data.input_shape == (2,)
    assert set(torch.cat([data.y_train, data.y_val]).tolist()) == {0, 1, 2}
    # scaling is fitted on the train split
    assert torch.allclose(data.x_train.min(0).values, torch.zeros(2))
    assert torch.allclose(data.x_train.max(0).values, torch.ones(2))


def test_csv_integer_labels_classification_float_labels_regression(tmp_path):
    cls = _write_csv(tmp_path / "c.csv", "a,b,y", _rows(20, lambda i: i % 2))
    reg = _write_csv(tmp_path / "r.csv", "a,b,y", _rows(20, lambda i: i * 0.37))
    assert load_dataset({"name": "csv", "path": cls, "label": "y"}).task == "classification"
    data = load_dataset({"name": "csv", "path": reg, "label": "y"})
    assert data.task == "regression" and data.y_train.dtype == torch.float32
    forced = load_dataset({"name": "csv", "path": cls, "label": "y", "task": "regression"})
    assert forced.task == "regression"


def test_csv_label_column_can_be_anywhere_and_header_is_stripped(tmp_path):
    path = _write_csv(tmp_path / "d.csv", " y , a , b", [f"{i % 2},{i},{i * 2}" for i in range(10)])
    data = load_dataset({"name": "csv", "path": path, "label": "y", "scaling": "none"})
    rows = torch.cat([data.x_train, data.x_val])
    assert torch.equal(rows[:, 1], rows[:, 0] * 2)  # features are a, b in order; y is not among them


def test_csv_with_byte_order_mark(tmp_path):
    path = _write_csv(tmp_path / "excel.csv", "y,a", [f"{i % 2},{i}" for i in range(8)], encoding="utf-8-sig")
    data = load_dataset({"name": "csv", "path": path, "label": "y"})
    assert data.input_shape == (1,) and data.n_classes == 2


def test_csv_missing_file(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="no file at .*nope.csv"):
        load_dataset({"name": "csv", "path": str(missing), "label": "y"})


def test_csv_missing_label_column_lists_columns(tmp_path):
    path = _write_csv(tmp_path / "d.csv", "alpha,beta,gamma", _rows(10, lambda i: i % 2))
    with pytest.raises(DataError) as err:
        load_dataset({"name": "csv", "path": path, "label": "target"})
    assert "'target'" in str(err.value) and "alpha, beta, gamma" in str(err.value)


def test_csv_non_numeric_feature_names_column(tmp_path):
    path = _write_csv(tmp_path / "d.csv", "colour,size,y", [f"red,{i},{i % 2}" for i in range(10)])
    with pytest.raises(DataError, match="feature column 'colour' is not numeric"):
        load_dataset({"name": "csv", "path": path, "label": "y"})


def test_csv_empty_label_cell_is_an_error_naming_the_row(tmp_path):
    rows = _rows(40, lambda i: f"{i * 1.5:.2f}")
    rows[3] = "0.5,0.5,"
    path = _write_csv(tmp_path / "d.csv", "a,b,y", rows)
    with pytest.raises(DataError, match=r"empty in row\(s\) \[5\]"):
        load_dataset({"name": "csv", "path": path, "label": "y"})


def test_csv_nan_regression_target_is_rejected(tmp_path):
    rows = _rows(40, lambda i: f"{i * 1.5:.2f}")
    rows[3] = "0.5,0.5,nan"
    path = _write_csv(tmp_path / "d.csv", "a,b,y", rows)
    with pytest.raises(DataError, match="NaN or infinite targets"):
        load_dataset({"name": "csv", "path": path, "label": "y"})


def test_csv_text_label_cannot_be_regression(tmp_path):
    path = _write_csv(tmp_path / "d.csv", "a,b,y", _rows(10, lambda i: "ab"[i % 2]))
    with pytest.raises(DataError, match="regression targets must be numbers"):
        load_dataset({"name": "csv", "path": path, "label": "y", "task": "regression"})


def test_csv_invalid_task(tmp_path):
    path = _write_csv(tmp_path / "d.csv", "a,b,y", _rows(10, lambda i: i % 2))
    with pytest.raises(ConfigError, match="'ranking'.*classification, regression"):
        load_dataset({"name": "csv", "path": path, "label": "y", "task": "ranking"})


@pytest.mark.parametrize("content, match", [
    ("", "empty"),
    ("a,y\n1,0\n2,1\n", "only 2 data rows"),
    ("a,b,y\n1,2,0\n1,2\n1,2,0\n1,2,1\n1,2,0\n", r"row\(s\) \[3\]"),
])
def test_csv_malformed(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=match):
        load_dataset({"name": "csv", "path": str(path), "label": "y"})


# --- npz --------------------------------------------------------------------------------------
def test_npz_split_when_only_x_and_y(tmp_path):
    path = tmp_path / "arrays.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((60, 5)), y=np.arange(60) % 3)
    data = load_dataset({"name": "npz", "path": str(path)})
    assert data.name == "arrays" and data.task == "classification" and data.n_classes == 3
    assert (len(data.x_train), len(data.x_val)) == (40, 20)


def test_npz_given_splits_are_kept_and_labels_coded_consistently(tmp_path):
    path = tmp_path / "given.npz"
    rng = np.random.default_rng(1)
    np.savez(path, x=rng.random((12, 3)), y=np.array([10, 20, 30] * 4),
             x_val=rng.random((6, 3)), y_val=np.array([30, 20, 10] * 2),
             x_test=rng.random((3, 3)), y_test=np.array([20, 20, 30]))
    data = load_dataset({"name": "npz", "path": str(path)})
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (12, 6, 3)
    assert data.y_train.tolist() == [0, 1, 2] * 4
    assert data.y_val.tolist() == [2, 1, 0] * 2
    assert data.y_test.tolist() == [1, 1, 2]


def test_npz_test_split_without_given_validation(tmp_path):
    path = tmp_path / "t.npz"
    rng = np.random.default_rng(2)
    np.savez(path, x=rng.random((30, 2)), y=rng.random(30), x_test=rng.random((5, 2)), y_test=rng.random(5))
    data = load_dataset({"name": "npz", "path": str(path)})
    assert data.task == "regression" and data.x_test.shape == (5, 2)


def test_npz_missing_arrays_listed(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, features=np.zeros((4, 2)), y=np.zeros(4))
    with pytest.raises(DataError) as err:
        load_dataset({"name": "npz", "path": str(path)})
    assert "missing array(s) x" in str(err.value) and "found: features, y" in str(err.value)


@pytest.mark.parametrize("given, missing", [("x_val", "y_val"), ("y_test", "x_test")])
def test_npz_half_a_split_is_an_error(tmp_path, given, missing):
    path = tmp_path / "half.npz"
    arrays = {"x": np.zeros((10, 2)), "y": np.arange(10) % 2, given: np.zeros((4, 2)) if given[0] == "x" else np.zeros(4)}
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=f"has {given} but no {missing}"):
        load_dataset({"name": "npz", "path": str(path)})


def test_npz_single_npy_array_is_a_data_error(tmp_path):
    path = tmp_path / "one.npz"
    with path.open("wb") as fh:
        np.save(fh, np.zeros(3))
    with pytest.raises(DataError, match="single array"):
        load_dataset({"name": "npz", "path": str(path)})


def test_npz_corrupt_archive_is_a_data_error(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    with pytest.raises(DataError, match="broken.npz: cannot read"):
        load_dataset({"name": "npz", "path": str(path)})


def test_npz_object_arrays_are_not_unpickled(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4))
    with pytest.raises(DataError, match="cannot read"):
        load_dataset({"name": "npz", "path": str(path)})


def test_npz_missing_file(tmp_path):
    with pytest.raises(DataError, match="no file at"):
        load_dataset({"name": "npz", "path": str(tmp_path / "absent.npz")})


# --- Data itself ------------------------------------------------------------------------------
def test_data_from_arrays_and_context():
    rng = np.random.default_rng(3)
    data = Data.from_arrays(rng.random((30, 4)), rng.integers(0, 3, 30), val_fraction=0.2)
    assert data.task == "classification" and len(data.x_val) == 6
    assert data.context() == {"n_in": 4, "n_out": data.n_classes, "input_shape": (4,),
                              "task": "classification", "n_classes": data.n_classes}


def test_data_rejects_mismatched_rows_and_bad_labels():
    with pytest.raises(DataError, match="x_train has 3 rows but y_train has 2"):
        Data("d", "classification", np.zeros((3, 2)), np.zeros(2), np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(DataError, match="found -1"):
        Data("d", "classification", np.zeros((2, 2)), np.array([0, -1]), np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(DataError, match="x_val holds NaN"):
        Data("d", "regression", np.zeros((2, 2)), np.zeros(2), np.full((2, 2), np.nan), np.zeros(2))


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "digits"])
@pytest.mark.parametrize("seed", [0, 42, 7])
def test_tables_read_without_scikit_learn_are_its_arrays_to_the_bit(name, seed):
    """The loaders read scikit-learn's files themselves and split and scale without importing
    it (1.5 s of a fresh process): the float64 arrays must be exactly scikit-learn's."""
    from nasforge.datasets import splits, tabular
    ours = {"iris": tabular._csv_with_header("iris.csv"), "wine": tabular._csv_with_header("wine_data.csv"),
            "breast_cancer": tabular._csv_with_header("breast_cancer.csv"), "digits": tabular._digits}[name]()
    x, y = TABULAR[name][0](return_X_y=True)
    np.testing.assert_array_equal(ours[0], x)
    np.testing.assert_array_equal(ours[1], y)
    mine = splits.split(x, y, 0.33, seed, False)
    theirs = train_test_split(x, y, test_size=0.33, random_state=seed)
    for a, b in zip(mine, theirs):
        np.testing.assert_array_equal(a, b)
    scaler = MinMaxScaler().fit(theirs[0])
    scaled = splits.scale(mine[0], mine[1])
    np.testing.assert_array_equal(scaled[0], scaler.transform(theirs[0]))
    np.testing.assert_array_equal(scaled[1], scaler.transform(theirs[1]))


def test_stratified_rows_are_scikit_learns_for_many_labels_fractions_and_seeds():
    from nasforge.datasets import splits
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(150):
        n, k = int(rng.integers(20, 300)), int(rng.integers(2, 8))
        y = rng.integers(0, k, n)
        y[: 2 * k] = np.repeat(np.arange(k), 2)  # every class at least twice
        fraction, seed = float(rng.choice([0.1, 0.2, 0.25, 0.33, 0.5])), int(rng.integers(0, 2**31))
        if not splits._stratifiable(y, fraction):
            continue
        x = np.arange(n)
        ours = splits.split(x, y, fraction, seed, True)
        theirs = train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)
        checked += 1
    assert checked > 100
