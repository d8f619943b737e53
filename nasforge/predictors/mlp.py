"""The other surrogate PNAS compares: an ensemble of small MLPs on the space's fixed-length
encoding (:class:`~nasforge.space.encoding.Encoder`), scikit-learn's ``MLPRegressor``.

Unlike the LSTM it sees every decision as its own column, so a block no trained cell had is a
column it has only ever seen as zero: it ranks bigger cells by what the smaller ones share.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor

from nasforge.errors import ConfigError
from nasforge.predictors.base import standardise
from nasforge.predictors.folds import member_rows
from nasforge.space.blas import one_blas_thread
from nasforge.space.encoding import Encoder
from nasforge.space.schema import Schema
from nasforge.types import ArchDict


class MlpEnsemble:
    """``members`` MLPs (two hidden layers of ``hidden``); member m learns from all pairs but the
    m-th fold, from its own initialisation."""

    def __init__(self, members: int = 5, hidden: int = 64, epochs: int = 300, alpha: float = 1e-3):
        for name, value in (("members", members), ("hidden", hidden), ("epochs", epochs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Invalid {name} for the mlp surrogate: {value!r} (must be an int >= 1)")
        self.members, self.hidden, self.epochs, self.alpha = members, hidden, epochs, float(alpha)
        self.models: list[MLPRegressor] = []

    def bind(self, schema: Schema) -> None:
        self.encoder = Encoder(schema)

    def fit(self, archs: Sequence[ArchDict], losses: np.ndarray, seed: int) -> None:
        z, _, _ = standardise(np.asarray(losses, dtype=np.float64))
        x = self.encoder.encode_many(archs)
        self.models = []
        for m, rows in enumerate(member_rows(len(archs), self.members, seed)):
            model = MLPRegressor(hidden_layer_sizes=(self.hidden, self.hidden), alpha=self.alpha, learning_rate_init=0.01,
                                 max_iter=self.epochs, random_state=seed + m)
            with warnings.catch_warnings(), one_blas_thread():
                warnings.simplefilter("ignore", ConvergenceWarning)
                self.models.append(model.fit(x[rows], z[rows]))

    def predict_members(self, archs: Sequence[ArchDict]) -> np.ndarray:
        x = self.encoder.encode_many(archs)
        with one_blas_thread():
            return np.stack([model.predict(x) for model in self.models])
