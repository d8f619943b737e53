"""Which pairs each ensemble member learns from."""
from __future__ import annotations

import numpy as np


def member_rows(n: int, members: int, seed: int) -> list[np.ndarray]:
    """Member m gets every row but the m-th of ``members`` random folds (all rows when there is
    one member, or too few rows for every fold to leave at least 3 to learn from)."""
    if members == 1 or n - -(-n // members) < 3:
        return [np.arange(n) for _ in range(members)]
    folds = np.array_split(np.random.default_rng(seed).permutation(n), members)
    return [np.sort(np.concatenate([f for j, f in enumerate(folds) if j != m])) for m in range(members)]
