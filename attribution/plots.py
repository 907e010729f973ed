"""Figures for the HTML report, drawn from the report document and returned as inline SVG."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pandas as pd

plt.rcParams.update(
    {
        "svg.fonttype": "none",  # keep text as text: smaller, selectable
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)
GOOD, BAD, NEUTRAL, MUTED = "#1b7f3b", "#b3261e", "#1f5fa8", "#8a8f98"
SHORT = {
    "backdoor.linear_regression": "regression (DoWhy)",
    "backdoor.doubly_robust": "doubly robust (DoWhy)",
    "backdoor.propensity_score_weighting": "propensity weighting (DoWhy)",
    "naive": "naive difference",
    "cuped": "CUPED",
}


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    # No metadata block: no creation date (deterministic output) and no RDF namespace URLs.
    meta = {"Date": None, "Creator": None, "Format": None, "Type": None}
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata=meta)
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def uplift(report: dict[str, Any]) -> str:
    """Absolute uplift per version with 95 % CIs: every estimator, CUPED and the naive gap."""
    rows = []
    for v in report["versions"]:
        if v["is_control"] or not v["estimates"]:
            continue
        naive, cup = v["naive"], v["cuped"]
        for e in [*v["estimates"], cup, naive]:
            label = SHORT.get(e["estimator"], e["estimator"])
            unadjusted = e is naive or e is cup
            if unadjusted and e["biased"]:
                label += " (biased)"
            colour = (BAD if e["biased"] else MUTED) if unadjusted else NEUTRAL
            rows.append((f"{v['model_version']} · {label}", e, colour))
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(rows) + 1.0))
    for i, (_, e, colour) in enumerate(rows):
        y = len(rows) - 1 - i
        ax.errorbar(
            e["effect"],
            y,
            xerr=[[e["effect"] - e["ci_low"]], [e["ci_high"] - e["effect"]]],
            fmt="o",
            color=colour,
            capsize=3,
        )
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"revenue uplift per user vs {report['control_version']} (95% CI)")
    ax.set_title("Uplift per model version")
    return _svg(fig)


def segments(report: dict[str, Any]) -> str:
    rows = []
    for v in report["versions"]:
        for s in v.get("segments", []):
            if s.get("estimate"):
                rows.append((f"{v['model_version']} · {s['segment']}", s["estimate"]))
    fig, ax = plt.subplots(figsize=(8.5, 0.4 * max(len(rows), 1) + 1.0))
    for i, (_, e) in enumerate(rows):
        y = len(rows) - 1 - i
        colour = GOOD if e["ci_low"] > 0 else BAD if e["ci_high"] < 0 else MUTED
        ax.errorbar(
            e["effect"],
            y,
            xerr=[[e["effect"] - e["ci_low"]], [e["ci_high"] - e["effect"]]],
            fmt="s",
            color=colour,
            capsize=3,
        )
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("adjusted revenue uplift per user within segment (95% CI)")
    ax.set_title("Uplift per segment")
    return _svg(fig)


def waterfall(decomposition: dict[str, Any]) -> str:
    parts = [
        p
        for p in decomposition["parts"]
        if p["mechanism"] != "unexplained" or abs(p["contribution"]) > 1e-9
    ]
    total = decomposition["total"]
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    level, levels, labels = 0.0, [0.0, total], []
    for i, p in enumerate(parts):
        c = p["contribution"]
        ax.bar(i, c, bottom=level, color=GOOD if c >= 0 else BAD, width=0.6)
        _label(ax, i, level, level + c, c)
        if i:
            ax.plot([i - 0.7, i - 0.3], [level, level], color=MUTED, lw=0.8)
        level += c
        levels.append(level)
        labels.append(p["mechanism"].replace("_", " "))
    ax.plot([len(parts) - 0.7, len(parts) - 0.3], [level, level], color=MUTED, lw=0.8)
    ax.bar(len(parts), total, color=NEUTRAL, width=0.6)
    _label(ax, len(parts), 0.0, total, total)
    lo, hi = min(levels), max(levels)
    pad = 0.18 * max(hi - lo, 1e-9)
    ax.set_ylim(lo - pad if lo < 0 else lo, hi + pad)
    ax.set_xticks(range(len(parts) + 1), [*labels, "total"])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("Δ revenue per user")
    ax.set_title(
        f"Mechanisms: {decomposition['from_version']} → {decomposition['to_version']} "
        "(observed difference, Shapley split)",
        pad=10,
    )
    return _svg(fig)


def _label(ax: Any, x: float, start: float, end: float, value: float) -> None:
    """Value above a rising bar, below a falling one."""
    up = value >= 0
    ax.text(
        x,
        max(start, end) if up else min(start, end),
        f" {value:+.3g} ",
        ha="center",
        va="bottom" if up else "top",
        fontsize=9,
    )


def _span(parts: list[dict[str, Any]]) -> float:
    return max(sum(abs(p["contribution"]) for p in parts), 1e-9)


def slice_timeline(report: dict[str, Any]) -> str | None:
    """Training slice of each version on one time axis, labelled with its effect."""
    rows = [v for v in report["versions"] if v.get("feedback_slice")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 0.5 * len(rows) + 1.0))
    for i, v in enumerate(rows):
        s = v["feedback_slice"]
        start, end = (mdates.date2num(_naive(s[k])) for k in ("start", "end"))
        y = len(rows) - 1 - i
        ax.barh(y, end - start, left=start, color=MUTED if v["is_control"] else NEUTRAL, height=0.5)
        effect = (
            "control"
            if v["is_control"]
            else f"{v['estimates'][0]['effect']:+.3g}"
            if v["estimates"]
            else "not estimated"
        )
        ax.text(end, y, f"  {effect}", va="center", fontsize=9)
    ax.set_yticks(range(len(rows)), [v["model_version"] for v in reversed(rows)])
    ax.xaxis_date()
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    ax.set_title("Training slice per version (label: uplift vs control)")
    fig.autofmt_xdate()
    return _svg(fig)


def _naive(text: str) -> Any:
    ts = pd.Timestamp(text)
    return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).to_pydatetime()
