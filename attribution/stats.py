"""Small statistics shared by the estimators: normal intervals, robust OLS covariance, ratios.

Every effect in the report is an `Estimate`; CIs are normal-approximation intervals from a
standard error the estimator derived analytically (robust sandwich or influence function),
so no bootstrap loop is needed even at a million users.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps


def z_value(alpha: float) -> float:
    return float(sps.norm.ppf(1.0 - alpha / 2.0))


def p_value(effect: float, se: float) -> float:
    if not math.isfinite(se) or se <= 0:
        return float("nan")
    return float(2.0 * sps.norm.sf(abs(effect) / se))


@dataclass(frozen=True)
class Estimate:
    """An absolute uplift per unit with its CI, and the same relative to the control mean."""

    estimator: str
    effect: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    control_mean: float
    relative: float
    relative_ci_low: float
    relative_ci_high: float
    n_treated: int
    n_control: int

    def significant(self, alpha: float) -> bool:
        return bool(self.p_value < alpha)

    def covers(self, value: float) -> bool:
        return bool(self.ci_low <= value <= self.ci_high)

    def to_dict(self) -> dict[str, Any]:
        return {k: _clean(v) for k, v in asdict(self).items()}


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: report them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def make_estimate(
    estimator: str,
    effect: float,
    se: float,
    control_mean: float,
    relative_se: float,
    n_treated: int,
    n_control: int,
    alpha: float,
) -> Estimate:
    z = z_value(alpha)
    relative = effect / control_mean if control_mean else float("nan")
    return Estimate(
        estimator=estimator,
        effect=float(effect),
        se=float(se),
        ci_low=float(effect - z * se),
        ci_high=float(effect + z * se),
        p_value=p_value(effect, se),
        control_mean=float(control_mean),
        relative=float(relative),
        relative_ci_low=float(relative - z * relative_se),
        relative_ci_high=float(relative + z * relative_se),
        n_treated=int(n_treated),
        n_control=int(n_control),
    )


def ratio_se(effect: float, base: float, var_effect: float, var_base: float, cov: float) -> float:
    """Delta-method standard error of effect / base."""
    if not base:
        return float("nan")
    grad_e, grad_b = 1.0 / base, -effect / base**2
    var = grad_e**2 * var_effect + grad_b**2 * var_base + 2 * grad_e * grad_b * cov
    return math.sqrt(max(var, 0.0))


def difference_in_means(
    y: np.ndarray, treated: np.ndarray, estimator: str, alpha: float
) -> Estimate:
    """Welch difference of means, treated minus control (no adjustment at all)."""
    y1, y0 = y[treated], y[~treated]
    m1, m0 = float(y1.mean()), float(y0.mean())
    v1 = float(y1.var(ddof=1)) / y1.size if y1.size > 1 else float("nan")
    v0 = float(y0.var(ddof=1)) / y0.size if y0.size > 1 else float("nan")
    effect = m1 - m0
    se = math.sqrt(v1 + v0)
    # effect and the control mean share the control sample: cov(m1 - m0, m0) = -var(m0).
    rel_se = ratio_se(effect, m0, v1 + v0, v0, -v0)
    return make_estimate(estimator, effect, se, m0, rel_se, y1.size, y0.size, alpha)


def influence_estimate(
    psi1: np.ndarray, psi0: np.ndarray, treated: np.ndarray, estimator: str, alpha: float
) -> Estimate:
    """Estimate from per-unit influence values of the two potential-outcome means."""
    n = psi1.size
    diff = psi1 - psi0
    effect, base = float(diff.mean()), float(psi0.mean())
    cov = np.cov(np.vstack([diff, psi0])) / n
    se = math.sqrt(max(float(cov[0, 0]), 0.0))
    rel_se = ratio_se(effect, base, float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1]))
    return make_estimate(
        estimator, effect, se, base, rel_se, int(treated.sum()), int((~treated).sum()), alpha
    )


def _xtx_inverse(exog: np.ndarray) -> np.ndarray:
    """(XᵀX)⁻¹, as a pseudo-inverse that drops directions the data cannot tell apart.

    A covariate that is (nearly) constant within a small arm makes a treatment interaction
    collinear: a plain inverse then returns ~1e15 entries and a 95% interval of ±1e9 (seen on
    the 150-user demo). OLS itself (statsmodels) fits with a pseudo-inverse; so do we.
    """
    xtx = exog.T @ exog
    return np.asarray(np.linalg.pinv(xtx, rcond=1e-10, hermitian=True))


def hc2_covariance(
    exog: np.ndarray, resid: np.ndarray, xtx_inv: np.ndarray | None = None
) -> np.ndarray:
    """HC2 sandwich covariance of OLS coefficients (leverage-corrected; Lin 2013 uses it)."""
    xtx_inv = _xtx_inverse(exog) if xtx_inv is None else xtx_inv
    leverage = np.einsum("ij,ij->i", exog @ xtx_inv, exog)
    return _hc2(exog, resid, xtx_inv, leverage)


# A unit the model fits (almost) exactly: HC2's 1/(1 - h) blows its rounding error up into an
# interval of ±1e8 (a covariate non-zero for one user of a small arm). Such a fit falls back
# to HC1's degrees-of-freedom scaling, which stays finite and is HC2's large-sample limit.
MAX_LEVERAGE = 0.99


def _hc2(
    exog: np.ndarray, resid: np.ndarray, xtx_inv: np.ndarray, leverage: np.ndarray
) -> np.ndarray:
    if np.any(leverage > MAX_LEVERAGE):
        n, k = exog.shape
        scale = resid**2 * (n / max(n - k, 1))
    else:
        scale = resid**2 / (1.0 - leverage)
    meat = (exog * scale[:, None]).T @ exog
    return np.asarray(xtx_inv @ meat @ xtx_inv)


def ols_adjusted(
    outcomes: dict[str, np.ndarray],
    treated: np.ndarray,
    covariates: np.ndarray,
    estimator: str,
    alpha: float,
) -> dict[str, Estimate]:
    """Regression adjustment with treatment × centred-covariate interactions (Lin 2013).

    The treatment coefficient is then the average effect over the sample, valid with
    heterogeneous effects; the intercept is the adjusted control mean. Used for segments and
    secondary outcomes, where a full DoWhy model per cell would add nothing. The design, its
    inverse and the leverages are shared by all outcomes.
    """
    t = treated.astype(float)
    if covariates.size:
        xc = covariates - covariates.mean(axis=0)
        xc = xc[:, xc.std(axis=0) > 0]
    else:
        xc = np.empty((t.size, 0))
    exog = np.column_stack([np.ones_like(t), t, xc, xc * t[:, None]])
    xtx_inv = _xtx_inverse(exog)
    leverage = np.einsum("ij,ij->i", exog @ xtx_inv, exog)
    n_t, n_c = int(treated.sum()), int((~treated).sum())
    out = {}
    for name, y in outcomes.items():
        coef = xtx_inv @ (exog.T @ y)
        cov = _hc2(exog, y - exog @ coef, xtx_inv, leverage)
        effect, base = float(coef[1]), float(coef[0])
        rel_se = ratio_se(effect, base, cov[1, 1], cov[0, 0], cov[0, 1])
        out[name] = make_estimate(
            estimator, effect, math.sqrt(max(cov[1, 1], 0.0)), base, rel_se, n_t, n_c, alpha
        )
    return out


def standardized_mean_differences(
    covariates: np.ndarray, treated: np.ndarray, names: list[str]
) -> dict[str, float]:
    """|mean_t - mean_c| / pooled sd per covariate: > 0.1 is the usual imbalance flag."""
    out = {}
    for j, name in enumerate(names):
        x1, x0 = covariates[treated, j], covariates[~treated, j]
        pooled = math.sqrt((x1.var() + x0.var()) / 2.0)
        out[name] = float(abs(x1.mean() - x0.mean()) / pooled) if pooled > 0 else 0.0
    return out


def arm_influence(
    y: np.ndarray, treated: np.ndarray, covariates: np.ndarray
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Adjusted arm means (mu1, mu0) and per-unit influence values (psi1, psi0) (Lin 2013).

    Each arm gets its own OLS on covariates centred over the whole sample; the arm's adjusted
    mean is the average prediction over everyone, and psi_a = m_a(x) + w · 1[arm a] · (y −
    m_a(x)) has that mean, with w = n · e₀ᵀ(X_aᵀX_a)⁻¹x the regression's implied weight of each
    unit of arm a in predicting the whole-sample mean. Under randomisation w ≈ 1/share_a; when
    the arms differ in their covariates w is what carries the residual noise to the other arm's
    covariate mix (with 1/share_a a confounded CTR's mean SE was 0.00172 against an actual spread
    of 0.00213 over 60 seeds of 3,000 users; with w 0.00202). Without
    covariates psi reduces to the plain arm means, so every metric (ratio or not) gets one SE
    recipe from the same per-unit values. Residuals are leverage-corrected (e / sqrt(1 − h), as
    HC2 does) for the variance, so psi's mean is not exactly mu; use mu for the point estimate.
    """
    t = treated.astype(bool)
    xc = covariates - covariates.mean(axis=0) if covariates.size else covariates
    if xc.size:
        xc = xc[:, xc.std(axis=0) > 0]
    design = np.column_stack([np.ones(t.size), xc]) if xc.size else np.ones((t.size, 1))
    means, out = [], []
    for arm in (t, ~t):
        xa = design[arm]
        inv = _xtx_inverse(xa)
        coef = inv @ (xa.T @ y[arm])
        fitted = design @ coef
        # Row 0 of (X_aᵀX_a)⁻¹: the intercept's (= the adjusted mean's) linear weights.
        weight = t.size * (design @ inv[0])
        leverage = np.einsum("ij,jk,ik->i", design, inv, design)
        if np.any(leverage[arm] > MAX_LEVERAGE):  # as in _hc2: HC1 scaling
            n, k = xa.shape
            resid = (y - fitted) * np.sqrt(n / max(n - k, 1))
        else:
            resid = (y - fitted) / np.sqrt(np.clip(1.0 - leverage, 1e-8, None))
        means.append(float(coef[0]))
        out.append(fitted + arm * weight * resid)
    return means[0], means[1], out[0], out[1]


