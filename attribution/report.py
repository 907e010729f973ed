"""report.json (for machines, schema in docs/report-schema.md) and report.html (for people).

The page is static: inline CSS and inline SVG figures, no script, no server, no CDN. It is
rendered from the report document alone and puts the validity gate before the headline.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from attribution import plots
from loopline.privacy import pseudonymiser
from models import consistency_report

STATUS_ORDER = {"fail": 0, "warn": 1, "pass": 2, "skipped": 3}
CSS = "".join(
    [
        "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;",
        "color:#1d1f23;background:#f6f7f9}",
        "main{max-width:1100px;margin:0 auto;padding:24px 32px 64px;background:#fff}",
        "h1{font-size:26px;margin:0 0 4px}",
        "h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #dde1e6;padding-bottom:4px}",
        ".meta{color:#5b616b;font-size:13px}",
        ".gate{border-radius:6px;padding:12px 16px;margin:16px 0}",
        ".gate.bad{background:#fdecea;border:2px solid #b3261e}",
        ".gate.ok{background:#e9f5ec;border:2px solid #1b7f3b}",
        ".gate h2{border:0;margin:0 0 6px;padding:0}",
        ".warns{background:#fff6e0;border:1px solid #e0a800;border-radius:6px;padding:8px 16px;",
        "margin:8px 0}",
        ".headline{font-size:18px;margin:6px 0;padding:10px 14px;border-left:5px solid #1f5fa8;",
        "background:#f1f5fb}",
        ".headline.untrusted{border-left-color:#b3261e;background:#fbf1f0}",
        ".badge{display:inline-block;font-size:12px;font-weight:600;padding:1px 7px;",
        "border-radius:10px;color:#fff}",
        ".fail{background:#b3261e}.warn{background:#b07d00}.pass{background:#1b7f3b}",
        ".skipped{background:#8a8f98}",
        "table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}",
        "th,td{border-bottom:1px solid #e3e6ea;padding:4px 8px;text-align:left;vertical-align:top}",
        "th{background:#f1f3f5}td.num{text-align:right;font-variant-numeric:tabular-nums}",
        ".note{color:#5b616b;font-size:13px}.biased{color:#b3261e;font-weight:600}",
        "figure{margin:8px 0}figure svg{max-width:100%;height:auto}",
        "details{margin:8px 0}code{background:#f1f3f5;padding:0 3px;border-radius:3px}",
    ]
)


def _num(value: Any, fmt: str = "{:+.4g}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt.format(value)


def _pct(value: Any) -> str:
    return _num(value, "{:+.2%}")


def _when(text: Any) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM' UTC (the raw text if it does not parse)."""
    try:
        ts = pd.Timestamp(str(text))
    except ValueError:
        return escape(str(text))
    ts = ts.tz_convert("UTC") if ts.tzinfo else ts
    return escape(f"{ts:%Y-%m-%d %H:%M}")


def _badge(status: str) -> str:
    return f'<span class="badge {escape(status)}">{escape(status.upper())}</span>'


def _checks_table(checks: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{_badge(c['status'])}</td><td>{escape(c['scope'])}</td>"
        f"<td>{escape(c['name'])}</td><td>{escape(c['message'])}</td></tr>"
        for c in sorted(checks, key=lambda c: STATUS_ORDER.get(c["status"], 9))
    )
    return (
        f"<table><tr><th>status</th><th>scope</th><th>check</th><th>detail</th></tr>{rows}</table>"
    )


def _gate(report: dict[str, Any]) -> str:
    checks = report["checks"]
    fails = [c for c in checks if c["status"] == "fail"]
    warns = [c for c in checks if c["status"] == "warn"]
    if fails:
        scopes = sorted({c["scope"] for c in fails})
        affected = "every version" if "global" in scopes else ", ".join(scopes)
        items = "".join(
            f"<li><b>{escape(c['scope'])} · {escape(c['name'])}</b>: {escape(c['message'])}</li>"
            for c in fails
        )
        html = (
            '<section class="gate bad"><h2>⚠ Validity gate: headline NOT trustworthy</h2>'
            f"<p>{len(fails)} check(s) failed, affecting {escape(affected)}. Fix or explain "
            f"these before using the numbers below.</p><ul>{items}</ul></section>"
        )
    else:
        html = (
            '<section class="gate ok"><h2>✓ Validity gate passed</h2><p>No check failed '
            "(sample ratio, fallback balance, overlap, refuters, negative control, lineage, "
            "assignment; rules in the glossary).</p></section>"
        )
    if warns:
        items = "".join(
            f"<li><b>{escape(c['scope'])} · {escape(c['name'])}</b>: {escape(c['message'])}</li>"
            for c in warns
        )
        html += f'<div class="warns"><b>Warnings</b><ul>{items}</ul></div>'
    return (
        html
        + f"<details><summary>All {len(checks)} checks</summary>{_checks_table(checks)}</details>"
    )


