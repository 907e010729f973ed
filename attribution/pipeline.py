"""The attribution core: per-user table + lineage → the report document (schema version "1").

Order of work per version: DoWhy estimates, experiment readouts, mechanism decomposition,
refuters and checks; then slice pairs and the global checks. The returned dict is exactly what
report.json holds, and the HTML page is rendered from it alone.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from attribution import causal, design, experiment, mechanisms, slices, validity
from attribution.config import AttributionConfig
from attribution.data import AnalysisTable
from attribution.errors import EstimationError, InputDataError
from attribution.metrics import Metric
from attribution.stats import Estimate, metric_estimate, minimum_detectable_effect, z_value

SCHEMA_VERSION = "2"


def choose_control(table: AnalysisTable, requested: str | None, models: Path | None = None) -> str:
    """The control version (see attribution.design: argument, rollout, arm name; never a tie)."""
    return design.resolve(table.users, models or Path("/nonexistent"), requested, None).control


def robustness_value(estimate: Estimate, dof: int, alpha: float | None = None) -> float:
    """Cinelli & Hazlett's robustness value from the estimate's t-statistic: the share of the
    residual variance of both version and outcome a hidden confounder must explain to bring the
    estimate to 0 (alpha None) or to insignificance at alpha."""
    if not (math.isfinite(estimate.se) and estimate.se > 0) or dof < 2:
        return float("nan")
    f = abs(estimate.effect / estimate.se) / math.sqrt(dof)
    if alpha is not None:
        f = max(f - z_value(alpha) / math.sqrt(dof - 1), 0.0)
    return 0.5 * (math.sqrt(f**4 + 4 * f**2) - f**2)


def run(
    table: AnalysisTable,
    models: Path,
    cfg: AttributionConfig,
    refute: bool | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    started = time.perf_counter()
    timings: dict[str, float] = {}
    refute = cfg.run_refuters if refute is None else refute
    metric = cfg.outcome
    users, covs = table.users, table.covariates
    plan = design.resolve(users, models, cfg.control_version, cfg.split())
    control = plan.control
    treated_versions = [v for v in table.versions if v != control]
    if not treated_versions:
        raise InputDataError(
            f"only the control version {control!r} was served in the period: nothing to compare"
        )
    counts = {str(k): int(v) for k, v in users["version"].value_counts().sort_index().items()}
    arms = {str(a): str(v) for a, v in users.groupby("arm")["version"].first().items()}
    lineage = slices.lineage_for(models, [control, *treated_versions])

    srm_check = validity.srm(counts, plan.expected_split, arms, cfg.srm_alpha)
    checks: list[validity.Check] = [
        srm_check,
        validity.crossover(table.info, cfg),
        validity.truncation(table.info),
        validity.manifests(table.info),
        validity.fallback_balance(users, cfg.max_fallback_share_gap),
        validity.lineage(control, lineage[control], is_control=True),
    ]
    entries: dict[str, dict[str, Any]] = {
        control: _control_entry(users, control, lineage[control], metric)
    }
    results: dict[str, causal.CausalResult] = {}
    statements: dict[str, dict[str, Any]] = {}
    steps = tqdm(treated_versions, desc="attributing versions", disable=not progress)
    for v in steps:
        t0 = time.perf_counter()
        steps.set_postfix_str(v)
        lineage_check = validity.lineage(v, lineage[v], is_control=False)
        try:
            res = causal.estimate_version(
                users, covs, v, control, cfg, refute=refute, progress=progress
            )
        except EstimationError as exc:
            v_checks = [lineage_check, validity.estimation(v, str(exc))]
            checks += v_checks
            entries[v] = {
                **_base_entry(users, v, lineage[v], metric),
                "is_control": False,
                "estimation_error": str(exc),
                "estimates": [],
                "refuters": [],
                "checks": [c.to_dict() for c in v_checks],
            }
            statements[v] = _not_estimated(v, control, str(exc))
            continue
        results[v] = res
        readout = experiment.readout(users, covs, v, control, res.primary, cfg)
        decomposition = _mechanisms(users, v, control)
        assert res.propensity is not None
        n_units = int(res.treated.size)
        assignment = validity.assignment(
            v,
            srm_check,
            {k: b for k, b in readout.balance.items() if k in res.adjustment_set},
            cfg.max_balance_smd,
            int(res.treated.sum()),
            int((~res.treated).sum()),
            cfg.srm_alpha,
        )
        held = srm_check.status == "pass" and assignment.status == "pass"
        v_checks = [
            lineage_check,
            validity.estimators(v, res.skipped, res.primary.estimator),
            *validity.overlap(v, res.propensity, res.treated, cfg,
                              _design_share(plan.expected_split, arms, v, control) if held
                              else None),
            *validity.refuters(v, res.refuters, cfg.refuter_errors_fail),
            validity.agreement(v, res.estimates, cfg.alpha),
            validity.naive_difference(v, readout.naive_biased, readout.naive_note),
            assignment,
            _negative_control(users, covs, v, control, cfg),
        ]
        checks += v_checks
        power = {
            "power": cfg.power,
            "alpha": cfg.alpha,
            "se": res.primary.se,
            "users": n_units,
            "minimum_detectable_effect": minimum_detectable_effect(
                res.primary.se, cfg.alpha, cfg.power
            ),
            "note": "from the headline estimator's SE, so the covariate adjustment is included",
        }
        robustness = {
            "rv": robustness_value(res.primary, n_units - 2 - len(res.adjustment_set)),
            "rv_alpha": robustness_value(
                res.primary, n_units - 2 - len(res.adjustment_set), cfg.alpha
            ),
        }
        entries[v] = {
            **_base_entry(users, v, lineage[v], metric),
            "is_control": False,
            "estimand": res.estimand,
            "adjustment_set": res.adjustment_set,
            "estimates": [e.to_dict() for e in res.estimates],
            "skipped_estimators": res.skipped,
            **readout.to_dict(),
            "refuters": [r.to_dict() for r in res.refuters],
            "refuters_skipped": res.refuters_skipped,
            "refuter_sample_size": res.refuter_sample_size,
            "mechanisms": decomposition,
            "power": power,
            "robustness": robustness,
            "checks": [c.to_dict() for c in v_checks],
        }
        observational = bool(v_checks[-2].details.get("observational"))
        statements[v] = {"observational": observational, "power": power, "rv": robustness}
        timings[f"version:{v}"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pairs = []
    for a, b in slices.slice_only_pairs(lineage):
        try:
            pairs.append(_slice_pair(users, covs, a, b, lineage, results, cfg))
        except EstimationError:
            continue  # the versions' own entries already say why they cannot be estimated
    timings["slice_pairs"] = time.perf_counter() - t0

    trustworthy, failures = validity.gate(checks)
    headline = []
    for v in treated_versions:
        ok, _ = validity.gate(checks, v)
        entries[v]["trustworthy"] = ok
        if v in results:
            headline.append(_statement(v, control, results[v], ok, cfg, statements[v]))
        else:
            headline.append(statements[v])
    timings["total"] = time.perf_counter() - started
    ordered = sorted(
        checks,
        key=lambda c: (
            {"fail": 0, "warn": 1, "pass": 2, "skipped": 3}[c.status],
            c.scope != validity.GLOBAL,
        ),
    )
    estimators = sorted({r.primary.estimator for r in results.values()})
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "period": {
            "since": table.info.get("since"),
            "until": table.info.get("until"),
            "attribution_window_hours": cfg.attribution_window_hours,
            "pre_period_hours": cfg.pre_period_hours,
            "negative_control_hours": cfg.held_out_hours,
        },
        "unit": "user",
        "metric": metric.name,
        "outcome": f"{metric.label} within the attribution window"
        + (" (attributed + organic)" if metric.name == "revenue" else ""),
        "control_version": control,
        "design": {
            "control_source": plan.control_source,
            "expected_split": plan.expected_split,
            "split_source": plan.split_source,
        },
        "trustworthy": trustworthy,
        "headline": {
            "trustworthy": trustworthy,
            "failed_checks": [f"{c.scope}: {c.name}" for c in failures],
            "estimator": ", ".join(estimators) or "none",
            "statements": headline,
        },
        "checks": [c.to_dict() for c in ordered],
        "glossary": {
            "refuters": dict(causal.REFUTER_RULES),
            "checks": dict(validity.RULES),
        },
        "data": _data_summary(table, checks),
        "causal_graph": {
            "treatment": causal.TREATMENT,
            "outcome": metric.column,
            "edges": causal.graph_edges(covs, metric),
            "adjustment_set": covs,
        },
        "versions": [entries[control], *(entries[v] for v in treated_versions)],
        "slice_attribution": pairs,
        "settings": cfg.as_dict(),
        "timings_seconds": timings,
    }


def _mechanisms(users: pd.DataFrame, version: str, control: str) -> dict[str, Any]:
    return mechanisms.decompose(users, version, control).to_dict()


def _negative_control(
    users: pd.DataFrame, covs: list[str], version: str, control: str, cfg: AttributionConfig
) -> validity.Check:
    """Adjusted difference in revenue before exposure, in the window held out of the covariates."""
    if cfg.held_out_hours <= 0 or "nc_revenue" not in users.columns:
        return validity.negative_control(
            version, None, cfg.negative_control_alpha, "negative_control_hours is 0"
        )
    rows = users[users["version"].isin([version, control])]
    y = rows["nc_revenue"].to_numpy(dtype=float)
    if np.std(y) == 0:
        return validity.negative_control(
            version,
            None,
            cfg.negative_control_alpha,
            f"no revenue in the {cfg.held_out_hours:g} h before exposure (e.g. every user is "
            "new): nothing to check against",
        )
    estimate = metric_estimate(
        y,
        None,
        rows["version"].to_numpy() == version,
        rows[covs].to_numpy(dtype=float),
        "negative_control",
        cfg.negative_control_alpha,
    )
    return validity.negative_control(version, estimate, cfg.negative_control_alpha, "")


def _base_entry(
    users: Any, version: str, status: slices.LineageStatus, metric: Metric
) -> dict[str, Any]:
    rows = users[users["version"] == version]
    num = float(rows[metric.column].sum())
    den = float(rows[metric.denominator].sum()) if metric.denominator else float(len(rows))
    imps = float(rows["impressions"].sum())
    return {
        "model_version": version,
        "arms": sorted(str(a) for a in rows["arm"].unique()),
        "users": len(rows),
        "mean_revenue": float(rows["revenue"].mean()),
        "mean_clicks": float(rows["clicks"].mean()),
        "conversion_rate": float(rows["converted"].mean()),
        "metric_value": num / den if den else None,
        "fallback_share": (
            float(rows["fallback_impressions"].sum() / imps)
            if "fallback_impressions" in rows.columns and imps
            else None
        ),
        "feedback_slice": status.summary(),
        "lineage_problem": status.problem,
        "external_policy": status.external,
    }


def _control_entry(
    users: Any, control: str, status: slices.LineageStatus, metric: Metric
) -> dict[str, Any]:
    return {
        **_base_entry(users, control, status, metric),
        "is_control": True,
        "trustworthy": None,
        "estimates": [],
        "refuters": [],
        "segments": [],
        "checks": [],
    }


def _not_estimated(version: str, control: str, why: str) -> dict[str, Any]:
    return {
        "model_version": version,
        "effect": None,
        "ci_low": None,
        "ci_high": None,
        "relative": None,
        "relative_ci_low": None,
        "relative_ci_high": None,
        "p_value": None,
        "significant": False,
        "trustworthy": False,
        "text": f"{version} vs {control}: NOT ESTIMATED — {why}",
    }


def _statement(
    version: str,
    control: str,
    res: causal.CausalResult,
    trustworthy: bool,
    cfg: AttributionConfig,
    extra: dict[str, Any],
) -> dict[str, Any]:
    e = res.primary
    significant = e.significant(cfg.alpha)
    level = f"{1 - cfg.alpha:.0%}"
    mde = extra["power"]["minimum_detectable_effect"]
    rv = extra["rv"]["rv_alpha"]
    text = (
        f"{version} vs {control}: {e.effect:+.4g} {cfg.outcome.label} "
        f"({e.relative:+.2%}), {level} CI [{e.ci_low:+.4g}, {e.ci_high:+.4g}], p={e.p_value:.3g}"
        + ("" if significant else " — not significant")
        + f"; detectable at {cfg.power:.0%} power: ±{mde:.3g}"
        + (
            f"; robustness value {rv:.1%} (a hidden confounder explaining that share of the "
            "residual variance of version and outcome would make it insignificant)"
            if significant and math.isfinite(rv)
            else ""
        )
        + (
            "; OBSERVATIONAL: assignment was not the randomised split, so this rests on no "
            "unobserved confounding"
            if extra["observational"]
            else ""
        )
        + ("" if trustworthy else " — NOT TRUSTWORTHY: see failed checks")
    )
    return {
        "model_version": version,
        **{
            k: e.to_dict()[k]
            for k in (
                "effect",
                "ci_low",
                "ci_high",
                "relative",
                "relative_ci_low",
                "relative_ci_high",
                "p_value",
            )
        },
        "estimator": e.estimator,
        "significant": significant,
        "trustworthy": trustworthy,
        "observational": extra["observational"],
        "minimum_detectable_effect": mde,
        "robustness_value": extra["rv"]["rv"],
        "robustness_value_alpha": rv,
        "text": text,
    }


def _slice_pair(
    users: Any,
    covs: list[str],
    older: str,
    newer: str,
    lineage: dict[str, slices.LineageStatus],
    results: dict[str, causal.CausalResult],
    cfg: AttributionConfig,
) -> dict[str, Any]:
    """Direct comparison newer vs older: what the newer slice earned over the older."""
    res = causal.estimate_version(users, covs, newer, older, cfg, refute=False, primary_only=True)
    e = res.primary
    a, b = lineage[older], lineage[newer]
    label = cfg.outcome.label
    if e.significant(cfg.alpha):
        verdict = (
            f"training on {newer}'s slice instead of {older}'s changed {label} by "
            f"{e.effect:+.4g} ({e.relative:+.2%}): attributed to the feedback slice"
        )
    else:
        verdict = (
            f"no detectable difference in {label} between the two slices ({e.effect:+.4g}, "
            f"{1 - cfg.alpha:.0%} CI [{e.ci_low:+.4g}, {e.ci_high:+.4g}])"
        )
    vs_control = {v: results[v].primary.effect for v in (older, newer) if v in results}
    return {
        "older_version": older,
        "newer_version": newer,
        "shared": {k: (a.lineage or {}).get(k) for k in slices.SHARED_CONFIG},
        "older_slice": a.summary(),
        "newer_slice": b.summary(),
        "description": slices.describe_slices(a, b),
        "estimate": e.to_dict(),
        "effects_vs_control": vs_control,
        "statement": verdict,
    }


def _data_summary(table: AnalysisTable, checks: list[validity.Check]) -> dict[str, Any]:
    u = table.users
    info = table.info
    total = float(u["revenue"].sum())
    fallback = next((c for c in checks if c.name == "fallback_balance"), None)
    return {
        "fallback_by_arm": (fallback.details.get("per_arm") if fallback else None) or {},
        "users": len(u),
        "covariates": table.covariates,
        "segment_source": info.get("segment_source"),
        "segments": {str(k): int(v) for k, v in u["segment"].value_counts().sort_index().items()},
        "revenue_total": total,
        "organic_revenue_share": float(u["organic_revenue"].sum() / total) if total else 0.0,
        "crossover_users": int(info.get("crossover_users", 0)),
        "truncated_windows": int(info.get("truncated_windows", 0)),
        "arm_versions": info.get("arm_versions", {}),
        "impressions": info.get("impressions"),
        "unmatched_interactions": info.get("unmatched_interactions"),
        "mean_pre_revenue": float(np.mean(u["pre_revenue"])),
    }


def _design_share(
    split: dict[str, float] | None, arms: dict[str, str], version: str, control: str
) -> float | None:
    """P(version | version or control) under the intended split (keyed by version or arm)."""
    if not split:
        return None
    by_version = {arms.get(k, k): float(w) for k, w in split.items()}
    a, b = by_version.get(version), by_version.get(control)
    return None if a is None or b is None or a + b <= 0 else a / (a + b)