def metric_estimate(
    numerator: np.ndarray,
    denominator: np.ndarray | None,
    treated: np.ndarray,
    covariates: np.ndarray,
    estimator: str,
    alpha: float,
) -> Estimate:
    """Treated minus control of mean(numerator) [/ mean(denominator)], covariate-adjusted.

    A ratio metric (clicks per impression) is a ratio of two adjusted means per arm; its SE comes
    from the delta method on the per-unit influence values, so users (not impressions) stay the
    independent units even though the ratio is per impression.
    """
    t = treated.astype(bool)
    n = t.size
    n1, n0 = int(t.sum()), int(n - t.sum())
    if n1 < 2 or n0 < 2:
        nan = float("nan")
        return Estimate(estimator, nan, nan, nan, nan, nan, nan, nan, nan, nan, n1, n0)
    m1, m0, p1, p0 = arm_influence(numerator.astype(float), t, covariates)
    if denominator is None:
        r1, r0, inf1, inf0 = m1, m0, p1, p0
    else:
        d1, d0, q1, q0 = arm_influence(denominator.astype(float), t, covariates)
        r1 = m1 / d1 if d1 else float("nan")
        r0 = m0 / d0 if d0 else float("nan")
        inf1 = (p1 - r1 * q1) / d1 if d1 else np.full(n, np.nan)
        inf0 = (p0 - r0 * q0) / d0 if d0 else np.full(n, np.nan)
    diff = inf1 - inf0
    cov = np.cov(np.vstack([diff, inf0])) / n
    effect, base = float(r1 - r0), float(r0)
    se = math.sqrt(max(float(cov[0, 0]), 0.0))
    rel_se = ratio_se(effect, base, float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1]))
    return make_estimate(estimator, effect, se, base, rel_se, n1, n0, alpha)


def minimum_detectable_effect(se: float, alpha: float, power: float = 0.8) -> float:
    """Smallest true effect a two-sided test at `alpha` detects with `power`, given the SE."""
    if not math.isfinite(se) or se <= 0:
        return float("nan")
    return float((z_value(alpha) + sps.norm.ppf(power)) * se)


def users_needed(se: float, users: int, effect: float, alpha: float, power: float = 0.8) -> float:
    """Users (at the same split and variance) for `effect` to be detected with `power`: the SE
    shrinks as 1/sqrt(users)."""
    if not math.isfinite(se) or se <= 0 or effect == 0:
        return float("nan")
    return float(users * ((z_value(alpha) + sps.norm.ppf(power)) * se / abs(effect)) ** 2)
