"""DoWhy causal core: explicit graph → identify → estimate (≥ 2 estimators) → refute.

One comparison = users of one version vs users of the control version. Covariates are
standardised over the comparison sample, so with treatment × covariate interactions the
regression's treatment coefficient *is* the average effect and its intercept the adjusted
control mean. Point estimates come from DoWhy; standard errors are analytic (HC2 sandwich on
DoWhy's fitted OLS, influence functions for the propensity estimators) because DoWhy only
offers bootstrap intervals for these, which would not fit the 1 M-user budget.

Checked on planted effects (see `bench.attribution_studies`): linear regression with interactions
and the doubly robust estimator are unbiased on the confounded simulation; DoWhy's
propensity_score_weighting clips scores to [0.05, 0.95], which biases it when a version goes
almost only to one segment, so it is not a default estimator.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from attribution.config import AttributionConfig
from attribution.errors import EstimationError
from attribution.stats import Estimate, hc2_covariance, influence_estimate, make_estimate, ratio_se

TREATMENT = "treated"
OUTCOME = "revenue"
# Mechanism chain the treatment acts through; in the graph for honesty, never adjusted for.
MEDIATORS = ("impressions", "clicks", "attributed_purchases")
DR_PS_BOUNDS = (0.01, 0.99)  # DoWhy's DoublyRobustEstimator defaults
PSW_PS_BOUNDS = (0.05, 0.95)  # DoWhy's PropensityScoreWeightingEstimator defaults

REFUTERS = (
    "placebo_treatment_refuter",
    "random_common_cause",
    "data_subset_refuter",
    "add_unobserved_common_cause",
)

logging.getLogger("dowhy").setLevel(logging.ERROR)


def causal_graph(covariates: Iterable[str]) -> nx.DiGraph:
    """Pre-exposure covariates confound assignment and every outcome; the version acts on
    revenue through exposure → clicks → purchases and directly (order value, organic)."""
    graph = nx.DiGraph()
    chain = [TREATMENT, *MEDIATORS, OUTCOME]
    graph.add_edges_from(pairwise(chain))
    graph.add_edges_from((TREATMENT, node) for node in chain[2:])
    for cov in covariates:
        graph.add_edges_from((cov, node) for node in chain)
    return graph


def graph_edges(covariates: Iterable[str]) -> list[list[str]]:
    return [[a, b] for a, b in causal_graph(covariates).edges]


def comparison_frame(
    users: pd.DataFrame, covariates: list[str], version: str, control: str
) -> tuple[pd.DataFrame, list[str]]:
    """Users of `version` or `control`, treatment 0/1, covariates standardised (constants
    dropped)."""
    rows = users[users["version"].isin([version, control])]
    frame = pd.DataFrame(
        {
            TREATMENT: (rows["version"].to_numpy() == version).astype(np.int64),
            OUTCOME: rows[OUTCOME].to_numpy(dtype=float),
        }
    )
    for name in MEDIATORS:
        frame[name] = rows[name].to_numpy(dtype=float)
    kept = []
    for name in covariates:
        x = rows[name].to_numpy(dtype=float)
        sd = float(x.std())
        if sd > 0:
            frame[name] = (x - x.mean()) / sd
            kept.append(name)
    return frame, kept


@dataclass(frozen=True)
class RefuterResult:
    name: str
    status: str  # pass | fail | warn | error
    estimated_effect: float
    new_effect: float
    p_value: float | None
    simulations: int
    sample_size: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("estimated_effect", "new_effect", "p_value"):
            value = out[key]
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        return out


@dataclass
class CausalResult:
    version: str
    control: str
    estimand: str
    adjustment_set: list[str]
    estimates: list[Estimate]
    treated: np.ndarray
    propensity: np.ndarray | None
    refuters: list[RefuterResult] = field(default_factory=list)
    refuter_sample_size: int = 0

    @property
    def primary(self) -> Estimate:
        return self.estimates[0]


class _Model:
    """A DoWhy CausalModel on one comparison frame plus its identified estimand."""

    def __init__(self, frame: pd.DataFrame, covariates: list[str]) -> None:
        from dowhy import CausalModel

        self.frame = frame
        self.covariates = covariates
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model = CausalModel(
                    data=frame, treatment=TREATMENT, outcome=OUTCOME, graph=causal_graph(covariates)
                )
                self.estimand = self.model.identify_effect(proceed_when_unidentifiable=True)
        except Exception as exc:
            raise EstimationError(f"DoWhy could not identify the effect: {exc}") from exc
        backdoor = self.estimand.get_backdoor_variables()
        if set(backdoor) != set(covariates):
            raise EstimationError(
                f"identified adjustment set {sorted(backdoor)} differs from the pre-exposure "
                f"covariates {sorted(covariates)}: the graph no longer says what we assume"
            )

    def estimate(self, method: str, alpha: float) -> tuple[Any, Estimate, np.ndarray | None]:
        """(DoWhy estimate, Estimate with analytic SE, raw propensity scores if fitted)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return _ESTIMATORS[method](self, alpha)
            except EstimationError:
                raise
            except Exception as exc:
                raise EstimationError(f"{method} failed on {len(self.frame)} units: {exc}") from exc