def _headline(report: dict[str, Any]) -> str:
    out = []
    for s in report["headline"]["statements"]:
        cls = "headline" if s["trustworthy"] else "headline untrusted"
        out.append(f'<p class="{cls}">{escape(s["text"])}</p>')
    est = plots.SHORT.get(report["headline"]["estimator"], report["headline"]["estimator"])
    out.append(
        f'<p class="note">Headline estimator: {escape(est)}; unit: {escape(report["unit"])}; '
        f"outcome: {escape(report['outcome'])}.</p>"
    )
    return "".join(out)


def _estimates_table(report: dict[str, Any]) -> str:
    rows = []
    for v in report["versions"]:
        if v["is_control"] or not v["estimates"]:
            continue
        naive = v["naive"]
        for e in [*v["estimates"], v["cuped"], naive]:
            label = plots.SHORT.get(e["estimator"], e["estimator"])
            extra = ""
            if e is v["cuped"]:
                cls = "biased" if e["biased"] else "note"
                extra = (
                    f"variance −{e['variance_reduction']:.0%} ({escape(str(e['covariate']))}); "
                    "valid only "
                    f'if randomised. <span class="{cls}">{escape(e["note"])}</span>'
                )
            if e is naive:
                cls = "biased" if naive["biased"] else "note"
                extra = f'<span class="{cls}">{escape(naive["note"])}</span>'
            rows.append(
                f"<tr><td>{escape(v['model_version'])}</td><td>{escape(label)}</td>"
                f"<td class=num>{_num(e['effect'])}</td>"
                f"<td class=num>[{_num(e['ci_low'])}, {_num(e['ci_high'])}]</td>"
                f"<td class=num>{_pct(e['relative'])}</td>"
                f"<td class=num>[{_pct(e['relative_ci_low'])}, {_pct(e['relative_ci_high'])}]</td>"
                f"<td class=num>{_num(e['p_value'], '{:.3g}')}</td><td>{extra}</td></tr>"
            )
    return (
        f"<table><tr><th>version</th><th>estimator</th><th>uplift ({escape(_metric(report))})"
        f"</th><th>{_level(report)} CI</th><th>relative</th><th>{_level(report)} CI</th><th>p</th>"
        "<th>note</th></tr>" + "".join(rows) + "</table>"
    )


def _metric(report: dict[str, Any]) -> str:
    return str(report.get("metric", "revenue"))


def _level(report: dict[str, Any]) -> str:
    return f"{1 - float(report['settings'].get('alpha', 0.05)):.0%}"


def _metrics_table(report: dict[str, Any]) -> str:
    """Every metric per version, covariate-adjusted: what moved besides the headline."""
    rows = []
    for v in report["versions"]:
        for name, e in (v.get("metrics") or {}).items():
            rows.append(
                f"<tr><td>{escape(v['model_version'])}</td><td>{escape(name)}</td>"
                f"<td class=num>{_num(e['control_mean'], '{:.4g}')}</td>"
                f"<td class=num>{_num(e['effect'])}</td>"
                f"<td class=num>[{_num(e['ci_low'])}, {_num(e['ci_high'])}]</td>"
                f"<td class=num>{_pct(e['relative'])}</td>"
                f"<td class=num>{_num(e['p_value'], '{:.3g}')}</td></tr>"
            )
    if not rows:
        return "<p class=note>No metric varies enough to estimate.</p>"
    return (
        "<table><tr><th>version</th><th>metric</th><th>control</th><th>uplift</th>"
        f"<th>{_level(report)} CI</th><th>relative</th><th>p</th></tr>" + "".join(rows) + "</table>"
    )


