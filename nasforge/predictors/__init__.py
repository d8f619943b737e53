"""Surrogates of a study's objective: learned from (architecture, loss) pairs, they rank
architectures nobody has trained yet ("rank many, train few"). PNAS's progressive strategy and
the predictor-guided strategy use them; either kind works on any space's schema."""
from __future__ import annotations

from nasforge.predictors.base import Surrogate, spearman
from nasforge.registry import Registry

SURROGATES: Registry = Registry("surrogate", {
    "lstm": "nasforge.predictors.lstm:LstmEnsemble",
    "mlp": "nasforge.predictors.mlp:MlpEnsemble",
})

__all__ = ["SURROGATES", "Surrogate", "spearman"]
