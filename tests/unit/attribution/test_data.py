"""Loading the slice contracts into the per-user analysis table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attribution.config import AttributionConfig
from attribution.data import activity_tiers, aggregate_users, load_analysis_table, prepare_table
from attribution.errors import InputDataError
from bench.attribution_files import write_contracts
from bench.attribution_world import SimulationSpec, simulate

CFG = AttributionConfig(attribution_window_hours=24, pre_period_hours=48, negative_control_hours=24)
T0 = pd.Timestamp("2026-11-02T00:00Z")


def _ts(hours: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hours)


def _impressions(rows: list[tuple]) -> pd.DataFrame:
    cols = [
        "user_id",
        "model_version",
        "arm",
        "fallback",
        "served_at",
        "clicked",
        "purchased",
        "revenue",
    ]
    return pd.DataFrame(rows, columns=cols)


def _unmatched(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "event_time", "type", "revenue"])


def _events() -> tuple[pd.DataFrame, pd.DataFrame]:
    imps = _impressions(
        [
            # u1: exposed at +1h to treatment (v2), a fallback impression, one purchase in window
            ("u1", "v2", "treatment", False, _ts(1), True, False, 0.0),
            ("u1", "popularity", "treatment", True, _ts(2), True, True, 30.0),
            ("u1", "v2", "treatment", False, _ts(30), True, True, 99.0),  # after the 24h window
            # u2: control, seen before the period (pre-exposure), then exposed at +5h
            ("u2", "v1", "control", False, _ts(-10), True, True, 12.0),
            ("u2", "v1", "control", False, _ts(5), False, False, 0.0),
            ("u2", "v2", "treatment", False, _ts(6), False, False, 0.0),  # crossover
            # u3: first seen after `until`: not in the analysis
            ("u3", "v1", "control", False, _ts(50), True, True, 40.0),
        ]
    )
    unmatched = _unmatched(
        [
            ("u1", _ts(3), "purchase", 20.0),  # organic, in window: counted
            ("u1", _ts(26), "purchase", 50.0),  # after the window: not counted
            ("u1", _ts(-20), "view", 0.0),  # pre-period activity
            ("u2", _ts(-60), "purchase", 70.0),  # before the pre-period: ignored
            ("u2", _ts(-1), "purchase", 8.0),  # pre-period revenue
            ("u9", _ts(2), "purchase", 5.0),  # never exposed: ignored
        ]
    )
    return imps, unmatched


def test_windows_organic_revenue_and_assignment() -> None:
    no_held_out = AttributionConfig(
        attribution_window_hours=24, pre_period_hours=48, negative_control_hours=0
    )
    users, info = aggregate_users(*_events(), T0, _ts(24), no_held_out)
    u = users.set_index("user_id")
    assert list(u.index) == ["u1", "u2"]
    assert u.loc["u1", "version"] == "v2" and u.loc["u2", "version"] == "v1"
    assert u.loc["u1", "impressions"] == 2 and u.loc["u1", "clicks"] == 2
    assert u.loc["u1", "attributed_revenue"] == 30.0
    assert u.loc["u1", "organic_revenue"] == 20.0 and u.loc["u1", "revenue"] == 50.0
    assert u.loc["u1", "converted"] == 1
    assert (u.loc["u1", "pre_events"], u.loc["u1", "pre_revenue"]) == (1, 0.0)
    assert u.loc["u2", "pre_events"] == 2 and u.loc["u2", "pre_revenue"] == 20.0
    assert u.loc["u2", "pre_purchases"] == 2 and u.loc["u2", "revenue"] == 0.0
    assert info["crossover_users"] == 1
    assert info["arm_versions"] == {"control": "v1", "treatment": "v2"}
    assert u.loc["u1", "fallback_impressions"] == 1 and u.loc["u2", "fallback_impressions"] == 0
    assert (u["nc_revenue"] == 0).all()


def test_negative_control_window_is_held_out_of_the_covariates() -> None:
    # The last 24 h before exposure are the negative-control window, not covariates.
    users, _ = aggregate_users(*_events(), T0, _ts(24), CFG)
    u = users.set_index("user_id")
    # u2 (exposed at +5 h): impression at -10 h (12 revenue) and purchase at -1 h (8) are both
    # within 24 h before exposure; u1's view at -20 h is too.
    assert u.loc["u2", "nc_revenue"] == 20.0 and u.loc["u2", "pre_revenue"] == 0.0
    assert u.loc["u2", "pre_events"] == 0 and u.loc["u1", "pre_events"] == 0


def test_no_impressions_in_period_is_an_error() -> None:
    imps = _impressions([("u1", "v1", "control", False, _ts(100), False, False, 0.0)])
    with pytest.raises(InputDataError, match="no labelled impressions"):
        aggregate_users(imps, _unmatched([]), T0, _ts(24), CFG)


def test_segments_from_activity_tiers_without_user_table() -> None:
    tiers = activity_tiers(np.array([0, 0, 1, 2, 3, 10, 50]), 0.75)
    assert list(tiers) == ["new", "new", "light", "light", "light", "light", "heavy"]
    sim = simulate(SimulationSpec(n_users=500), seed=0)
    table = prepare_table(sim.users.drop(columns="segment"), CFG)
    assert set(table.users["segment"]) <= {"new", "light", "heavy"}
    assert table.info["segment_source"] == "pre-exposure activity tiers"
    assert {"pre_revenue", "pre_events", "pre_purchases"} <= set(table.covariates)


def test_roundtrip_through_parquet_contracts(tmp_path: Path) -> None:
    sim = simulate(
        SimulationSpec(
            n_users=1_500, window_hours=24, pre_period_hours=48, negative_control_hours=24
        ),
        seed=4,
    )
    files = write_contracts(sim, tmp_path, exposure_hours=12)
    table = load_analysis_table(
        tmp_path / "slices", files.since, files.until, CFG, files.users_path
    )
    got = table.users.set_index("user_id").sort_index()
    want = sim.users.set_index("user_id").sort_index()
    assert list(got.index) == list(want.index)  # decoy late users excluded
    for col in [
        "version",
        "arm",
        "segment",
        "impressions",
        "clicks",
        "attributed_purchases",
        "organic_purchases",
        "converted",
        "pre_events",
        "pre_purchases",
    ]:
        assert (got[col] == want[col]).all(), col
    for col in ["revenue", "attributed_revenue", "organic_revenue", "pre_revenue"]:
        assert np.allclose(got[col], want[col]), col
    assert "user_tenure_days" in table.covariates
    assert table.info["impressions"]["manifest_mismatches"] == []


def test_manifest_row_count_mismatch_is_reported(tmp_path: Path) -> None:
    sim = simulate(
        SimulationSpec(
            n_users=200, window_hours=24, pre_period_hours=48, negative_control_hours=24
        ),
        seed=1,
    )
    files = write_contracts(sim, tmp_path, exposure_hours=6)
    manifest = next((tmp_path / "slices" / "labelled_impressions").glob("*/_manifest.json"))
    data = json.loads(manifest.read_text())
    data["row_count"] += 7
    manifest.write_text(json.dumps(data))
    table = load_analysis_table(tmp_path / "slices", files.since, files.until, CFG)
    assert len(table.info["impressions"]["manifest_mismatches"]) == 1


def test_missing_columns_and_missing_slices_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="no labelled-impression partitions"):
        load_analysis_table(tmp_path / "slices", T0, _ts(24), CFG)
    folder = tmp_path / "slices" / "labelled_impressions" / "event_hour=2026-11-02T01"
    folder.mkdir(parents=True)
    pd.DataFrame({"user_id": ["u1"]}).to_parquet(folder / "part-0.parquet")
    with pytest.raises(InputDataError, match="missing"):
        load_analysis_table(tmp_path / "slices", T0, _ts(24), CFG)