def _power(report: dict[str, Any]) -> str:
    rows = []
    for v in report["versions"]:
        p, r = v.get("power"), v.get("robustness") or {}
        if not p:
            continue
        rows.append(
            f"<tr><td>{escape(v['model_version'])}</td><td class=num>{p['users']:,}</td>"
            f"<td class=num>{_num(p['se'], '{:.4g}')}</td>"
            f"<td class=num>±{_num(p['minimum_detectable_effect'], '{:.4g}')}</td>"
            f"<td class=num>{_num(r.get('rv'), '{:.1%}')}</td>"
            f"<td class=num>{_num(r.get('rv_alpha'), '{:.1%}')}</td></tr>"
        )
    if not rows:
        return ""
    power = report["versions"][1].get("power", {}).get("power", 0.8)
    return (
        "<table><tr><th>version</th><th>users compared</th><th>SE</th>"
        f"<th>minimum detectable effect ({power:.0%} power)</th><th>robustness value (to 0)</th>"
        "<th>robustness value (to insignificance)</th></tr>" + "".join(rows) + "</table>"
        "<p class=note>An effect smaller than the minimum detectable effect is likely to be "
        "reported as not significant. Robustness value: the share of the residual variance of "
        "both assignment and outcome an unobserved confounder would need to explain to erase "
        "the estimate (Cinelli &amp; Hazlett 2020).</p>"
    )


def _fallback(report: dict[str, Any]) -> str:
    per_arm = report["data"].get("fallback_by_arm") or {}
    if not per_arm:
        return "<p class=note>The data carry no fallback flag.</p>"
    rows = "".join(
        f"<tr><td>{escape(a)}</td><td>{escape(d['version'])}</td>"
        f"<td class=num>{d['impressions']:,}</td><td class=num>{d['fallback_impressions']:,}</td>"
        f"<td class=num>{d['share']:.2%}</td></tr>"
        for a, d in per_arm.items()
    )
    return (
        "<table><tr><th>arm</th><th>version</th><th>impressions</th><th>served by fallback</th>"
        f"<th>fallback share</th></tr>{rows}</table>"
    )


def _glossary(report: dict[str, Any]) -> str:
    g = report.get("glossary") or {}
    items = [
        f"<li><b>{escape(k)}</b>: {escape(v)}</li>"
        for section in ("checks", "refuters")
        for k, v in (g.get(section) or {}).items()
    ]
    return f"<ul>{''.join(items)}</ul>" if items else ""


def _versions_table(report: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{escape(v['model_version'])}{' (control)' if v['is_control'] else ''}</td>"
        f"<td>{escape(', '.join(v['arms']))}</td><td class=num>{v['users']:,}</td>"
        f"<td class=num>{v['mean_revenue']:.4g}</td><td class=num>{v['mean_clicks']:.3g}</td>"
        f"<td class=num>{v['conversion_rate']:.2%}</td></tr>"
        for v in report["versions"]
    )
    return (
        "<table><tr><th>version</th><th>arms</th><th>users</th><th>revenue/user</th>"
        f"<th>clicks/user</th><th>conversion</th></tr>{rows}</table>"
    )


