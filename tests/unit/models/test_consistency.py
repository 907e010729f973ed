"""Logged serving features and the online/offline consistency check, on a real SQLite Feast
store (online rows = the newest rows of the offline feature log, both written by the shop
fixture). Serving is the real SlateService; its ServingEvents and FeatureLogs are captured
by injected sinks and the logs go through the Avro codec, as they would through Kafka."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench import synthetic
from feature_repo import names
from jobs.transforms import slices as contract
from models import consistency, feature_logs, features, slices
from models.consistency import ConsistencyConfig
from models.feature_logs import LoggedFeatures
from models.registry import Registry
from models.rollout import Rollout
from models.serving.config import ServingConfig
from models.serving.feature_log import FeatureLogger, sampled
from models.serving.service import SlateService
from models.training import TrainingConfig, train
from schemas.codec import FEATURE_LOG, SERVING_EVENT, default_codec
from tests.unit.models.conftest import HOURS, SLICE, START_MS, Shop

CFG = ServingConfig(seed=3, temperature=0.5, max_candidates=150, max_k=20,
                    score_timeout_ms=10_000)
LAST_WRITE_MS = START_MS + HOURS * synthetic.HOUR_MS  # every online row's event time
CODEC = default_codec()


@dataclass
class Run:
    """One serving session: the events, the encoded feature logs, the version used."""

    events: list[dict[str, Any]]
    logs: list[bytes]
    version: str
    service: SlateService


@pytest.fixture(scope="module")
def version(shop: Shop) -> str:
    v = train(shop.paths, slices.SliceRange.parse(SLICE), shop.store,
              TrainingConfig(num_boost_round=30)).version
    Rollout(Registry.from_paths(shop.paths)).full(v)
    return v


def serve(shop: Shop, version: str, requests: int = 40, first_ms: int = LAST_WRITE_MS + 60_000,
          step_ms: int = 1_000, rate: float = 1.0, k: int = 5) -> Run:
    events: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    service = SlateService(CFG, Registry.from_paths(shop.paths), shop.store, events.append,
                           feature_log=FeatureLogger(logs.append, rate))
    service.warm()
    candidates = list(shop.world.items[:30])
    users = list(shop.world.users)
    for n in range(requests):
        service.rank(users[n % len(users)], "s", candidates, k, event_ms=first_ms + n * step_ms,
                     request_id=f"req-{first_ms}-{n:04d}")
    service.close()
    return Run(events, [CODEC.encode(FEATURE_LOG, r) for r in logs], version, service)


def impressions(events: list[dict[str, Any]]) -> pd.DataFrame:
    """The labelled-impression columns the check reads, from what serving logged."""
    rows = [{"request_id": e["request_id"], "item_id": s["item_id"], "user_id": e["user_id"],
             "served_at": pd.Timestamp(e["event_time"], unit="ms", tz="UTC"),
             "fallback": e["fallback"], "score": s["score"], "position": s["position"]}
            for e in events for s in e["slate"]]
    return pd.DataFrame(rows)


def check(shop: Shop, run: Run, logs: list[bytes] | None = None, rate: float = 1.0,
          **cfg: Any) -> dict[str, Any]:
    logged = feature_logs.parse(run.logs if logs is None else logs)
    return consistency.evaluate(impressions(run.events), logged, shop.store,
                                ConsistencyConfig(**cfg), rate)


@pytest.fixture(scope="module")
def clean(shop: Shop, version: str) -> Run:
    return serve(shop, version)


def test_an_unskewed_run_has_no_mismatch_beyond_tolerance(shop: Shop, clean: Run) -> None:
    report = check(shop, clean)
    assert report["ok"], report["breaches"]
    assert report["compared_rows"] == sum(len(e["slate"]) for e in clean.events) == 200
    assert all(f["mismatches"] == 0 for f in report["features"])
    assert all(f["compared"] == 200 for f in report["features"])  # every value present
    assert report["missing_logs"]["missing_requests"] == 0
    assert report["logs"]["malformed"] == 0


def test_a_planted_skew_is_reported_for_that_feature_only(shop: Shop, version: str) -> None:
    """Online, item_ctr_1h gets +0.05 on every third item (same event time, so the row
    replaces the true one): exactly the logged rows of those items mismatch."""
    latest = synthetic.latest_rows(shop.frames)[names.ITEM_PERFORMANCE]
    skewed_items = set(latest[names.ITEM_KEY].iloc[::3])
    skewed = latest.copy()
    hit = skewed[names.ITEM_KEY].isin(skewed_items)
    skewed.loc[hit, "item_ctr_1h"] += 0.05
    shop.store.write_to_online_store(names.ITEM_PERFORMANCE, skewed)
    try:
        run = serve(shop, version, first_ms=LAST_WRITE_MS + 120_000)
    finally:
        shop.store.write_to_online_store(names.ITEM_PERFORMANCE, latest)
    served_items = [s["item_id"] for e in run.events for s in e["slate"]]
    planted = sum(item in skewed_items for item in served_items) / len(served_items)
    assert 0 < planted < 1

    report = check(shop, run)
    by_name = {f["name"]: f for f in report["features"]}
    assert [f["name"] for f in report["features"] if f["mismatches"]] == ["item_ctr_1h"]
    assert by_name["item_ctr_1h"]["mismatch_rate"] == pytest.approx(planted, abs=1e-12)
    assert by_name["item_ctr_1h"]["mean_abs_diff"] == pytest.approx(0.05 * planted, rel=1e-6)
    # the offline value as of the online row's own time disagrees too: not staleness
    assert by_name["item_ctr_1h"]["explained_by_staleness"] == 0
    assert len(report["breaches"]) == 1 and "item_ctr_1h" in report["breaches"][0]
    assert not report["ok"]
    line = consistency.summary_line(report)
    assert "item_ctr_1h" in line and "BREACH" in line


def test_staleness_covers_the_interval_the_feature_writes_were_paused(
        shop: Shop, version: str) -> None:
    """The job's last write is at LAST_WRITE_MS; serving goes on for `pause` more: every
    served value is at least as old as the time since the last write, and the reported
    distribution is exactly serving time − that write."""
    pause_ms, step_ms, n = 45 * 60_000, 60_000, 30
    first = LAST_WRITE_MS + pause_ms - (n - 1) * step_ms
    run = serve(shop, version, requests=n, first_ms=first, step_ms=step_ms)
    report = check(shop, run)
    for view in (names.USER_ACTIVITY, names.ITEM_PERFORMANCE):
        stale = report["staleness"][view]
        ages = np.array([e["event_time"] - LAST_WRITE_MS for e in run.events], dtype=float)
        if view == names.ITEM_PERFORMANCE:
            ages = np.repeat(ages, 5)
        assert stale["count"] == len(ages)
        assert stale["max_ms"] == pause_ms
        assert stale["p99_ms"] == np.percentile(ages, 99, method="lower") >= pause_ms - step_ms
        assert stale["p50_ms"] == np.percentile(ages, 50, method="lower")
        assert sum(stale["histogram"]["counts"]) == len(ages)
    assert report["ok"]  # a stale row that agrees with history is not a mismatch


def test_a_staleness_threshold_is_a_breach(shop: Shop, clean: Run) -> None:
    report = check(shop, clean, max_staleness_p99_ms=30_000)
    assert [b for b in report["breaches"] if b.startswith("staleness")]


def test_missing_and_malformed_logs_are_counted_never_a_crash(shop: Shop, clean: Run) -> None:
    dropped = {0, 7, 8}  # these requests' logs never arrive
    kept = [raw for i, raw in enumerate(clean.logs) if i not in dropped]
    wrong_version = CODEC.decode(clean.logs[1])[1] | {"feature_service_version": "sha256:old"}
    short = CODEC.decode(clean.logs[2])[1]
    short["user"]["values"] = short["user"]["values"][:3]
    garbage = [b"", b"not avro at all", b"\xc3\x01" + b"\x00" * 8 + b"x",
               CODEC.encode(SERVING_EVENT, clean.events[3]),  # the wrong contract
               clean.logs[4][:-7],  # truncated
               CODEC.encode(FEATURE_LOG, wrong_version), CODEC.encode(FEATURE_LOG, short)]
    duplicate = [clean.logs[5]]
    report = check(shop, clean, kept + garbage + duplicate + [None])  # type: ignore[list-item]

    logs = report["logs"]
    assert logs["records"] == len(kept) + len(garbage) + 2
    assert logs["malformed"] == len(garbage) + 1  # + the tombstone
    assert logs["duplicates"] == 1
    assert any("feature service version" in r for r in logs["malformed_by_reason"])
    missing = report["missing_logs"]
    assert missing["expected_requests"] == 40
    assert missing["missing_requests"] == len(dropped)
    assert missing["missing_rate"] == pytest.approx(len(dropped) / 40)
    # missing is not a mismatch: the rows that have logs all agree
    assert all(f["mismatches"] == 0 for f in report["features"])
    assert report["compared_rows"] == 5 * (40 - len(dropped))
    assert report["breaches"] == [
        f"missing feature logs: {len(dropped) / 40:.2%} of sampled requests > 5.00%"]


def test_no_logs_at_all_is_all_missing(shop: Shop, clean: Run) -> None:
    report = check(shop, clean, [])
    assert report["compared_rows"] == 0
    assert report["missing_logs"]["missing_rate"] == 1.0
    assert report["staleness"][names.ITEM_PERFORMANCE]["p99_ms"] is None
    assert consistency.summary_line(report)


def test_sampling_is_by_request_id_and_only_sampled_requests_are_expected(
        shop: Shop, version: str) -> None:
    ids = [f"r{i}" for i in range(4000)]
    share = np.mean([sampled(r, 0.25) for r in ids])
    assert 0.22 < share < 0.28
    assert [sampled(r, 0.25) for r in ids[:50]] == [sampled(r, 0.25) for r in ids[:50]]
    run = serve(shop, version, requests=40, first_ms=LAST_WRITE_MS + 300_000, rate=0.5)
    wanted = [e["request_id"] for e in run.events if sampled(e["request_id"], 0.5)]
    assert len(run.logs) == len(wanted) and 0 < len(wanted) < 40
    assert run.service.feature_log is not None
    assert run.service.feature_log.counts["not_sampled"] == 40 - len(wanted)
    report = check(shop, run, rate=0.5)
    assert report["missing_logs"]["expected_requests"] == len(wanted)
    assert report["missing_logs"]["missing_requests"] == 0
    assert report["ok"] and report["sample_rates_logged"] == [0.5]
    wrong = check(shop, run, rate=1.0)  # the checker assumes another rate: said, not guessed
    assert any("sampled at [0.5]" in b for b in wrong["breaches"])


def with_logs(rows: list[dict[str, Any]], logs: list[bytes]) -> list[dict[str, Any]]:
    """Slice rows carrying their request's logged vectors as the job's label join writes them
    (contract.logged_columns); the n-th log stands at offset n of partition 0."""
    by_request = {}
    for offset, value in enumerate(logs):
        record = CODEC.decode(value, reader=FEATURE_LOG)[1]
        by_request[record["request_id"]] = (record, offset)
    out = []
    for row in rows:
        found = by_request.get(row["request_id"])
        logged = {} if found is None else contract.logged_columns(found[0], 0, found[1],
                                                                   row["item_id"])
        out.append({**row, **logged})
    return out


def test_training_rows_from_logged_features_reproduce_the_served_scores(
        shop: Shop, clean: Run) -> None:
    """Through the slice path: logs joined into slice rows, read back as training rows."""
    ranker = Registry.from_paths(shop.paths).ranker(clean.version)
    rows = [{"request_id": e["request_id"], "item_id": s["item_id"], "user_id": e["user_id"],
             "served_at": e["event_time"], "fallback": e["fallback"], "score": s["score"],
             "position": s["position"]} for e in clean.events for s in e["slate"]]
    table = contract.to_table(contract.LABELLED_DATASET, with_logs(rows, clean.logs))
    read = feature_logs.from_slice(table.to_pandas())
    assert read.without_log == 0 and not read.malformed and len(read.frame) == len(rows)
    assert np.array_equal(ranker.score_frame(read.frame), read.frame["score"].to_numpy())


def test_the_record_holds_slate_items_in_order_with_their_row_times(clean: Run) -> None:
    record = CODEC.decode(clean.logs[0], reader=FEATURE_LOG)[1]
    event = clean.events[0]
    assert [i["entity_id"] for i in record["items"]] == [s["item_id"] for s in event["slate"]]
    assert record["user"]["feature_time"] == LAST_WRITE_MS
    assert {i["feature_time"] for i in record["items"]} == {LAST_WRITE_MS}
    assert record["feature_service_version"] == features.SERVICE_VERSION
    assert len(record["user"]["values"]) == len(features.VIEW_COLUMNS[names.USER_ACTIVITY])


def test_parse_of_nothing_is_an_empty_frame() -> None:
    out = feature_logs.parse([])
    assert isinstance(out, LoggedFeatures) and out.frame.empty and out.records == 0


def logs_for_slice(shop: Shop) -> list[bytes]:
    """FeatureLog records for every request of the shop's slice, holding exactly the
    point-in-time values (as if serving had read a perfectly fresh, consistent store)."""
    frame, _ = slices.load(shop.paths, slices.SliceRange.parse(SLICE))
    values = features.historical(shop.store, frame)
    user_cols = list(features.VIEW_COLUMNS[names.USER_ACTIVITY])
    item_cols = list(features.VIEW_COLUMNS[names.ITEM_PERFORMANCE])
    frame = pd.concat([frame, values], axis=1).sort_values(["request_id", "position"])
    out = []
    for request_id, rows in frame.groupby("request_id", sort=False):
        first = rows.iloc[0]
        served = int(first["served_at"].value // 1_000_000)
        out.append(CODEC.encode(FEATURE_LOG, {
            "request_id": request_id, "event_time": served, "user_id": first["user_id"],
            "model_version": "v0", "feature_service": features.FEATURE_SERVICE,
            "feature_service_version": features.SERVICE_VERSION, "sample_rate": 1.0,
            "user": {"entity_id": first["user_id"], "feature_time": served - 1,
                     "values": first[user_cols].astype(float).tolist()},
            "items": [{"entity_id": r["item_id"], "feature_time": served - 1,
                       "values": r[item_cols].astype(float).tolist()}
                      for _, r in rows.iterrows()]}))
    return out


def test_training_on_logged_features_records_it_in_lineage(shop: Shop, tmp_path: Any) -> None:
    """Logged vectors (in the slice, as the job joins them) equal to the point-in-time values
    train the same model; lineage says which source was used, and impressions without a log
    are left out and counted."""
    from loopline.paths import PathsConfig
    from models import lineage

    rng = slices.SliceRange.parse(SLICE)
    records = logs_for_slice(shop)
    cfg = TrainingConfig(num_boost_round=20)
    pit = train(shop.paths, rng, shop.store, cfg)
    logged_home = PathsConfig(home=tmp_path / "logged").resolved()
    synthetic.write_slices(logged_home, with_logs(shop.rows, records))
    logged = train(logged_home, rng, shop.store, cfg, features_from=lineage.LOGGED)
    assert pit.lineage["features"] == {"source": "point-in-time"}
    used = logged.lineage["features"]
    assert used["source"] == "logged" and used["rows_without_log"] == 0
    assert used["rows"] == pit.lineage["slice"]["row_count"]
    assert used["feature_log_offsets"] == {"0": [0, len(records) - 1]}
    frame, _ = slices.load(logged_home, rng)
    joined = feature_logs.from_slice(frame).frame
    assert np.array_equal(Registry.from_paths(shop.paths).ranker(pit.version).score_frame(joined),
                          Registry.from_paths(logged_home).ranker(logged.version)
                          .score_frame(joined))
    described = lineage.describe(Registry.from_paths(logged_home).lineage(logged.version))
    assert "logged vectors" in described

    fewer_home = PathsConfig(home=tmp_path / "fewer").resolved()
    synthetic.write_slices(fewer_home, with_logs(shop.rows, records[:-10]))
    fewer = train(fewer_home, rng, shop.store, cfg, features_from=lineage.LOGGED)
    assert fewer.lineage["features"]["rows_without_log"] > 0


def test_a_breach_makes_retrain_check_say_so_with_the_feature(shop: Shop, tmp_path: Any,
                                                               clean: Run) -> None:
    from loopline.paths import PathsConfig
    from models import consistency_report, triggers

    paths = PathsConfig(home=tmp_path)
    report = check(shop, clean) | {"slice": "2026-01-01T13:00:00Z..2026-01-01T14:00:00Z"}
    consistency_report.write(report, paths)
    decision = triggers.check(paths, triggers.TriggerConfig(), record=False)
    assert not [r for r in decision.reasons if "skew" in r]
    assert decision.measurements["consistency"]["ok"] is True

    skewed = dict(report, ok=False, breaches=["feature item_ctr_1h: mismatch 33.00% > 1.00%"])
    skewed["slice"] = "2026-01-01T14:00:00Z..2026-01-01T15:00:00Z"
    json_path, html_path = consistency_report.write(skewed, paths)
    decision = triggers.check(paths, triggers.TriggerConfig(), record=False)
    assert any("train/serve skew" in r and "item_ctr_1h" in r for r in decision.reasons)
    assert "item_ctr_1h" in decision.text()
    html = html_path.read_text()
    assert html.count("<svg") == 3 and "item_ctr_1h" in html
    assert "NaN" not in json_path.read_text()


def test_feasts_lookup_path_returns_the_same_row_times(shop: Shop) -> None:
    """The demo's SharedLookup goes through Feast's get_online_features: its row times
    (the response's event_timestamps) equal the raw reader's."""
    from models.serving.online import OnlineFeatures

    items = [*shop.world.items[:10], "never-seen-item"]
    raw = OnlineFeatures(shop.store, cache=False)
    try:
        a = raw.rows("u1", items)
    finally:
        raw.close()
    b = features.online_rows(shop.store, "u1", items)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert a.user_time_ms == b.user_time_ms == LAST_WRITE_MS
    np.testing.assert_array_equal(a.item_time_ms, b.item_time_ms)
    assert np.isnan(b.item_time_ms[-1]) and (b.item_time_ms[:-1] == LAST_WRITE_MS).all()
