"""The pure half of the consistency check (match + compare, no Feast) and where its report
goes: its own page, and the attribution report for an overlapping period."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from attribution.consistency import reports_for
from feature_repo import names
from loopline.paths import PathsConfig
from models import consistency, consistency_report, feature_logs, features
from models.consistency import ConsistencyConfig
from schemas.codec import FEATURE_LOG, default_codec

SERVED = 1_767_279_600_000  # 2026-01-01T15:00Z
USER_COLS = features.VIEW_COLUMNS[names.USER_ACTIVITY]
ITEM_COLS = features.VIEW_COLUMNS[names.ITEM_PERFORMANCE]


def record(n: int, items: int = 4, shift: dict[str, float] | None = None) -> bytes:
    shift = shift or {}
    return default_codec().encode(FEATURE_LOG, {
        "request_id": f"r{n}", "event_time": SERVED + n, "user_id": f"u{n % 3}",
        "model_version": "v1", "feature_service": features.FEATURE_SERVICE,
        "feature_service_version": features.SERVICE_VERSION, "sample_rate": 1.0,
        "user": {"entity_id": f"u{n % 3}", "feature_time": SERVED - 1000,
                 "values": [float(j) + shift.get(c, 0.0) for j, c in enumerate(USER_COLS)]},
        "items": [{"entity_id": f"i{k}", "feature_time": SERVED - 2000 * (k + 1),
                   "values": [float(k + j) + shift.get(c, 0.0) for j, c in enumerate(ITEM_COLS)]}
                  for k in range(items)]})


def truth(n_requests: int, items: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Impressions and their offline values: what `record` logs without a shift."""
    rows, values = [], []
    for n in range(n_requests):
        for k in range(items):
            rows.append({"request_id": f"r{n}", "item_id": f"i{k}", "user_id": f"u{n % 3}",
                         "served_at": pd.Timestamp(SERVED + n, unit="ms", tz="UTC"),
                         "fallback": False})
            values.append({**{c: float(j) for j, c in enumerate(USER_COLS)},
                           **{c: float(k + j) for j, c in enumerate(ITEM_COLS)}})
    return pd.DataFrame(rows), pd.DataFrame(values)[list(features.COLUMNS)]


def report_of(logs: list[bytes], n: int = 10, **cfg: Any) -> dict[str, Any]:
    impressions, offline = truth(n)
    matched = consistency.match(impressions, feature_logs.parse(logs), 1.0)
    merged = matched.rows.merge(impressions.assign(_i=range(len(impressions))),
                                on=["request_id", "item_id"])
    aligned = offline.iloc[merged["_i"].to_numpy()].reset_index(drop=True)
    return consistency.compare(matched, aligned, feature_logs.parse(logs),
                               ConsistencyConfig(**cfg)) | {"slice": "2026-01-01T15:00:00Z.."
                                                            "2026-01-01T16:00:00Z"}


def test_a_shift_inside_the_tolerance_is_no_mismatch_and_beyond_it_is() -> None:
    inside = report_of([record(n, shift={"user_clicks_1h": 1e-9}) for n in range(10)])
    assert inside["ok"] and not any(f["mismatches"] for f in inside["features"])
    beyond = report_of([record(n, shift={"user_clicks_1h": 0.5} if n < 3 else None)
                        for n in range(10)])
    bad = [f for f in beyond["features"] if f["mismatches"]]
    assert [f["name"] for f in bad] == ["user_clicks_1h"]
    assert bad[0]["mismatch_rate"] == pytest.approx(0.3)
    assert bad[0]["explained_by_staleness"] is None  # not asked for (no Feast here)


def test_a_value_missing_on_one_side_is_missing_not_a_mismatch() -> None:
    logs = [record(n, shift={"item_ctr_1h": float("nan")} if n == 0 else None)
            for n in range(10)]
    f = {f["name"]: f for f in report_of(logs)["features"]}["item_ctr_1h"]
    assert f["mismatches"] == 0 and f["missing_online"] == 4
    assert f["missing_online_rate"] == pytest.approx(0.1) and f["compared"] == 36


def test_item_staleness_is_per_row_and_user_staleness_per_request() -> None:
    stale = report_of([record(n) for n in range(10)])["staleness"]
    user, item = stale[names.USER_ACTIVITY], stale[names.ITEM_PERFORMANCE]
    assert user["count"] == 10 and item["count"] == 40
    assert user["max_ms"] == 1009 and item["max_ms"] == 8009
    assert item["p50_ms"] == np.percentile(
        [n + 2000 * (k + 1) for n in range(10) for k in range(4)], 50, method="lower")


def test_the_report_is_written_and_embedded_in_an_overlapping_attribution(
        tmp_path: Path) -> None:
    from attribution import report as attribution_report

    paths = PathsConfig(home=tmp_path)
    doc = report_of([record(n, shift={"item_clicks_24h": 2.0}) for n in range(10)])
    _, html_path = consistency_report.write(doc, paths)
    assert consistency_report.latest(paths)["slice"] == doc["slice"]
    inside = reports_for(paths, pd.Timestamp("2026-01-01T12", tz="UTC"),
                         pd.Timestamp("2026-01-02", tz="UTC"))
    assert len(inside) == 1 and inside[0]["html"] == str(html_path)
    assert reports_for(paths, pd.Timestamp("2026-01-02"), None) == []
    html = "".join(attribution_report._consistency({"consistency": inside}))
    assert "Training/serving feature consistency" in html and "item_clicks_24h" in html
    assert "<svg" in html and str(html_path) in html
    assert attribution_report._consistency({}) == []
