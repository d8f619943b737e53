"""Fixed, seeded splits and scaling fitted on the training split only."""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from nasforge.errors import ConfigError

SCALINGS = ("minmax", "standard", "none")


def split(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int, stratify: bool) -> tuple[np.ndarray, ...]:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"Invalid val_fraction: {val_fraction!r:.40} (must be a number between 0 and 1)")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"Invalid seed: {seed!r:.40} (must be an int in [0, 2**32))")
    strat = y if stratify and _stratifiable(y, val_fraction) else None
    return tuple(train_test_split(x, y, test_size=val_fraction, random_state=seed, stratify=strat))


def _stratifiable(y: np.ndarray, val_fraction: float) -> bool:
    _, counts = np.unique(y, return_counts=True)
    return counts.min() >= 2 and len(counts) <= len(y) * min(val_fraction, 1 - val_fraction)


def scale(x_train: np.ndarray, *others: np.ndarray | None, method: str = "minmax") -> list[np.ndarray | None]:
    if method not in SCALINGS:
        raise ConfigError(f"Invalid scaling {method!r}; allowed: {', '.join(SCALINGS)}")
    if method == "none":
        return [x_train, *others]
    scaler = (MinMaxScaler() if method == "minmax" else StandardScaler()).fit(x_train.reshape(len(x_train), -1))

    def apply(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else scaler.transform(a.reshape(len(a), -1)).reshape(a.shape)

    return [apply(x_train), *(apply(a) for a in others)]
