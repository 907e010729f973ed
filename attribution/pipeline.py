"""The attribution core: per-user table + lineage → the report document (schema version "1").

Order of work per version: DoWhy estimates, experiment readouts, mechanism decomposition,
refuters and checks; then slice pairs and the global checks. The returned dict is exactly what
report.json holds, and the HTML page is rendered from it alone.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from attribution import causal, experiment, mechanisms, slices, validity
from attribution.config import AttributionConfig
from attribution.data import AnalysisTable
from attribution.errors import InputDataError

SCHEMA_VERSION = "1"


def choose_control(table: AnalysisTable, requested: str | None) -> str:
    users = table.users
    versions = table.versions
    if requested is not None:
        if requested not in versions:
            raise InputDataError(
                f"control version {requested!r} has no exposed users; versions seen: {versions}"
            )
        return requested
    control_arm = users.loc[users["arm"] == "control", "version"]
    if len(control_arm):
        return str(control_arm.mode().iloc[0])
    return str(users["version"].value_counts().idxmax())


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
    users, covs = table.users, table.covariates
    control = choose_control(table, cfg.control_version)
    treated_versions = [v for v in table.versions if v != control]
    if not treated_versions:
        raise InputDataError(
            f"only the control version {control!r} was served in the period: nothing to compare"
        )
    counts = {str(k): int(v) for k, v in users["version"].value_counts().sort_index().items()}
    arms = {str(a): str(v) for a, v in users.groupby("arm")["version"].first().items()}
    lineage = slices.lineage_for(models, [control, *treated_versions])

    checks: list[validity.Check] = [
        validity.srm(counts, cfg.split(), arms, cfg.srm_alpha),
        validity.crossover(table.info, cfg),
        validity.truncation(table.info),
        validity.manifests(table.info),
        validity.lineage(control, lineage[control], is_control=True),
    ]
    entries: dict[str, dict[str, Any]] = {control: _control_entry(users, control, lineage[control])}
    results: dict[str, causal.CausalResult] = {}
    steps = tqdm(treated_versions, desc="attributing versions", disable=not progress)
    for v in steps:
        t0 = time.perf_counter()
        steps.set_postfix_str(v)
        res = causal.estimate_version(
            users, covs, v, control, cfg, refute=refute, progress=progress
        )
        results[v] = res
        readout = experiment.readout(users, covs, v, control, res.primary, cfg)
        decomposition = mechanisms.decompose(users, v, control)
        assert res.propensity is not None
        v_checks = [
            validity.lineage(v, lineage[v], is_control=False),
            *validity.overlap(v, res.propensity, res.treated, cfg),
            *validity.refuters(v, res.refuters),
            validity.agreement(v, res.estimates, cfg.alpha),
            validity.naive_difference(v, readout.naive_biased, readout.naive_note),
        ]
        checks += v_checks
        entries[v] = {
            **_base_entry(users, v, lineage[v]),
            "is_control": False,
            "estimand": res.estimand,
            "adjustment_set": res.adjustment_set,
            "estimates": [e.to_dict() for e in res.estimates],
            **readout.to_dict(),
            "refuters": [r.to_dict() for r in res.refuters],
            "refuter_sample_size": res.refuter_sample_size,
            "mechanisms": decomposition.to_dict(),
            "checks": [c.to_dict() for c in v_checks],
        }
        timings[f"version:{v}"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pairs = [
        _slice_pair(users, covs, a, b, lineage, results, cfg)
        for a, b in slices.slice_only_pairs(lineage)
    ]
    timings["slice_pairs"] = time.perf_counter() - t0

    trustworthy, failures = validity.gate(checks)
    statements = []
    for v in treated_versions:
        ok, _ = validity.gate(checks, v)
        statements.append(_statement(v, control, results[v], ok, cfg))
        entries[v]["trustworthy"] = ok
    timings["total"] = time.perf_counter() - started
    ordered = sorted(
        checks,
        key=lambda c: (
            {"fail": 0, "warn": 1, "pass": 2, "skipped": 3}[c.status],
            c.scope != validity.GLOBAL,
        ),
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "period": {
            "since": table.info.get("since"),
            "until": table.info.get("until"),
            "attribution_window_hours": cfg.attribution_window_hours,
            "pre_period_hours": cfg.pre_period_hours,
        },
        "unit": "user",
        "outcome": "revenue per user within the attribution window (attributed + organic)",
        "control_version": control,
        "trustworthy": trustworthy,
        "headline": {
            "trustworthy": trustworthy,
            "failed_checks": [f"{c.scope}: {c.name}" for c in failures],
            "estimator": cfg.primary_estimator,
            "statements": statements,
        },
        "checks": [c.to_dict() for c in ordered],
        "data": _data_summary(table),
        "causal_graph": {
            "treatment": causal.TREATMENT,
            "outcome": causal.OUTCOME,
            "edges": causal.graph_edges(covs),
            "adjustment_set": covs,
        },
        "versions": [entries[control], *(entries[v] for v in treated_versions)],
        "slice_attribution": pairs,
        "settings": cfg.as_dict(),
        "timings_seconds": timings,
    }


def _base_entry(users: Any, version: str, status: slices.LineageStatus) -> dict[str, Any]:
    rows = users[users["version"] == version]
    return {
        "model_version": version,
        "arms": sorted(str(a) for a in rows["arm"].unique()),
        "users": len(rows),
        "mean_revenue": float(rows["revenue"].mean()),
        "mean_clicks": float(rows["clicks"].mean()),
        "conversion_rate": float(rows["converted"].mean()),
        "feedback_slice": status.summary(),
        "lineage_problem": status.problem,
    }


def _control_entry(users: Any, control: str, status: slices.LineageStatus) -> dict[str, Any]:
    return {
        **_base_entry(users, control, status),
        "is_control": True,
        "trustworthy": None,
        "estimates": [],
        "refuters": [],
        "segments": [],
        "checks": [],
    }


def _statement(
    version: str, control: str, res: causal.CausalResult, trustworthy: bool, cfg: AttributionConfig
) -> dict[str, Any]:
    e = res.primary
    significant = e.significant(cfg.alpha)
    text = (
        f"{version} vs {control}: {e.effect:+.4g} revenue per user "
        f"({e.relative:+.2%}), 95% CI [{e.ci_low:+.4g}, {e.ci_high:+.4g}], p={e.p_value:.3g}"
        + ("" if significant else " — not significant")
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
        "significant": significant,
        "trustworthy": trustworthy,
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
    """Direct comparison newer vs older: the revenue the newer slice earned over the older."""
    res = causal.estimate_version(users, covs, newer, older, cfg, refute=False, primary_only=True)
    e = res.primary
    a, b = lineage[older], lineage[newer]
    if e.significant(cfg.alpha):
        verdict = (
            f"training on {newer}'s slice instead of {older}'s changed revenue by {e.effect:+.4g} "
            f"per user ({e.relative:+.2%}): attributed to the feedback slice"
        )
    else:
        verdict = (
            f"no detectable revenue difference between the two slices ({e.effect:+.4g} per user, "
            f"95% CI [{e.ci_low:+.4g}, {e.ci_high:+.4g}])"
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


def _data_summary(table: AnalysisTable) -> dict[str, Any]:
    u = table.users
    info = table.info
    total = float(u["revenue"].sum())
    return {
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
