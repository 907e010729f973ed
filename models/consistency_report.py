"""The consistency check's outputs: consistency.json + consistency.html per slice under
<home>/consistency/<START>..<END>/, and the HTML section the attribution report embeds.

Figures are small hand-written SVG (a per-feature mismatch bar chart, a staleness histogram
per view): no plotting library on this path, and the section renders the same in both pages.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

from loopline.paths import PathsConfig

JSON_FILE, HTML_FILE = "consistency.json", "consistency.html"
_BAD, _OK, _MUTED = "#b3261e", "#1f5fa8", "#8a8f98"


def directory(paths: PathsConfig, slice_text: str) -> Path:
    return paths.consistency / slice_text.replace(":", "")


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write(report: dict[str, Any], paths: PathsConfig) -> tuple[Path, Path]:
    """Write both files for the report's slice; returns (json, html)."""
    out = directory(paths, report["slice"])
    out.mkdir(parents=True, exist_ok=True)
    doc = _json_safe(report)
    json_path, html_path = out / JSON_FILE, out / HTML_FILE
    tmp = json_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False))
    tmp.replace(json_path)  # readers (retrain-check) never see half a file
    html_path.write_text(page(doc), encoding="utf-8")
    return json_path, html_path


def reports(paths: PathsConfig) -> list[dict[str, Any]]:
    """Every written report, oldest slice end first; unreadable files are skipped (named)."""
    found = []
    for path in sorted(paths.consistency.glob(f"*/{JSON_FILE}")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        doc["_path"] = str(path)
        found.append(doc)
    return sorted(found, key=lambda d: str(d.get("slice", "")).split("..")[-1])


def latest(paths: PathsConfig) -> dict[str, Any] | None:
    """The report of the latest slice checked, or None."""
    found = reports(paths)
    return found[-1] if found else None


def _bars(report: dict[str, Any]) -> str:
    feats = report["features"]
    limit = report["thresholds"]["max_mismatch_rate"]
    top = max([f["mismatch_rate"] for f in feats] + [limit * 2, 1e-9])
    row, label_w, plot_w = 16, 190, 320
    height = row * len(feats) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 70}" '
             f'height="{height}" font-size="11" font-family="sans-serif" role="img" '
             'aria-label="mismatch rate per feature">']
    for i, f in enumerate(feats):
        y = 10 + i * row
        w = plot_w * f["mismatch_rate"] / top
        colour = _BAD if f["breach"] else _OK
        parts.append(f'<text x="{label_w - 4}" y="{y + 11}" text-anchor="end">'
                     f'{escape(f["name"])}</text>'
                     f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 4}" '
                     f'fill="{colour}"/><text x="{label_w + w + 4:.1f}" y="{y + 11}">'
                     f'{f["mismatch_rate"]:.2%}</text>')
    x = label_w + plot_w * limit / top
    parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="6" y2="{height - 18}" '
                 f'stroke="{_MUTED}" stroke-dasharray="4 3"/>'
                 f'<text x="{x:.1f}" y="{height - 4}" text-anchor="middle" fill="{_MUTED}">'
                 f'threshold {limit:.0%}</text></svg>')
    return "".join(parts)


def _histogram(view: str, stale: dict[str, Any]) -> str:
    counts, edges = stale["histogram"]["counts"], stale["histogram"]["edges_ms"]
    if not counts:
        return f"<p class=note>{escape(view)}: no feature times logged.</p>"
    width, height, pad = 420, 140, 28
    top = max(counts) or 1
    bar = (width - 2 * pad) / len(counts)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 30}" '
             'font-size="11" font-family="sans-serif" role="img" '
             f'aria-label="staleness histogram, {escape(view)}">'
             f'<text x="{pad}" y="12">{escape(view)}: serving time − feature time</text>']
    for i, c in enumerate(counts):
        h = (height - 30) * c / top
        parts.append(f'<rect x="{pad + i * bar:.1f}" y="{height - h:.1f}" '
                     f'width="{max(bar - 1, 1):.1f}" height="{h:.1f}" fill="{_OK}">'
                     f"<title>{edges[i] / 1000:.1f}–{edges[i + 1] / 1000:.1f} s: {c}</title>"
                     "</rect>")
    parts.append(f'<text x="{pad}" y="{height + 16}">{edges[0] / 1000:.1f} s</text>'
                 f'<text x="{width - pad}" y="{height + 16}" text-anchor="end">'
                 f"{edges[-1] / 1000:.1f} s</text></svg>")
    return "".join(parts)


