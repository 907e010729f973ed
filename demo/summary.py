"""The closing summary: versions and their slices, estimated vs true uplift, the feedback-loop
diversity numbers, reconciliation, and where the report is. `build` gives the data
(summary.json), `render` the text the CLI prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from demo.phases import CANDIDATES, CONTROL, Outcome


def comparison(outcome: Outcome) -> list[dict[str, Any]]:
    """Per candidate version: the report's estimate and CI next to the simulator's truth."""
    statements = {s["model_version"]: s for s in outcome.report["headline"]["statements"]}
    rows = []
    for version in CANDIDATES:
        est, true = statements.get(version), outcome.truth["versions"].get(version)
        if est is None or true is None:
            continue
        rows.append({
            "version": version,
            "estimate": est["effect"], "ci": [est["ci_low"], est["ci_high"]],
            "relative": est["relative"], "p_value": est["p_value"],
            "significant": est["significant"], "trustworthy": est["trustworthy"],
            "truth": true["uplift_abs"], "truth_ci": true["ci"],
            "truth_relative": true["uplift_rel"],
            "truth_in_ci": bool(est["ci_low"] <= true["uplift_abs"] <= est["ci_high"]),
        })
    return rows


def diversity(outcome: Outcome) -> list[dict[str, Any]]:
    """Live exposure per day and version: catalogue coverage and Gini of impressions."""
    rows = [{"day": int(day), "version": version, **stats}
            for version, days in outcome.exposure.items() for day, stats in days.items()]
    return sorted(rows, key=lambda r: (r["day"], r["version"]))


def build(outcome: Outcome) -> dict[str, Any]:
    cfg = outcome.cfg
    report = outcome.report
    return {
        "seed": cfg.seed, "users": cfg.users, "days": cfg.days, "scenario": cfg.scenario,
        "temperature": cfg.serving_temperature,
        "kafka": {"bootstrap": outcome.kafka, "state": outcome.kafka_state},
        "job_run_id": outcome.job_run_id,
        "versions": [vars(v) for v in outcome.versions],
        "days_run": outcome.days,
        "retrain_decisions": [{k: d[k] for k in ("after_day", "retrain", "reasons",
                                                 "proposed_slice")}
                              for d in outcome.decisions],
        "uplift": comparison(outcome),
        "control": CONTROL,
        "truth_days": outcome.truth.get("days"),
        "report_trustworthy": report.get("trustworthy"),
        "failed_checks": report.get("headline", {}).get("failed_checks", []),
        "diversity_live": diversity(outcome),
        "diversity_shadow": outcome.truth.get("diversity", {}),
        "reconciliation": outcome.reconciliation,
        "consistency": outcome.consistency,
        "published_events": outcome.published,
        "serving": outcome.serving,
        "timings_seconds": outcome.timings,
        "paths": {"out": str(outcome.folder.out), "report": str(outcome.report_html),
                  "ground_truth": str(outcome.folder.ground_truth),
                  "home": str(outcome.paths.home)},
    }


def write(summary: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")


def _money(x: float) -> str:
    return f"{x:+.2f}"


def _minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}m {s:02d}s"


def render(summary: dict[str, Any]) -> str:
    s = summary
    took = _minutes(s["timings_seconds"]["total"])
    lines = [
        f"Loopline demo · seed {s['seed']} · {s['users']} users · {s['days']} days · scenario "
        f"{s['scenario']} (softmax t={s['temperature']:g}) · {took}",
        "",
        "Model versions (each trained on a feedback slice; lineage: loopline lineage show VERSION)",
    ]
    for v in s["versions"]:
        auc = "-" if v["auc"] is None else f"{v['auc']:.3f}"
        lines.append(f"  {v['version']:<3} {v['trained_on']:<36} {v['rows']:>7,} rows  "
                     f"AUC {auc}  {v['rollout']}")
        lines.append(f"      slice {v['slice']}  {v['fingerprint'][:19]}…")
    days = s["truth_days"] or []
    span = (f"day {days[0]}" if len(days) == 1 else f"days {days[0]}-{days[-1]}") if days else ""
    lines += ["", f"Revenue uplift per user vs {s['control']} on {span} (report: DoWhy "
                  "estimate, 95% CI; truth: simulator's expectation, 95% CI)"]
    lines.append(f"  {'':<4}{'estimate':>9} {'95% CI':>19}   {'truth':>7} {'95% CI':>17}   "
                 "truth inside the estimate's CI")
    for u in s["uplift"]:
        lo, hi = u["ci"]
        tlo, thi = u["truth_ci"]
        verdict = "yes" if u["truth_in_ci"] else "NO"
        note = "" if u["trustworthy"] else "  (report: not trustworthy)"
        lines.append(f"  {u['version']:<4}{_money(u['estimate']):>9} [{_money(lo):>8}, "
                     f"{_money(hi):>8}]   {_money(u['truth']):>7} [{_money(tlo):>7}, "
                     f"{_money(thi):>7}]   {verdict}{note}")
    if s["failed_checks"]:
        lines.append(f"  failed validity checks: {', '.join(s['failed_checks'])}")
    lines += ["", "Feedback loop: catalogue coverage / Gini of exposure (live traffic, per day)"]
    by_day: dict[int, list[str]] = {}
    for r in s["diversity_live"]:
        by_day.setdefault(r["day"], []).append(
            f"{r['version']} {r['coverage']:.0%} / {r['gini']:.2f}")
    for day, cells in sorted(by_day.items()):
        lines.append(f"  day {day}: " + "   ".join(cells))
    shadow = s["diversity_shadow"]
    if shadow:
        cells = []
        for version, per_day in shadow.items():
            cov = [d["coverage"] for d in per_day.values()]
            gini = [d["gini"] for d in per_day.values()]
            cells.append(f"{version} {sum(cov) / len(cov):.0%} / {sum(gini) / len(gini):.2f}")
        lines.append("  each version on every experiment request (ground-truth shadows): "
                     + "   ".join(cells))
    r = s["reconciliation"]
    lines += ["", f"Reconciliation: input {r['input']:,} = joined {r['joined']:,} + unmatched "
                  f"{r['unmatched']:,} + late {r['late']:,} + dead-lettered "
                  f"{r['dead_lettered']:,}: {'balanced' if r['balanced'] else 'NOT BALANCED'}"
                  f" (simulator published {s['published_events']:,})"]
    consistency = s.get("consistency")
    if consistency:  # logged serving features vs point-in-time history, experiment days
        lines.append(consistency["line"])
        lines += [f"  breach: {b}" for b in consistency["breaches"]]
    gate = "trustworthy" if s["report_trustworthy"] else "NOT trustworthy (see its failed checks)"
    p = s["paths"]
    lines += [
        f"Report ({gate}): {p['report']}",
        f"Ground truth: {p['ground_truth']}",
        f"Demo home (slices, features, models, lineage): {p['home']}",
        f"  e.g. LOOPLINE_PATHS_HOME={p['home']} loopline lineage show v2",
    ]
    if s["kafka"]["state"] == "started":
        lines.append(f"Kafka was started for the demo at {s['kafka']['bootstrap']} and is left "
                     "running for the next run: `loopline infra down kafka` stops it")
    return "\n".join(lines)
