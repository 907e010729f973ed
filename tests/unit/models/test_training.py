"""Training on a synthetic slice with a real Feast store: data, model, registry, lineage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import synthetic
from feature_repo import names
from models import features, slices
from models.errors import RegistryError, SliceError, TrainingError
from models.registry import Registry
from models.training import TrainingConfig, train
from schemas.codec import LINEAGE_RECORD, default_codec
from tests.unit.models.conftest import SLICE, START_MS, Shop, build_shop, loopline_home

FAST = TrainingConfig(num_boost_round=60)
LINEAGE_KEYS = {"model_version", "parent_version", "trained_at", "code_version",
                "feature_service", "features", "slice"}
SLICE_KEYS = {"start", "end", "row_count", "fingerprint", "partitions", "sources", "job_run_ids"}


def test_a_trained_version_names_its_exact_slice(shop: Shop) -> None:
    result = train(shop.paths, slices.SliceRange.parse(SLICE), shop.store, FAST)
    registry = Registry.from_paths(shop.paths)
    assert result.version in registry.versions()
    directory = registry.directory(result.version)
    assert {p.name for p in directory.iterdir()} == {
        "model.txt", "features.json", "metrics.json", "popularity.json", "lineage.json"}

    doc = json.loads((directory / "lineage.json").read_text())
    assert set(doc) == LINEAGE_KEYS and set(doc["slice"]) == SLICE_KEYS
    assert doc["model_version"] == result.version and doc["parent_version"] is None
    assert doc["feature_service"] == names.RANKER_SERVICE and doc["code_version"]
    s = doc["slice"]
    assert s["row_count"] == len(shop.rows) == sum(m["row_count"] for m in shop.manifests)
    assert s["partitions"] == [m["partition"] for m in shop.manifests]
    assert s["job_run_ids"] == ["synthetic-run-1"]
    for topic in ("loopline.serving", "loopline.interactions"):
        spans = [m["sources"][topic]["0"] for m in shop.manifests]
        assert s["sources"][topic] == {"0": [min(a for a, _ in spans), max(b for _, b in spans)]}
    assert s["sources"]["loopline.serving"]["0"] == [0, len(shop.rows) // 5 - 1]

    m = result.metrics
    assert m["rows"]["train"] + m["rows"]["valid"] + m["rows"]["holdout"] == len(shop.rows)
    assert m["auc"] is not None and 0.5 < m["auc"] <= 1.0  # it learnt appeal from the features
    assert m["feature_coverage"] == 1.0
    spec = json.loads((directory / "features.json").read_text())
    assert spec["columns"][-1] == "position" and spec["position_serving_value"] == 0

    # the LineageRecord is mirrored locally and is a valid Avro record of the contract
    mirrored = [json.loads(line) for line in result.lineage_mirror.read_text().splitlines()]
    assert mirrored[-1]["event_type"] == "COMPLETE" and mirrored[-1]["job_name"] == "loopline-train"
    assert mirrored[-1]["outputs"][0]["facets"]["lineage"] == doc
    topics_in = {d["name"] for d in mirrored[-1]["inputs"] if d["namespace"] == "kafka"}
    assert topics_in == {"loopline.serving", "loopline.interactions"}


def test_lambdarank_and_the_default_parent(shop: Shop) -> None:
    first = train(shop.paths, slices.SliceRange.parse(SLICE), shop.store, FAST)
    second = train(shop.paths, slices.SliceRange.parse(SLICE), shop.store,
                   TrainingConfig(objective="lambdarank", num_boost_round=60))
    assert second.lineage["parent_version"] == first.version  # the production (latest) one
    spec = json.loads((Registry.from_paths(shop.paths).directory(second.version)
                       / "features.json").read_text())
    assert "position" not in spec["columns"] and spec["objective"] == "lambdarank"
    with pytest.raises(RegistryError, match="v99 is not registered"):
        train(shop.paths, slices.SliceRange.parse(SLICE), shop.store, FAST, parent="v99")
    with pytest.raises(SliceError, match="no final"):
        train(shop.paths, slices.SliceRange.parse("2027-01-01T00..2027-01-01T01"), shop.store, FAST)


def test_lineage_record_round_trips_through_the_codec(shop: Shop) -> None:
    from models import lineage

    _, ref = slices.load(shop.paths, slices.SliceRange.parse(SLICE))
    doc = lineage.document("v7", "v6", "2026-01-02T00:00:00Z", "abc", "ranker_v1", ref)
    record = lineage.run_record(doc, "run-1", 1_767_312_000_000, ref, shop.paths, {"auc": 0.7})
    codec = default_codec()
    _, back = codec.decode(codec.encode(LINEAGE_RECORD, record), LINEAGE_RECORD)
    assert back["run_id"] == "run-1" and back["outputs"][0]["name"] == "v7"
    assert json.loads(back["outputs"][0]["facets_json"])["lineage"] == doc


def test_features_are_point_in_time(tmp_path: Path) -> None:
    with loopline_home(tmp_path) as paths:
        small = build_shop(paths, hours=1, requests_per_hour=10)
        frame, _ = slices.load(paths, slices.SliceRange.parse("2026-01-01T10..2026-01-01T11"))
        first = frame.sort_values("served_at").iloc[0]
        # a value stamped exactly at serving time (written because of the impression) and one
        # from the future must both stay invisible to that impression
        leak = small.frames[names.ITEM_PERFORMANCE].iloc[[0, 0]].copy()
        leak[names.ITEM_KEY] = first["item_id"]
        leak[names.TIMESTAMP_FIELD] = pd.to_datetime(
            [first["served_at"], pd.Timestamp(START_MS + 10 * 3_600_000, unit="ms", tz="UTC")],
            utc=True).astype("datetime64[ms, UTC]")
        leak["item_ctr_24h"] = [77.0, 123.0]
        synthetic.write_feature_log(paths, {names.ITEM_PERFORMANCE: leak}, tag="leak")
        got = features.historical(small.store, frame)
        assert not np.isin(got["item_ctr_24h"], [77.0, 123.0]).any()
        assert got.notna().all().all()
        later = frame[(frame["item_id"] == first["item_id"])
                      & (frame["served_at"] > first["served_at"])]
        if len(later):  # an impression after the stamp does see it
            assert (got.loc[later.index, "item_ctr_24h"] == 77.0).all()


def test_too_small_a_slice_is_refused(tmp_path: Path) -> None:
    with loopline_home(tmp_path) as paths:
        small = build_shop(paths, hours=1, requests_per_hour=8)
        with pytest.raises(TrainingError, match="at least 20"):
            train(paths, slices.SliceRange.parse("2026-01-01T10..2026-01-01T11"), small.store,
                  FAST)
