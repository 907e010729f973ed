"""When to retrain, and why: `loopline retrain-check`.

Three signals, each measured on final slice partitions (manifests first, data only as needed):
- slice size: labelled rows written after the production version's training slice ended;
- performance decay: the production version's own logged scores vs clicks (AUC) and its CTR
  in the latest window, against its first window in production (same model, same policy:
  the comparison is not muddied by who chose the items);
- score drift: PSI of its logged scores, latest window against that first window;
- train/serve skew: the latest `loopline consistency` report breached a threshold (which
  feature, which slice): the model is trained on values serving does not see.

Every decision is appended to <models>/retrain_decisions.jsonl with its measurements.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from loopline import settings
from loopline.errors import ConfigError
from loopline.paths import PathsConfig
from models import consistency_report, metrics, slices
from models.registry import Registry
from models.rollout import Rollout

DECISIONS_FILE = "retrain_decisions.jsonl"
_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TriggerConfig:
    """Retrain thresholds ([retrain] / LOOPLINE_RETRAIN_*)."""

    min_new_rows: int = 50_000
    window_hours: int = 6  # the latest and the reference windows, in partitions
    min_window_rows: int = 1_000  # below this a window is not measured
    max_auc_drop: float = 0.05  # absolute
    max_ctr_drop: float = 0.2  # relative
    max_score_psi: float = 0.2

    def __post_init__(self) -> None:
        if self.min_new_rows <= 0 or self.window_hours <= 0 or self.min_window_rows <= 0:
            raise ConfigError(
                "retrain.min_new_rows, window_hours, min_window_rows must be positive")


def load_triggers(**overrides: object) -> TriggerConfig:
    return settings.load(TriggerConfig, "retrain", **overrides)


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reasons: list[str]
    production_version: str | None
    proposed_slice: str | None
    measurements: dict[str, Any] = field(default_factory=dict)
    decided_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        head = "retrain: YES" if self.retrain else "retrain: no"
        lines = [f"{head}   (production version: {self.production_version or 'none'})"]
        lines += [f"  because {r}" for r in self.reasons] or ["  no trigger fired"]
        if self.proposed_slice:
            lines.append(f"  proposed slice: {self.proposed_slice}")
        for key, value in self.measurements.items():
            lines.append(f"  {key}: {value}")
        return "\n".join(lines)


def _window_stats(frame: pd.DataFrame) -> dict[str, Any]:
    clicks = frame["clicked"].to_numpy(int)
    return {"rows": len(frame), "ctr": float(clicks.mean()),
            "auc": metrics.auc(clicks, frame["score"].to_numpy(float))}


def _served_by(parts: list[slices.Partition], version: str) -> pd.DataFrame:
    frame = slices.read_partitions(parts, ["model_version", "fallback", "score", "clicked"])
    return frame[(frame["model_version"] == version) & ~frame["fallback"]]


def _model_health(cfg: TriggerConfig, parts: list[slices.Partition],
                  version: str) -> tuple[list[str], dict[str, Any]]:
    """Decay and drift of `version` between its first and its latest window in production."""
    latest = parts[-cfg.window_hours:]
    reference, ref = None, pd.DataFrame()
    for start in range(0, len(parts) - len(latest), cfg.window_hours):
        window = parts[start:start + cfg.window_hours]
        ref = _served_by(window, version)
        if len(ref) >= cfg.min_window_rows:
            reference = window
            break
    if reference is None or reference[-1].name >= latest[0].name:
        return [], {"health": f"needs two windows of {cfg.window_hours} partitions with "
                              f">= {cfg.min_window_rows} rows served by {version}"}
    now = _served_by(latest, version)
    if len(now) < cfg.min_window_rows:
        return [], {"health": f"latest window has {len(now)} rows served by {version}"}
    a, b = _window_stats(ref), _window_stats(now)
    drift = metrics.psi(metrics.quantile_edges(ref["score"].to_numpy(float)),
                        now["score"].to_numpy(float))
    found = {"reference_window": f"{reference[0].name}..{reference[-1].name}", "reference": a,
             "latest_window": f"{latest[0].name}..{latest[-1].name}", "latest": b,
             "score_psi": round(drift, 4)}
    reasons = []
    if a["auc"] is not None and b["auc"] is not None and a["auc"] - b["auc"] >= cfg.max_auc_drop:
        reasons.append(f"performance decay: AUC {a['auc']:.3f} -> {b['auc']:.3f}")
    if a["ctr"] > 0 and (a["ctr"] - b["ctr"]) / a["ctr"] >= cfg.max_ctr_drop:
        reasons.append(f"performance decay: CTR {a['ctr']:.4f} -> {b['ctr']:.4f}")
    if drift >= cfg.max_score_psi:
        reasons.append(f"score drift: PSI {drift:.3f} >= {cfg.max_score_psi}")
    return reasons, found


def _consistency(paths: PathsConfig) -> tuple[list[str], dict[str, Any]]:
    """Breaches of the latest consistency report (`loopline consistency` writes it)."""
    report = consistency_report.latest(paths)
    if report is None:
        return [], {}
    found = {"slice": report.get("slice"), "ok": report.get("ok"),
             "report": report.get("_path")}
    reasons = [f"train/serve skew in {report.get('slice')}: {b} (consider `loopline train "
               "--features logged`)" for b in report.get("breaches") or []]
    return reasons, found


def check(paths: PathsConfig, cfg: TriggerConfig, record: bool = True) -> Decision:
    """Measure the triggers now; append the decision to the decisions log."""
    registry = Registry.from_paths(paths)
    production = Rollout(registry).production_version()
    parts = slices.list_partitions(paths)
    trained_end = (slices.parse_time(registry.lineage(production)["slice"]["end"])
                   if production else None)
    new = [p for p in parts if trained_end is None or p.start_ms >= slices.to_ms(trained_end)]
    new_rows = sum(p.row_count for p in new)
    reasons: list[str] = []
    found: dict[str, Any] = {"new_rows": new_rows, "new_partitions": len(new)}
    if new_rows >= cfg.min_new_rows:
        reasons.append(f"slice size: {new_rows} new rows >= {cfg.min_new_rows}")
    if production and new:
        health_reasons, health = _model_health(cfg, new, production)
        reasons += health_reasons
        found.update(health)
    skew_reasons, skew = _consistency(paths)
    reasons += skew_reasons
    if skew:
        found["consistency"] = skew
    proposed = None
    if new:
        start = trained_end or datetime.fromtimestamp(new[0].start_ms / 1000, UTC)
        last = max(int(p.manifest["event_time_max"]) for p in new)
        end = datetime.fromtimestamp((last // _HOUR_MS + 1) * _HOUR_MS / 1000, UTC)
        proposed = str(slices.SliceRange(start, end))
    decision = Decision(bool(reasons) and new_rows > 0, reasons, production, proposed, found,
                        datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"))
    if record:
        registry.root.mkdir(parents=True, exist_ok=True)
        with open(registry.root / DECISIONS_FILE, "a") as handle:
            handle.write(json.dumps(decision.to_dict(), sort_keys=True, default=_jsonable) + "\n")
    return decision


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
