"""The GP surrogate computes what scikit-learn's GaussianProcessRegressor computes for the same
kernel (ConstantKernel * Matern(nu=2.5) + WhiteKernel, normalize_y): likelihood, gradient,
fitted hyperparameters and posterior."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from nasforge.strategies import gp


def _sklearn_kernel(n_scales: int):
    scale = np.ones(n_scales) if n_scales > 1 else 1.0
    return (ConstantKernel(1.0, gp.CONSTANT_BOUNDS) * Matern(scale, gp.SCALE_BOUNDS, nu=2.5)
            + WhiteKernel(1e-2, gp.NOISE_BOUNDS))


def _data(n: int, dims: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.random((n, dims))
    y = np.sin(3 * x).sum(1) + 0.1 * rng.standard_normal(n) + 5.0
    return x, y


def _lbfgs(objective, initial, bounds):
    return minimize(objective, initial, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": 40}).x


@pytest.mark.parametrize("n_scales", [1, 3])
def test_theta_bounds_likelihood_and_gradient_are_scikit_learns(n_scales):
    x, y = _data(30, 3, 0)
    kernel = _sklearn_kernel(n_scales)
    np.testing.assert_allclose(gp.initial_theta(n_scales), kernel.theta)
    np.testing.assert_allclose(gp.bounds(n_scales), kernel.bounds)
    reference = GaussianProcessRegressor(kernel, normalize_y=True, optimizer=None).fit(x, y)
    rng = np.random.default_rng(1)
    for _ in range(5):
        theta = kernel.theta + rng.normal(0, 0.7, len(kernel.theta))
        want, want_grad = reference.log_marginal_likelihood(theta, eval_gradient=True)
        ours = gp.GaussianProcess(theta, x, y)
        got, got_grad = gp.log_marginal_likelihood(theta, ours.x, ours.y)
        assert got == pytest.approx(want, rel=1e-9)
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("n_scales", [1, 4])
def test_a_fit_and_its_posterior_are_scikit_learns(n_scales):
    x, y = _data(40, 4, 2)
    reference = GaussianProcessRegressor(_sklearn_kernel(n_scales), normalize_y=True,
                                         optimizer=lambda f, t, bounds: (_lbfgs(f, t, bounds), 0.0)).fit(x, y)
    ours = gp.GaussianProcess(gp.initial_theta(n_scales), x, y, _lbfgs)
    np.testing.assert_allclose(ours.theta, reference.kernel_.theta, rtol=1e-6, atol=1e-6)
    grid = np.random.default_rng(3).random((50, 4))
    mean, std = reference.predict(grid, return_std=True)
    got_mean, got_std = ours.predict(grid)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got_std, std, rtol=1e-6, atol=1e-8)


def test_a_constant_target_and_a_singular_kernel_are_handled_as_scikit_learn_does():
    x = np.zeros((5, 2))
    model = gp.GaussianProcess(gp.initial_theta(1), x, np.full(5, 3.0))
    mean, std = model.predict(np.ones((2, 2)))
    np.testing.assert_allclose(mean, 3.0)
    assert np.all(np.isfinite(std))
    value, grad = gp.log_marginal_likelihood(np.log([1e20, 1.0, 1e-300]), x, np.arange(5.0))  # rank one
    assert value == -np.inf and not grad.any()


def test_a_bo_search_never_imports_scikit_learn(tmp_path):
    import subprocess
    import sys
    import textwrap

    config = tmp_path / "bo.yaml"
    config.write_text("space: mlp\ndataset: iris\nstrategy: {name: bayesopt, args: {n_initial: 4, batch_size: 2}}\n"
                      "trials: 8\nbudget: 1\n")
    code = textwrap.dedent(f"""
        import sys
        from nasforge.cli import main
        try:
            main(["search", {str(config)!r}, "--out", {str(tmp_path / "study")!r}, "--quiet"])
        except SystemExit as exc:
            assert not exc.code, exc.code
        print("sklearn" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
