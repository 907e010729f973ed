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
from attribution.errors import ConstantOutcomeError, EstimationError
from attribution.metrics import METRICS, Metric
from attribution.stats import (
    Estimate,
    difference_in_means,
    hc2_covariance,
    influence_estimate,
    make_estimate,
    metric_estimate,
    ratio_se,
    z_value,
)

TREATMENT = "treated"
OUTCOME = "revenue"
REVENUE = METRICS["revenue"]
# Estimators that model P(version | covariates): meaningless when no covariate varies.
PROPENSITY_METHODS = ("backdoor.doubly_robust", "backdoor.propensity_score_weighting")
RATIO_ESTIMATOR = "ratio_of_adjusted_means"
FALLBACK_ESTIMATOR = "difference_in_means"
DR_PS_BOUNDS = (0.01, 0.99)  # DoWhy's DoublyRobustEstimator defaults
PSW_PS_BOUNDS = (0.05, 0.95)  # DoWhy's PropensityScoreWeightingEstimator defaults

REFUTERS = (
    "placebo_treatment_refuter",
    "random_common_cause",
    "data_subset_refuter",
    "add_unobserved_common_cause",
)

logging.getLogger("dowhy").setLevel(logging.ERROR)


def causal_graph(covariates: Iterable[str], metric: Metric = REVENUE) -> nx.DiGraph:
    """Pre-exposure covariates confound assignment and every outcome; the version acts on the
    outcome through its mechanism chain (e.g. exposure → clicks → purchases) and directly."""
    graph = nx.DiGraph()
    chain = [TREATMENT, *metric.mediators, metric.column]
    graph.add_edges_from(pairwise(chain))
    graph.add_edges_from((TREATMENT, node) for node in chain[2:])
    for cov in covariates:
        graph.add_edges_from((cov, node) for node in chain)
    return graph


def graph_edges(covariates: Iterable[str], metric: Metric = REVENUE) -> list[list[str]]:
    return [[a, b] for a, b in causal_graph(covariates, metric).edges]


def comparison_frame(
    users: pd.DataFrame,
    covariates: list[str],
    version: str,
    control: str,
    metric: Metric = REVENUE,
) -> tuple[pd.DataFrame, list[str]]:
    """Users of `version` or `control`, treatment 0/1, the metric's columns, covariates
    standardised (constants dropped)."""
    rows = users[users["version"].isin([version, control])]
    frame = pd.DataFrame(
        {
            TREATMENT: (rows["version"].to_numpy() == version).astype(np.int64),
            metric.column: rows[metric.column].to_numpy(dtype=float),
        }
    )
    for name in (*metric.mediators, *([metric.denominator] if metric.denominator else [])):
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
    # Estimators that could not run here, each with the reason (shown in the report).
    skipped: list[dict[str, str]] = field(default_factory=list)
    # Why the refuters did not run (None when they ran or were not asked for).
    refuters_skipped: str | None = None

    @property
    def primary(self) -> Estimate:
        return self.estimates[0]


