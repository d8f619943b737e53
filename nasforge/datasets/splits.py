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
    # The rows scikit-learn's train_test_split(test_size=val_fraction, random_state=seed,
    # stratify=...) picks, drawn here without importing it (1.5 s of a fresh process); tests check
    # the rows are the same for many labels, fractions and seeds.
    n_val = math.ceil(val_fraction * len(x))
    if stratify and _stratifiable(y, val_fraction):
        train, val = _stratified(np.asarray(y), n_val, seed)
    else:  # the first ceil(n * f) of one seeded permutation are validation
        order = np.random.RandomState(seed).permutation(len(x))
        val, train = order[:n_val], order[n_val:]
    return x[train], x[val], y[train], y[val]


def _stratified(y: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation rows with each class in proportion: per class a seeded permutation of
    its rows, its share of the training rows first, then of the validation rows."""
    counts_by_class = np.unique(y, return_inverse=True)[1]
    counts = np.bincount(counts_by_class)
    members = np.split(np.argsort(counts_by_class, kind="mergesort"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(seed)
    train_counts = _apportion(counts, len(y) - n_val, rng)
    val_counts = _apportion(counts - train_counts, n_val, rng)
    train: list[int] = []
    val: list[int] = []
    for rows, k_train, k_val in zip(members, train_counts, val_counts):
        shuffled = rows.take(rng.permutation(len(rows)), mode="clip")
        train.extend(shuffled[:k_train])
        val.extend(shuffled[k_train:k_train + k_val])
    return rng.permutation(train), rng.permutation(val)


def _apportion(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of ``draws`` rows each class gets: its proportional share rounded down, the rows
    left over to the largest remainders (ties drawn at random)."""
    exact = counts / counts.sum() * draws
    shares = np.floor(exact)
    missing = int(draws - shares.sum())
    remainder = exact - shares
    for value in np.sort(np.unique(remainder))[::-1]:
        if missing <= 0:
            break
        (tied,) = np.where(remainder == value)
        take = min(len(tied), missing)
        shares[rng.choice(tied, size=take, replace=False)] += 1
        missing -= take
    return shares.astype(int)


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