def _linear_regression(m: _Model, alpha: float) -> tuple[Any, Estimate, None]:
    method = "backdoor.linear_regression"
    est = m.model.estimate_effect(
        m.estimand,
        method_name=method,
        effect_modifiers=m.covariates,
        method_params={"need_conditional_estimates": False},
    )
    ols = est.estimator.model
    params = np.asarray(ols.params)
    if not math.isclose(params[1], est.value, rel_tol=1e-6, abs_tol=1e-9):
        raise EstimationError(
            f"treatment coefficient {params[1]} != DoWhy effect {est.value}: covariates not centred"
        )
    cov = hc2_covariance(np.asarray(ols.model.exog), np.asarray(ols.resid))
    t = m.frame[TREATMENT].to_numpy()
    rel_se = ratio_se(params[1], params[0], cov[1, 1], cov[0, 0], cov[0, 1])
    result = make_estimate(
        method,
        float(est.value),
        math.sqrt(max(cov[1, 1], 0.0)),
        float(params[0]),
        rel_se,
        int(t.sum()),
        int(t.size - t.sum()),
        alpha,
    )
    return est, result, None


def _doubly_robust(m: _Model, alpha: float) -> tuple[Any, Estimate, np.ndarray]:
    method = "backdoor.doubly_robust"
    est = m.model.estimate_effect(
        m.estimand,
        method_name=method,
        effect_modifiers=[],
        method_params={"propensity_score_model": LogisticRegression(max_iter=1000)},
    )
    frame = m.frame
    y = frame[OUTCOME].to_numpy(dtype=float)
    t = frame[TREATMENT].to_numpy() == 1
    mu1 = np.asarray(est.estimator.regression_model.interventional_outcomes(frame, 1), dtype=float)
    mu0 = np.asarray(est.estimator.regression_model.interventional_outcomes(frame, 0), dtype=float)
    raw = np.asarray(est.estimator.propensity_score_model.predict_proba(frame)[:, 1], dtype=float)
    ps = np.clip(raw, *DR_PS_BOUNDS)
    psi1 = mu1 + t * (y - mu1) / ps
    psi0 = mu0 + (~t) * (y - mu0) / (1.0 - ps)
    result = influence_estimate(psi1, psi0, t, method, alpha)
    _check_same(method, result.effect, est.value)
    return est, result, raw


