"""scikit-learn's bundled tabular sets, preprocessed as in the chapter: a 67/33 split with seed 42,
min-max scaling fitted on the training split."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from sklearn import datasets as skd

from nasforge.datasets.splits import scale, split
from nasforge.train.data import Data


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
    return _tabular("iris", skd.load_iris, "classification", val_fraction, seed, scaling, stratify)


def digits(val_fraction: float = 0.33, seed: int = 42, scaling: str = "minmax", stratify: bool = False) -> Data:
    """8x8 handwritten digits: 1,797 samples, 64 features, 10 classes."""
    return _tabular("digits", skd.load_digits, "classification", val_fraction, seed, scaling, stratify)


def wine(val_fraction: float = 0.33, seed: int = 42, scaling: str = "minmax", stratify: bool = False) -> Data:
    """Wine recognition: 178 samples, 13 features, 3 classes."""
    return _tabular("wine", skd.load_wine, "classification", val_fraction, seed, scaling, stratify)


def breast_cancer(val_fraction: float = 0.33, seed: int = 42, scaling: str = "minmax", stratify: bool = False) -> Data:
    """Breast cancer Wisconsin: 569 samples, 30 features, 2 classes."""
    return _tabular("breast_cancer", skd.load_breast_cancer, "classification", val_fraction, seed, scaling, stratify)


def diabetes(val_fraction: float = 0.33, seed: int = 42, scaling: str = "minmax", stratify: bool = False) -> Data:
    """Diabetes progression: 442 samples, 10 features, regression (targets standardised on train)."""
    return _tabular("diabetes", skd.load_diabetes, "regression", val_fraction, seed, scaling, False)
