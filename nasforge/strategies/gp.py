"""The GP surrogate of :mod:`nasforge.strategies.bayesopt`: a constant times a Matern 5/2 kernel
(one length scale per input, or one for all) plus white noise, on standardised targets.

This is scikit-learn's ``GaussianProcessRegressor(ConstantKernel * Matern(nu=2.5) + WhiteKernel,
normalize_y=True)``, computed as it computes it (the same hyperparameter vector, bounds,
likelihood, gradient and posterior: ``tests/test_gp.py`` checks them against it), in numpy and
SciPy only: importing scikit-learn's GP costs ~0.8 s of a fresh process, more than half of the
chapter's whole BO search on iris.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy.linalg import cho_solve, solve_triangular

CONSTANT_BOUNDS, SCALE_BOUNDS, NOISE_BOUNDS = (1e-3, 1e3), (0.1, 10.0), (1e-6, 1.0)
JITTER = 1e-10  # added to the training kernel's diagonal, as scikit-learn's default alpha


def initial_theta(n_scales: int) -> np.ndarray:
    """log(constant 1, length scales 1, noise 1e-2): scikit-learn's order and starting point."""
    return np.log(np.array([1.0] + [1.0] * n_scales + [1e-2]))


def bounds(n_scales: int) -> np.ndarray:
    return np.log(np.array([CONSTANT_BOUNDS] + [SCALE_BOUNDS] * n_scales + [NOISE_BOUNDS]))


def _matern(x: np.ndarray, z: np.ndarray, scales: np.ndarray) -> np.ndarray:
    d = np.sqrt(np.maximum(_sq_dists(x / scales, z / scales), 0.0)) * math.sqrt(5.0)
    return (1.0 + d + d * d / 3.0) * np.exp(-d)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def log_marginal_likelihood(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The log marginal likelihood of standardised targets ``y`` and its gradient in ``theta``
    (-inf and a zero gradient where the kernel matrix is not positive definite)."""
    c, scales, noise = math.exp(theta[0]), np.exp(theta[1:-1]), math.exp(theta[-1])
    diff2 = (x[:, None, :] - x[None, :, :]) ** 2 / scales ** 2  # (n, n, dims), each dim scaled
    if len(scales) == 1:
        diff2 = diff2.sum(-1, keepdims=True)
    root = np.sqrt(5.0 * diff2.sum(-1))
    matern = (1.0 + root + root * root / 3.0) * np.exp(-root)
    K = c * matern + (noise + JITTER) * np.eye(len(x))
    try:
        L = np.linalg.cholesky(K)
    except np.linalg.LinAlgError:
        return -np.inf, np.zeros_like(theta)
    alpha = cho_solve((L, True), y)
    value = -0.5 * y @ alpha - np.log(np.diag(L)).sum() - 0.5 * len(x) * math.log(2 * math.pi)
    inner = np.outer(alpha, alpha) - cho_solve((L, True), np.eye(len(x)))
    scale_grads = c * 5.0 / 3.0 * diff2 * ((1.0 + root) * np.exp(-root))[..., None]  # d K / d log scale
    grad = 0.5 * np.concatenate([[np.sum(inner * c * matern)], np.einsum("ij,jik->k", inner, scale_grads),
                                 [noise * np.trace(inner)]])
    return float(value), grad


Optimizer = Callable[[Callable[[np.ndarray], tuple[float, np.ndarray]], np.ndarray, np.ndarray], np.ndarray]
"""(objective returning (value, gradient) to minimise, initial theta, bounds) -> theta."""


class GaussianProcess:
    """Fitted on ``x`` (n, dims) and ``y`` (n,) with hyperparameters ``theta`` (log), which an
    ``optimizer`` first moves to a maximum of the likelihood when given one."""

    def __init__(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray, optimizer: Optimizer | None = None):
        self.x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self.y_mean = float(y.mean())
        std = float(y.std())
        self.y_std = std if std >= 10 * np.finfo(np.float64).eps else 1.0  # a constant target: no scaling
        self.y = (y - self.y_mean) / self.y_std
        theta = np.asarray(theta, dtype=np.float64)
        if optimizer is not None:
            theta = optimizer(self._negative_lml, theta, bounds(len(theta) - 2))
        self.theta = theta
        c, self.scales, self.noise = math.exp(theta[0]), np.exp(theta[1:-1]), math.exp(theta[-1])
        self.c = c
        K = c * _matern(self.x, self.x, self.scales) + (self.noise + JITTER) * np.eye(len(self.x))
        self.L = np.linalg.cholesky(K)
        self.alpha = cho_solve((self.L, True), self.y)

    def _negative_lml(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = log_marginal_likelihood(theta, self.x, self.y)
        return -value, -grad

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation (of a noisy observation, as scikit-learn's)."""
        x = np.asarray(x, dtype=np.float64)
        k = self.c * _matern(x, self.x, self.scales)
        mean = k @ self.alpha
        v = solve_triangular(self.L, k.T, lower=True)
        var = np.maximum(self.c + self.noise - np.einsum("ij,ij->j", v, v), 0.0)
        return mean * self.y_std + self.y_mean, np.sqrt(var) * self.y_std
