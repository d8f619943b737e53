"""Fixed, seeded splits and scaling fitted on the training split only."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from nasforge.errors import ConfigError

SCALINGS = ("minmax", "standard", "none")


def split(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int, stratify: bool) -> tuple[np.ndarray, ...]:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"Invalid val_fraction: {val_fraction!r:.40} (must be a number between 0 and 1)")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"Invalid seed: {seed!r:.40} (must be an int in [0, 2**32))")
    if stratify and _stratifiable(y, val_fraction):
        from sklearn.model_selection import train_test_split  # ~1.5 s to import: only when asked for
        return tuple(train_test_split(x, y, test_size=val_fraction, random_state=seed, stratify=y))
    # scikit-learn's unstratified train_test_split, without importing it: the first ceil(n * f)
    # of one seeded permutation are validation (a test checks the rows are the same).
    order = np.random.RandomState(seed).permutation(len(x))
    n_val = math.ceil(val_fraction * len(x))
    val, train = order[:n_val], order[n_val:]
    return x[train], x[val], y[train], y[val]


def _stratifiable(y: np.ndarray, val_fraction: float) -> bool:
    _, counts = np.unique(y, return_counts=True)
    return counts.min() >= 2 and len(counts) <= len(y) * min(val_fraction, 1 - val_fraction)


def scale(x_train: np.ndarray, *others: np.ndarray | None, method: str = "minmax") -> list[np.ndarray | None]:
    if method not in SCALINGS:
        raise ConfigError(f"Invalid scaling {method!r}; allowed: {', '.join(SCALINGS)}")
    if method == "none":
        return [x_train, *others]
    if method == "standard":
        from sklearn.preprocessing import StandardScaler
        transform = StandardScaler().fit(x_train.reshape(len(x_train), -1)).transform
    else:
        transform = _min_max(x_train.reshape(len(x_train), -1))

    def apply(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else transform(a.reshape(len(a), -1)).reshape(a.shape)

    return [apply(x_train), *(apply(a) for a in others)]


def _min_max(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """scikit-learn's MinMaxScaler to [0, 1], computed as it computes it (x * scale + offset; a
    constant feature gets scale 1), so the values are the same to the bit (a test checks)."""
    low, high = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
    spread = high - low
    spread[spread < 10 * np.finfo(spread.dtype).eps] = 1.0
    factor = 1.0 / spread
    offset = -low * factor
    return lambda a: a * factor + offset