def _maybe(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _seconds(ms: Any) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f} s"


def section(report: dict[str, Any], heading: str = "h2") -> str:
    """The HTML fragment: verdict, breaches, counts, the two figures and the feature table."""
    logs, missing = report["logs"], report["missing_logs"]
    verdict = ("<p class=ok>✓ no threshold breached</p>" if report["ok"] else
               "<ul class=bad>" + "".join(f"<li>{escape(b)}</li>" for b in report["breaches"])
               + "</ul>")
    stale_rows = "".join(
        f"<tr><td>{escape(view)}</td><td class=num>{s['count']:,}</td>"
        f"<td class=num>{_seconds(s['p50_ms'])}</td><td class=num>{_seconds(s['p95_ms'])}</td>"
        f"<td class=num>{_seconds(s['p99_ms'])}</td><td class=num>{_seconds(s['max_ms'])}</td>"
        "</tr>" for view, s in report["staleness"].items())
    feature_rows = "".join(
        f"<tr{' class=bad' if f['breach'] else ''}><td>{escape(f['name'])}</td>"
        f"<td class=num>{f['compared']:,}</td><td class=num>{f['mismatch_rate']:.2%}</td>"
        f"<td class=num>{_maybe(f['explained_by_staleness'], 'd')}</td>"
        f"<td class=num>{f['missing_online_rate']:.2%}</td>"
        f"<td class=num>{f['missing_offline_rate']:.2%}</td>"
        f"<td class=num>{_maybe(f['mean_abs_diff'], '.4g')}</td></tr>"
        for f in report["features"])
    return (
        f"<{heading}>Online/offline feature consistency {escape(str(report.get('slice', '')))}"
        f"</{heading}>{verdict}"
        f"<p>{report['compared_rows']:,} impressions compared (logged online value vs the "
        "point-in-time offline value training reads); tolerance "
        f"|Δ| ≤ {report['tolerance']['abs']:g} + {report['tolerance']['rel']:g}·|offline|. "
        f"Feature logs: {logs['records']:,} records, {logs['malformed']:,} malformed, "
        f"{logs['duplicates']:,} duplicates; {missing['missing_requests']:,} of "
        f"{missing['expected_requests']:,} sampled requests without a log "
        f"({missing['missing_rate']:.1%}).</p>"
        f"<figure>{_bars(report)}</figure>"
        "<figure>" + "".join(_histogram(v, s) for v, s in report["staleness"].items())
        + "</figure>"
        "<table><tr><th>view</th><th>values</th><th>p50</th><th>p95</th><th>p99</th>"
        f"<th>max</th></tr>{stale_rows}</table>"
        "<table><tr><th>feature</th><th>compared</th><th>mismatch</th>"
        "<th>explained by staleness</th><th>missing online</th><th>missing offline</th>"
        f"<th>mean |Δ|</th></tr>{feature_rows}</table>"
    )


_CSS = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{padding:2px 8px;border-bottom:1px "
        "solid #ddd}.num{text-align:right}.bad{color:#b3261e}.ok{color:#1b7f3b}"
        ".note{color:#8a8f98}")


def page(report: dict[str, Any]) -> str:
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            "<title>Loopline feature consistency</title>"
            f"<style>{_CSS}</style></head><body><main>{section(report, 'h1')}"
            f"<p class=note>generated {escape(str(report.get('generated_at', '')))} · "
            f"feature service {escape(report['feature_service'])} "
            f"{escape(report['feature_service_version'])}</p></main></body></html>")