def _propensity_weighting(m: _Model, alpha: float) -> tuple[Any, Estimate, np.ndarray]:
    method = "backdoor.propensity_score_weighting"
    # DoWhy writes weight columns into the data it is given: hand it a copy.
    data = m.frame.copy()
    est = m.model.estimate_effect(m.estimand, method_name=method, effect_modifiers=[])
    est.estimator.estimate_effect(data, target_units="ate")
    y = data[OUTCOME].to_numpy(dtype=float)
    t = data[TREATMENT].to_numpy() == 1
    ps = data["propensity_score"].to_numpy(dtype=float)  # already clipped by DoWhy
    w1, w0 = t / ps, (~t) / (1.0 - ps)
    mu1, mu0 = float((w1 * y).sum() / w1.sum()), float((w0 * y).sum() / w0.sum())
    n = y.size
    psi1 = mu1 + n * w1 * (y - mu1) / w1.sum()
    psi0 = mu0 + n * w0 * (y - mu0) / w0.sum()
    result = influence_estimate(psi1, psi0, t, method, alpha)
    _check_same(method, result.effect, est.value)
    return est, result, ps


def _check_same(method: str, ours: float, dowhy_value: float) -> None:
    if not math.isclose(ours, float(dowhy_value), rel_tol=1e-6, abs_tol=1e-6):
        raise EstimationError(f"{method}: influence-function effect {ours} != DoWhy {dowhy_value}")


_ESTIMATORS = {
    "backdoor.linear_regression": _linear_regression,
    "backdoor.doubly_robust": _doubly_robust,
    "backdoor.propensity_score_weighting": _propensity_weighting,
}


def fit_propensity(frame: pd.DataFrame, covariates: list[str]) -> np.ndarray:
    """P(version | covariates) by logistic regression, for the overlap checks."""
    t = frame[TREATMENT].to_numpy()
    if not covariates:
        return np.full(t.size, t.mean(), dtype=float)
    model = LogisticRegression(max_iter=1000).fit(frame[covariates].to_numpy(), t)
    return np.asarray(model.predict_proba(frame[covariates].to_numpy())[:, 1], dtype=float)


def estimate_version(
    users: pd.DataFrame,
    covariates: list[str],
    version: str,
    control: str,
    cfg: AttributionConfig,
    refute: bool = True,
    progress: bool = False,
    primary_only: bool = False,
) -> CausalResult:
    """All configured estimators (primary first) and, if asked, the refuters for one version."""
    frame, kept = comparison_frame(users, covariates, version, control)
    t = frame[TREATMENT].to_numpy()
    if t.sum() == 0 or t.sum() == t.size:
        raise EstimationError(
            f"comparison {version} vs {control} needs users in both arms, got "
            f"{int(t.sum())} and {int(t.size - t.sum())}"
        )
    model = _Model(frame, kept)
    estimates, propensity = [], None
    for method in cfg.estimators[:1] if primary_only else cfg.estimators:
        _, estimate, ps = model.estimate(method, cfg.alpha)
        estimates.append(estimate)
        if ps is not None and method == "backdoor.doubly_robust":
            propensity = ps
    if propensity is None and not primary_only:
        propensity = fit_propensity(frame, kept)
    result = CausalResult(
        version=version,
        control=control,
        estimand=str(model.estimand.estimands["backdoor"]["estimand"]),
        adjustment_set=kept,
        estimates=estimates,
        treated=t == 1,
        propensity=propensity,
    )
    if refute:
        result.refuters, result.refuter_sample_size = run_refuters(frame, kept, cfg, progress)
    return result


