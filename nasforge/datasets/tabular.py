"""scikit-learn's bundled tabular sets, preprocessed as in the chapter: a 67/33 split with seed 42,
min-max scaling fitted on the training split.

The files are read straight from scikit-learn's data folder, as its loaders read them (a test
checks the arrays are equal): importing scikit-learn's loaders costs ~1.5 s of a fresh process,
more than a small search's whole training.
"""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nasforge.datasets.splits import scale, split
from nasforge.train.data import Data


def _sklearn_data() -> Path:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("scikit-learn is not installed: its bundled datasets are read from its data folder")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def _csv_with_header(name: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """A file whose first row is ``n_samples,n_features,...`` and whose last column is the class."""
    def load(return_X_y: bool = True) -> tuple[np.ndarray, np.ndarray]:
        with open(_sklearn_data() / name, newline="") as f:
            rows = csv.reader(f)
            n_samples, n_features = (int(v) for v in next(rows)[:2])
            table = np.array([row for row in rows], dtype=np.float64)
        if table.shape != (n_samples, n_features + 1):
            raise ValueError(f"{name}: expected {n_samples} rows of {n_features + 1} values, got {table.shape}")
        return table[:, :n_features], table[:, n_features].astype(int)
    return load


def _digits(return_X_y: bool = True) -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(_sklearn_data() / "digits.csv.gz", delimiter=",")
    return table[:, :-1], table[:, -1].astype(int, copy=False)


def _diabetes(return_X_y: bool = True) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes  # its loader also scales the features: use it as it is
    return load_diabetes(return_X_y=True)


def _tabular(name: str, loader: Callable[..., Any], task: str, val_fraction: float, seed: int,
             scaling: str, stratify: bool) -> Data:
    x, y = loader(return_X_y=True)
    x = np.asarray(x, dtype=np.float64)
    x_tr, x_va, y_tr, y_va = split(x, y, val_fraction, seed, stratify)
    x_tr, x_va = scale(x_tr, x_va, method=scaling)
    if task == "regression":  # standardise targets on train so losses are comparable across sets
        mean, std = y_tr.mean(), y_tr.std() or 1.0
        y_tr, y_va = (y_tr - mean) / std, (y_va - mean) / std
    return Data(name, task, x_tr, y_tr, x_va, y_va)


def iris(val_fraction: float = 0.33, seed: int = 42, scaling: str = "minmax", stratify: bool = False) -> Data:
    """Iris flowers: 150 samples, 4 features, 3 classes."""
    return _tabular("iris", _csv_with_header("iris.csv"), "classification", val_fraction, seed, scaling, stratify)


def digits(val_fraction: float = 0.33, seed: int = 42, scaling: str = "minmax", stratify: bool = False) -> Data:
    """8x8 handwritten digits: 1,797 samples, 64 features, 10 classes."""
    return _tabular("digits", _digits, "classification", val_fraction, seed, scaling, stratify)


def wine(val_fraction: float = 0.33, seed: int = 42, scaling: str = "minmax", stratify: bool = False) -> Data:
    """Wine recognition: 178 samples, 13 features, 3 classes."""
    return _tabular("wine", _csv_with_header("wine_data.csv"), "classification", val_fraction, seed, scaling, stratify)


def breast_cancer(val_fraction: float = 0.33, seed: int = 42, scaling: str = "minmax", stratify: bool = False) -> Data:
    """Breast cancer Wisconsin: 569 samples, 30 features, 2 classes."""
    return _tabular("breast_cancer", _csv_with_header("breast_cancer.csv"), "classification", val_fraction, seed, scaling, stratify)


def diabetes(val_fraction: float = 0.33, seed: int = 42, scaling: str = "minmax", stratify: bool = False) -> Data:
    """Diabetes progression: 442 samples, 10 features, regression (targets standardised on train)."""
    return _tabular("diabetes", _diabetes, "regression", val_fraction, seed, scaling, False)