def _segments_table(report: dict[str, Any]) -> str:
    rows = []
    for v in report["versions"]:
        for s in v.get("segments", []):
            e = s.get("estimate")
            cells = (
                f"<td class=num>{_num(e['effect'])}</td><td class=num>[{_num(e['ci_low'])}, "
                f"{_num(e['ci_high'])}]</td><td class=num>{_pct(e['relative'])}</td>"
                f"<td class=num>{_num(e['p_value'], '{:.3g}')}</td>"
                if e
                else f"<td colspan=4 class=note>{escape(s.get('note', ''))}</td>"
            )
            rows.append(
                f"<tr><td>{escape(v['model_version'])}</td><td>{escape(s['segment'])}</td>"
                f"<td class=num>{s['n_treated']:,} / {s['n_control']:,}</td>{cells}</tr>"
            )
    return (
        "<table><tr><th>version</th><th>segment</th><th>users (version / control)</th>"
        "<th>uplift/user</th><th>95% CI</th><th>relative</th><th>p</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _mechanisms(report: dict[str, Any]) -> str:
    out = []
    for v in report["versions"]:
        d = v.get("mechanisms")
        if not d:
            continue
        out.append(f"<figure>{plots.waterfall(d)}</figure>")
        rates = "".join(
            f"<tr><td>{escape(k.replace('_', ' '))}</td><td class=num>{r['control']:.4g}</td>"
            f"<td class=num>{r['version']:.4g}</td></tr>"
            for k, r in d["rates"].items()
        )
        parts = ", ".join(
            f"{p['mechanism'].replace('_', ' ')} {p['contribution']:+.3g}"
            + (
                f" [{p['band_95'][0]:+.3g}, {p['band_95'][1]:+.3g}]"
                + (" noise" if p.get("noise") else "")
                if p.get("band_95")
                else ""
            )
            for p in d["parts"]
        )
        out.append(
            f"<p class=note>{escape(d['from_version'])} → {escape(d['to_version'])}: total "
            f"{d['total']:+.4g} revenue per user = {escape(parts)} (95% bootstrap bands; "
            "'noise' = the band includes 0).</p><details><summary>Mechanism "
            f"rates</summary><table><tr><th>mechanism</th><th>{escape(d['from_version'])}</th>"
            f"<th>{escape(d['to_version'])}</th></tr>{rates}</table></details>"
        )
    return "".join(out)


def _lineage(report: dict[str, Any]) -> str:
    rows = []
    for v in report["versions"]:
        s = v.get("feedback_slice")
        effect = (
            "control"
            if v["is_control"]
            else (
                f"{_num(v['estimates'][0]['effect'])} [{_num(v['estimates'][0]['ci_low'])}, "
                f"{_num(v['estimates'][0]['ci_high'])}]"
            )
            if v["estimates"]
            else "not estimated"
        )
        if s:
            cells = (
                f"<td>{escape(str(s['parent_version']))}</td><td>{_when(s['start'])} → "
                f"{_when(s['end'])}</td><td class=num>{s['row_count']:,}</td>"
                f"<td><code>{escape(str(s['fingerprint']))}</code></td>"
                f"<td>{escape(str(s['code_version']))} / {escape(str(s['feature_service']))}</td>"
                f"<td>{s['partition_count']} partitions; runs "
                f"{escape(', '.join(s['job_run_ids']))}</td>"
            )
        elif v.get("external_policy"):
            policy = escape(str(v["external_policy"].get("policy")))
            cells = f"<td colspan=6>registered external policy: {policy} (no training slice)</td>"
        else:
            problem = escape(str(v.get("lineage_problem")))
            cells = f'<td colspan=6 class="biased">missing lineage: {problem}</td>'
        rows.append(
            f"<tr><td>{escape(v['model_version'])}</td><td class=num>{effect}</td>{cells}</tr>"
        )
    table = (
        f"<table><tr><th>version</th><th>uplift vs control [{_level(report)} CI]</th>"
        "<th>parent</th>"
        "<th>training slice (UTC)</th><th>rows</th><th>fingerprint</th><th>code / features</th>"
        "<th>source</th></tr>" + "".join(rows) + "</table>"
    )
    pairs = "".join(
        f"<li><b>{escape(p['newer_version'])} vs {escape(p['older_version'])}</b>: "
        f"{escape(p['statement'])}. <span class=note>{escape(p['description'])}</span></li>"
        for p in report["slice_attribution"]
    )
    pairs = (
        f"<p>Versions that differ only in their training slice:</p><ul>{pairs}</ul>"
        if pairs
        else "<p class=note>No two versions differ only in their training slice.</p>"
    )
    timeline = plots.slice_timeline(report)
    return table + (f"<figure>{timeline}</figure>" if timeline else "") + pairs


def _consistency(report: dict[str, Any]) -> list[str]:
    """The online/offline feature consistency of the attributed period, if it was checked
    (`loopline consistency`): each slice's section, linked to its own page."""
    found = report.get("consistency") or []
    if not found:
        return []
    parts = ["<h2>Training/serving feature consistency</h2>"]
    for doc in found:
        parts.append(consistency_report.section(doc, "h3"))
        if doc.get("html"):
            parts.append(f'<p class=note>full page: <a href="file://{escape(doc["html"])}">'
                         f"{escape(doc['html'])}</a></p>")
    return parts


def _refuters(report: dict[str, Any]) -> str:
    rows = []
    for v in report["versions"]:
        for r in v.get("refuters", []):
            rows.append(
                f"<tr><td>{escape(v['model_version'])}</td><td>{escape(r['name'])}</td>"
                f"<td>{_badge(r['status'])}</td><td class=num>{_num(r['estimated_effect'])}</td>"
                f"<td class=num>{_num(r['new_effect'])}</td>"
                f"<td class=num>{_num(r['p_value'], '{:.3g}')}</td>"
                f"<td class=num>{r['sample_size']:,} × {r['simulations']}</td>"
                f"<td>{escape(r['message'])}</td></tr>"
            )
    if not rows:
        return "<p class=note>Refuters were not run.</p>"
    return (
        "<table><tr><th>version</th><th>refuter</th><th>status</th><th>estimate</th>"
        "<th>refuted</th><th>p</th><th>users × sims</th><th>detail</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _method(report: dict[str, Any]) -> str:
    g = report["causal_graph"]
    s = report["settings"]
    d = report["data"]
    edges = ", ".join(
        f"{a}→{b}" for a, b in g["edges"] if a in (g["treatment"],) or b == g["treatment"]
    )
    sizes = {
        v["model_version"]: v.get("refuter_sample_size")
        for v in report["versions"]
        if not v["is_control"]
    }
    return (
        "<ul>"
        f"<li>Unit: user; treatment: assigned model version (first arm seen, intent to treat); "
        f"outcome: {escape(report['outcome'])}.</li>"
        f"<li>Causal graph (DoWhy, backdoor identification): {escape(edges)}; covariates also "
        "cause every mediator and revenue. Adjustment set: "
        f"<code>{escape(', '.join(g['adjustment_set']))}</code>.</li>"
        f"<li>Estimators: {escape(', '.join(s['estimators']))}. Regression includes treatment × "
        "covariate interactions (average effect under heterogeneity); CIs are analytic (HC2 "
        "sandwich / influence function).</li>"
        f"<li>Refuters run on a random subsample of at most {s['refuter_max_units']:,} users "
        f"({escape(json.dumps(sizes))}) with {s['refuter_simulations']} simulations each; "
        "each refuter's pass/fail rule is in the glossary below.</li>"
        f"<li>Segments from {escape(str(d.get('segment_source')))}: "
        f"{escape(json.dumps(d['segments']))}. Organic revenue share: "
        f"{d['organic_revenue_share']:.1%}.</li>"
        f"<li>Attribution window {s['attribution_window_hours']:g} h after first exposure; "
        f"pre-period {s['pre_period_hours']:g} h; alpha {s['alpha']}; "
        f"SRM alpha {s['srm_alpha']}.</li>"
        f"<li>Runtime: {report['timings_seconds'].get('total', 0):.1f} s for "
        f"{d['users']:,} users.</li></ul>"
    )


def render_html(report: dict[str, Any]) -> str:
    p = report["period"]
    since, until = p["since"] or "start of data", p["until"] or "end of data"
    sections = [
        f"<h1>Attribution by model version: {escape(_metric(report))}</h1>",
        f'<p class="meta">Exposures {escape(since)} → {escape(until)} · control '
        f"<b>{escape(report['control_version'])}</b> · {report['data']['users']:,} users · "
        f"generated {escape(report['generated_at'])} · "
        f"schema v{escape(report['schema_version'])}</p>",
        _gate(report),
        "<h2>Headline</h2>",
        _headline(report),
        f"<figure>{plots.uplift(report)}</figure>",
        _estimates_table(report),
        "<h2>What the experiment can detect</h2>",
        _power(report),
        "<h2>Every metric</h2>",
        _metrics_table(report),
        "<h2>Versions</h2>",
        _versions_table(report),
        "<h3>Popularity fallback per arm</h3>",
        _fallback(report),
        "<h2>Per segment</h2>",
        f"<figure>{plots.segments(report)}</figure>",
        _segments_table(report),
        "<h2>Where the change comes from</h2>",
        _mechanisms(report),
        "<h2>Feedback slices: which data earned this revenue</h2>",
        _lineage(report),
        *_consistency(report),
        "<h2>Refuters</h2>",
        _refuters(report),
        "<h2>Method</h2>",
        _method(report),
        "<h2>Glossary: what fails each check</h2>",
        _glossary(report),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>Loopline attribution report</title>"
        f"<style>{CSS}</style></head><body><main>" + "".join(sections) + "</main></body></html>"
    )


def json_safe(value: Any) -> Any:
    """Plain JSON types only: numpy scalars unwrapped, NaN/inf as null."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    # A report is for reviewers: any user identifier in it becomes a keyed-hash pseudonym.
    report = pseudonymiser().scrub(json_safe(report))
    json_path, html_path = out / "report.json", out / "report.html"
    json_path.write_text(json.dumps(report, indent=2, allow_nan=False))
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path