def run_refuters(
    frame: pd.DataFrame, covariates: list[str], cfg: AttributionConfig, progress: bool = False
) -> tuple[list[RefuterResult], int]:
    """DoWhy refuters for the primary estimator, on a random subsample of at most
    `refuter_max_units` users (each refuter re-fits the estimator `refuter_simulations` times)."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(cfg.seed)
    if len(frame) > cfg.refuter_max_units:
        idx = np.sort(rng.choice(len(frame), size=cfg.refuter_max_units, replace=False))
        sub = frame.iloc[idx].reset_index(drop=True)
        sub, covariates = comparison_frame_restandardise(sub, covariates)
    else:
        sub = frame
    model = _Model(sub, covariates)
    est, base, _ = model.estimate(cfg.primary_estimator, cfg.alpha)
    where = f"on a {len(sub):,}-user subsample: " if len(sub) < len(frame) else ""
    results = []
    for name in tqdm(REFUTERS, desc="refuters", disable=not progress, leave=False):
        np.random.seed(cfg.seed)  # DoWhy draws some noise from the global generator
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = _refute(model, est, base, name, cfg)
            results.append(RefuterResult(**{**r.__dict__, "message": where + r.message}))
        except Exception as exc:
            results.append(
                RefuterResult(
                    name,
                    "error",
                    base.effect,
                    float("nan"),
                    None,
                    0,
                    len(sub),
                    f"refuter could not run: {exc}",
                )
            )
    return results, len(sub)


def comparison_frame_restandardise(
    frame: pd.DataFrame, covariates: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    """Re-centre covariates on a subsample so the regression coefficient stays the ATE."""
    out = frame.copy()
    kept = []
    for name in covariates:
        x = out[name].to_numpy(dtype=float)
        sd = float(x.std())
        if sd > 0:
            out[name] = (x - x.mean()) / sd
            kept.append(name)
        else:
            out = out.drop(columns=name)
    return out, kept


def _refute(
    model: _Model, est: Any, base: Estimate, name: str, cfg: AttributionConfig
) -> RefuterResult:
    sims, n, tol = cfg.refuter_simulations, len(model.frame), cfg.refuter_tolerance_se * base.se
    if name == "add_unobserved_common_cause":
        kappa_y = cfg.sensitivity_outcome_sd * float(model.frame[OUTCOME].std())
        ref = model.model.refute_estimate(
            model.estimand,
            est,
            method_name=name,
            simulation_method="direct-simulation",
            confounders_effect_on_treatment="binary_flip",
            confounders_effect_on_outcome="linear",
            effect_strength_on_treatment=cfg.sensitivity_flip_share,
            effect_strength_on_outcome=kappa_y,
            plotmethod=None,
        )
        new = float(np.mean(ref.new_effect))
        z = base.effect / base.se if base.se > 0 else 0.0
        crit = abs(z) > 1.959963984540054
        flips = np.sign(new) != np.sign(base.effect)
        weakened = crit and abs(new) < 1.959963984540054 * base.se
        status = "warn" if (flips or weakened) else "pass"
        message = (
            f"a hidden confounder flipping {cfg.sensitivity_flip_share:.0%} of assignments and "
            f"moving revenue by {cfg.sensitivity_outcome_sd:g} SD would change the estimate "
            f"from {base.effect:.4g} to {new:.4g}"
            + (" (sign flips)" if flips else " (no longer significant)" if weakened else "")
        )
        return RefuterResult(name, status, base.effect, new, None, 1, n, message)

    # A RandomState, not an int: DoWhy's data_subset_refuter re-seeds with an int on every
    # simulation, drawing the same subset 20 times (zero spread, spurious rejection).
    kwargs: dict[str, Any] = {
        "num_simulations": sims,
        "random_state": np.random.RandomState(cfg.seed),
    }
    if name == "placebo_treatment_refuter":
        kwargs["placebo_type"] = "permute"
    elif name == "data_subset_refuter":
        kwargs["subset_fraction"] = 0.8
    ref = model.model.refute_estimate(model.estimand, est, method_name=name, **kwargs)
    new = float(ref.new_effect)
    sig = ref.refutation_result or {}
    p = sig.get("p_value")
    p_val = float(p) if p is not None else None
    rejected = bool(sig.get("is_statistically_significant", False))
    if name == "placebo_treatment_refuter":
        shift = abs(new)
        what = f"placebo (permuted) treatment gives {new:.4g}, expected ≈ 0"
    else:
        shift = abs(new - base.effect)
        what = f"estimate moves from {base.effect:.4g} to {new:.4g}"
    failed = rejected and shift > tol
    status = "fail" if failed else "pass"
    message = what + (
        f"; DoWhy rejects (p={p_val:.3g}) and the shift exceeds {cfg.refuter_tolerance_se:g} SE"
        if failed
        else ""
    )
    return RefuterResult(name, status, base.effect, new, p_val, sims, n, message)