class _Model:
    """A DoWhy CausalModel on one comparison frame plus its identified estimand."""

    def __init__(
        self, frame: pd.DataFrame, covariates: list[str], metric: Metric = REVENUE
    ) -> None:
        from dowhy import CausalModel

        self.frame = frame
        self.covariates = covariates
        self.outcome = metric.column
        self.metric = metric
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model = CausalModel(
                    data=frame,
                    treatment=TREATMENT,
                    outcome=metric.column,
                    graph=causal_graph(covariates, metric),
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
    y = frame[m.outcome].to_numpy(dtype=float)
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
    y = data[m.outcome].to_numpy(dtype=float)
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


def _outcome_problem(frame: pd.DataFrame, metric: Metric, version: str, control: str) -> str | None:
    """Why this comparison has nothing to estimate (a constant or missing outcome), else None."""
    y = frame[metric.column].to_numpy(dtype=float)
    if not np.isfinite(y).any():
        return f"{metric.column} is missing for every user of {version} and {control}"
    if np.nanstd(y) == 0:
        return (
            f"{metric.column} is {y[0]:g} for every user of {version} and {control}: a constant "
            "outcome has no effect to estimate (are these events in the logs? try another "
            "--metric)"
        )
    if metric.denominator is not None:
        t = frame[TREATMENT].to_numpy() == 1
        d = frame[metric.denominator].to_numpy(dtype=float)
        if d[t].sum() <= 0 or d[~t].sum() <= 0:
            return f"{metric.denominator} is 0 in an arm: {metric.name} is undefined there"
    return None


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
    """The configured estimators (first that runs is the headline) and, if asked, refuters.

    Degrades instead of failing: an estimator that cannot run on this data (propensity methods
    without covariates, a DoWhy error) is listed in `skipped` with the reason; if no DoWhy
    estimator runs, the unadjusted difference in means stands in and says so. Only a
    comparison with nothing to estimate (one arm empty, a constant outcome) raises.
    """
    metric = cfg.outcome
    frame, kept = comparison_frame(users, covariates, version, control, metric)
    t = frame[TREATMENT].to_numpy()
    if t.sum() == 0 or t.sum() == t.size:
        raise EstimationError(
            f"comparison {version} vs {control} needs users in both arms, got "
            f"{int(t.sum())} and {int(t.size - t.sum())}"
        )
    problem = _outcome_problem(frame, metric, version, control)
    if problem:
        raise ConstantOutcomeError(problem)
    y = frame[metric.column].to_numpy(dtype=float)
    estimates: list[Estimate] = []
    skipped: list[dict[str, str]] = []
    propensity = None
    model: _Model | None = None
    estimand = "E[outcome | do(version)] - E[outcome | do(control)], backdoor over covariates"
    if metric.is_ratio:
        assert metric.denominator is not None
        estimates.append(
            metric_estimate(
                y,
                frame[metric.denominator].to_numpy(dtype=float),
                t == 1,
                frame[kept].to_numpy(dtype=float),
                RATIO_ESTIMATOR,
                cfg.alpha,
            )
        )
        reason = (
            f"{metric.name} is a ratio of sums per arm; DoWhy's estimators average a per-user "
            "outcome, so the ratio of covariate-adjusted means (delta method) is used"
        )
        skipped += [{"estimator": m, "reason": reason} for m in cfg.estimators]
    else:
        try:
            model = _Model(frame, kept, metric)
            estimand = str(model.estimand.estimands["backdoor"]["estimand"])
        except EstimationError as exc:
            skipped += [{"estimator": m, "reason": str(exc)} for m in cfg.estimators]
        for method in cfg.estimators if model is not None else ():
            if primary_only and estimates:
                break
            if not kept and method in PROPENSITY_METHODS:
                skipped.append(
                    {
                        "estimator": method,
                        "reason": "no pre-exposure covariate varies (e.g. every user is new): "
                        "propensity-score methods need covariates",
                    }
                )
                continue
            assert model is not None
            try:
                _, estimate, ps = model.estimate(method, cfg.alpha)
            except EstimationError as exc:
                skipped.append({"estimator": method, "reason": str(exc)})
                continue
            estimates.append(estimate)
            if ps is not None and method == "backdoor.doubly_robust":
                propensity = ps
        if not estimates:
            estimates.append(difference_in_means(y, t == 1, FALLBACK_ESTIMATOR, cfg.alpha))
    if propensity is None and not primary_only:
        propensity = fit_propensity(frame, kept)
    result = CausalResult(
        version=version,
        control=control,
        estimand=estimand,
        adjustment_set=kept,
        estimates=estimates,
        treated=t == 1,
        propensity=propensity,
        skipped=skipped,
    )
    if refute:
        primary = estimates[0].estimator
        if model is None or primary not in _ESTIMATORS:
            result.refuters_skipped = (
                f"refuters re-fit a DoWhy estimator; the headline here is {primary}"
            )
        else:
            result.refuters, result.refuter_sample_size = run_refuters(
                frame, kept, cfg, progress, method=primary
            )
    return result


def run_refuters(
    frame: pd.DataFrame,
    covariates: list[str],
    cfg: AttributionConfig,
    progress: bool = False,
    method: str | None = None,
) -> tuple[list[RefuterResult], int]:
    """DoWhy refuters for `method` (default: the primary estimator), on a random subsample of
    at most `refuter_max_units` users (each refuter re-fits the estimator many times)."""
    from tqdm.auto import tqdm

    method = method or cfg.primary_estimator
    metric = cfg.outcome
    rng = np.random.default_rng(cfg.seed)
    if len(frame) > cfg.refuter_max_units:
        idx = np.sort(rng.choice(len(frame), size=cfg.refuter_max_units, replace=False))
        sub = frame.iloc[idx].reset_index(drop=True)
        sub, covariates = comparison_frame_restandardise(sub, covariates)
    else:
        sub = frame
    where = f"on a {len(sub):,}-user subsample: " if len(sub) < len(frame) else ""
    try:
        model = _Model(sub, covariates, metric)
        est, base, _ = model.estimate(method, cfg.alpha)
    except EstimationError as exc:
        return [
            _errored(name, float("nan"), len(sub), where + str(exc), cfg) for name in REFUTERS
        ], len(sub)
    results = []
    for name in tqdm(REFUTERS, desc="refuters", disable=not progress, leave=False):
        np.random.seed(cfg.seed)  # DoWhy draws some noise from the global generator
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = _refute(model, est, base, name, cfg)
            results.append(RefuterResult(**{**r.__dict__, "message": where + r.message}))
        except Exception as exc:
            results.append(_errored(name, base.effect, len(sub), f"{where}{exc}", cfg))
    return results, len(sub)


def _errored(name: str, effect: float, n: int, why: str, cfg: AttributionConfig) -> RefuterResult:
    """A refuter that could not run proves nothing: an error (a failed check by default)."""
    consequence = (
        "counts as a failed check"
        if cfg.refuter_errors_fail
        else "ignored (refuter_errors_fail off)"
    )
    return RefuterResult(
        name,
        "error",
        effect,
        float("nan"),
        None,
        0,
        n,
        f"refuter could not run ({consequence}): {why}",
    )


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


# The pass/fail rule of each refuter, as written in the report's glossary.
REFUTER_RULES = {
    "placebo_treatment_refuter": (
        "the treatment is permuted; fail when the mean placebo estimate is farther from 0 than "
        "both z(1 - alpha/2) · SE / sqrt(simulations) and refuter_tolerance_se · SE. (DoWhy's "
        "'significant' here means the real estimate stands out from the placebo ones, which is "
        "not a failure.)"
    ),
    "random_common_cause": (
        "a random covariate is added; fail when DoWhy rejects the original estimate at alpha "
        "AND it moves by more than refuter_tolerance_se standard errors"
    ),
    "data_subset_refuter": (
        "re-estimated on random 80 % subsets; fail when DoWhy rejects at alpha AND the mean "
        "subset estimate moves by more than refuter_tolerance_se standard errors"
    ),
    "add_unobserved_common_cause": (
        "sensitivity, never a pass by itself: warn when a hidden confounder of the configured "
        "strength flips the sign or makes a significant estimate insignificant"
    ),
    "error": "a refuter that cannot run is a failed check unless refuter_errors_fail is off",
}


def refuter_verdict(
    name: str,
    base: Estimate,
    new: float,
    p_value: float | None,
    simulations: int,
    cfg: AttributionConfig,
) -> tuple[str, str]:
    """(status, why) for one refuter from its numbers; the rules are REFUTER_RULES."""
    z = z_value(cfg.alpha)
    if name == "placebo_treatment_refuter":
        # Beyond sampling noise of the mean placebo AND material (refuter_tolerance_se): at
        # alpha alone a sound analysis would fail one version in twenty.
        limit = max(
            z * base.se / math.sqrt(max(simulations, 1)), cfg.refuter_tolerance_se * base.se
        )
        if not math.isfinite(new) or abs(new) > limit:
            return "fail", (
                f"placebo (permuted) treatment gives {new:.4g}, beyond ±{limit:.3g} around 0: "
                "the estimator finds an effect where there is none"
            )
        return "pass", f"placebo (permuted) treatment gives {new:.4g}, within ±{limit:.3g} of 0"
    if name == "add_unobserved_common_cause":
        significant = base.se > 0 and abs(base.effect) > z * base.se
        flips = bool(np.sign(new) != np.sign(base.effect))
        weakened = significant and abs(new) < z * base.se
        status = "warn" if (flips or weakened) else "pass"
        what = " (sign flips)" if flips else " (no longer significant)" if weakened else ""
        return status, f"the estimate would change from {base.effect:.4g} to {new:.4g}{what}"
    shift = abs(new - base.effect)
    tol = cfg.refuter_tolerance_se * base.se
    rejected = p_value is not None and p_value < cfg.alpha
    what = f"estimate moves from {base.effect:.4g} to {new:.4g}"
    if rejected and shift > tol:
        return "fail", (
            f"{what}; DoWhy rejects (p={p_value:.3g} < alpha {cfg.alpha:g}) and the shift exceeds "
            f"{cfg.refuter_tolerance_se:g} SE"
        )
    return "pass", what


def _refute(
    model: _Model, est: Any, base: Estimate, name: str, cfg: AttributionConfig
) -> RefuterResult:
    sims, n = cfg.refuter_simulations, len(model.frame)
    if name == "add_unobserved_common_cause":
        kappa_y = cfg.sensitivity_outcome_sd * float(model.frame[model.outcome].std())
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
        status, why = refuter_verdict(name, base, new, None, 1, cfg)
        message = (
            f"a hidden confounder flipping {cfg.sensitivity_flip_share:.0%} of assignments and "
            f"moving {model.outcome} by {cfg.sensitivity_outcome_sd:g} SD: {why}"
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
    p = (ref.refutation_result or {}).get("p_value")
    p_val = float(p) if p is not None else None
    status, message = refuter_verdict(name, base, new, p_val, sims, cfg)
    return RefuterResult(name, status, base.effect, new, p_val, sims, n, message)
