"""HC2 with a unit the model fits exactly: finite, HC1-sized, never ±1e8."""

from __future__ import annotations

import numpy as np

from attribution.stats import hc2_covariance


def test_a_unit_with_leverage_one_gives_a_finite_covariance() -> None:
    rng = np.random.default_rng(3)
    n = 40
    x = np.column_stack([np.ones(n), rng.normal(size=n), np.zeros(n)])
    x[7, 2] = 1.0  # a covariate only one unit has: that unit's leverage is 1
    y = x @ np.array([1.0, 2.0, 3.0]) + rng.normal(size=n)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    resid[7] += 1e-2  # the rounding error HC2 would divide by 1 - h ~ 0
    cov = hc2_covariance(x, resid)
    # Dividing by 1 - h (clipped at 1e-8) made this coefficient's SE 100; HC1 gives ~0.18.
    assert np.all(np.sqrt(np.diag(cov)) < 1.0), np.sqrt(np.diag(cov))


def test_without_high_leverage_it_is_plain_hc2() -> None:
    rng = np.random.default_rng(4)
    x = np.column_stack([np.ones(50), rng.normal(size=50)])
    resid = rng.normal(size=50)
    inv = np.linalg.inv(x.T @ x)
    h = np.einsum("ij,jk,ik->i", x, inv, x)
    expected = inv @ ((x * (resid**2 / (1 - h))[:, None]).T @ x) @ inv
    assert np.allclose(hc2_covariance(x, resid), expected)


def test_a_collinear_interaction_gives_a_finite_covariance() -> None:
    rng = np.random.default_rng(5)
    n = 60
    z = rng.normal(size=n)
    x = np.column_stack([np.ones(n), z, z + 1e-7 * rng.normal(size=n)])  # z twice, nearly
    y = 2 * z + rng.normal(size=n)
    coef = np.linalg.pinv(x) @ y
    cov = hc2_covariance(x, y - x @ coef)
    # A plain inverse gave SEs of 1.6e6 for z's two columns here.
    assert np.all(np.sqrt(np.diag(cov)) < 1.0), np.sqrt(np.diag(cov))
