"""MNIST-1D and mnist5k, read from the small files shipped inside the package (see data/README.md)."""
from __future__ import annotations

from importlib import resources

import numpy as np

from nasforge.datasets.splits import split
from nasforge.train.data import Data


def _load(filename: str) -> dict[str, np.ndarray]:
    with resources.files("nasforge.datasets").joinpath("data", filename).open("rb") as fh:
        with np.load(fh) as npz:
            return {k: npz[k] for k in npz.files}


def mnist1d(val_fraction: float = 0.2, seed: int = 42, channels: bool = False) -> Data:
    """MNIST-1D, the standard frozen split: 4,000 train sequences of length 40 (a stratified, seeded
    validation part is held out of them) and the 1,000 standard test sequences, 10 classes.
    With ``channels=True`` samples have shape (1, 40) for 1-D convolutions."""
    d = _load("mnist1d.npz")
    x, y, x_test, y_test = d["x"], d["y"], d["x_test"], d["y_test"]
    x_tr, x_va, y_tr, y_va = split(x, y, val_fraction, seed, stratify=True)
    if channels:
        x_tr, x_va, x_test = (a[:, None, :] for a in (x_tr, x_va, x_test))
    return Data("mnist1d", "classification", x_tr, y_tr, x_va, y_va, x_test, y_test, n_classes=10)


def mnist5k(val_fraction: float = 0.2, seed: int = 42, flatten: bool = False) -> Data:
    """5,000 real 28x28 MNIST digits scaled to [0, 1]: a stratified, seeded 4,000 / 1,000
    train / validation split; samples have shape (1, 28, 28), or (784,) with ``flatten=True``."""
    d = _load("mnist5k.npz")
    x = d["x"].astype(np.float32) / 255.0
    x = x.reshape(len(x), -1) if flatten else x[:, None, :, :]
    x_tr, x_va, y_tr, y_va = split(x, d["y"], val_fraction, seed, stratify=True)
    return Data("mnist5k", "classification", x_tr, y_tr, x_va, y_va, n_classes=10)
