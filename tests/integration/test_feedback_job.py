"""The feedback job end to end on the real broker, the Flink mini-cluster and a real Feast store,
on the known case in feedback_case.py: the four counters must reconcile exactly."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from feature_repo import names
from feature_repo.store import FeastConfig, feature_store
from jobs.config import JobConfig
from jobs.feedback.run import run
from jobs.reconcile import read_topic, reconcile
from jobs.transforms import slices
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from schemas.codec import LABELLED_IMPRESSION, LINEAGE_RECORD, default_codec
from tests.integration.feedback_case import (
    EXPECTED_COUNTS,
    T,
    case_job,
    check_online_features,
    dead_letters,
    produce_case,
)

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def feedback_run(kafka: KafkaConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    job = case_job()
    produce_case(kafka, job)
    paths = PathsConfig(home=tmp_path_factory.mktemp("home"), jars=PathsConfig().jars).resolved()
    result = run(job, kafka, FeastConfig(), paths)
    return {"job": job, "paths": paths, "result": result}


def test_counters_reconcile_exactly(kafka: KafkaConfig, feedback_run: dict[str, Any]) -> None:
    assert reconcile(kafka, feedback_run["job"]).as_dict() == EXPECTED_COUNTS


def test_labelled_impressions_in_the_slice_log(feedback_run: dict[str, Any]) -> None:
    paths: PathsConfig = feedback_run["paths"]
    frame = pd.read_parquet(paths.slices / slices.LABELLED_DATASET)
    rows = {(r.request_id, r.item_id): r for r in frame.itertuples()}
    assert sorted(rows) == [("r1", "a"), ("r1", "b"), ("r1", "c"), ("r2", "b"), ("r2", "c"),
                            ("r2", "d"), ("r3", "a"), ("r3", "d"), ("r4", "e")]
    b = rows[("r1", "b")]
    assert (b.clicked, b.purchased, b.revenue, b.interaction_count, b.position) == (
        True, True, 20.0, 2, 1)
    assert rows[("r2", "c")].dwell_ms == 3000 and not rows[("r2", "c")].clicked
    assert rows[("r2", "d")].clicked and rows[("r3", "a")].clicked
    assert not any(rows[k].clicked for k in [("r1", "a"), ("r1", "c"), ("r4", "e")])
    manifest = next((paths.slices / slices.LABELLED_DATASET).glob("*/_manifest.json"))
    assert manifest.parent.name == f"event_hour={slices.partition_of(T, 3_600_000)[0]}"
    job: JobConfig = feedback_run["job"]
    content = json.loads(manifest.read_text())
    assert content["row_count"] == 9
    assert content["sources"][job.serving_topic] == {"0": [0, 4]}
    assert content["job"]["run_id"] == job.run_id


def test_each_labelled_record_on_kafka_is_its_slice_row(kafka: KafkaConfig,
                                                       feedback_run: dict[str, Any]) -> None:
    """The join writes both forms straight from its state (Avro for the topic, JSON for the
    slice): decoded with the Python codec, every field of every record equals the slice's."""
    codec = default_codec()
    records = [codec.decode(r.value, LABELLED_IMPRESSION)[1]
               for r in read_topic(kafka, feedback_run["job"].labelled_topic)]
    frame = pd.read_parquet(feedback_run["paths"].slices / slices.LABELLED_DATASET)
    rows = {(r["request_id"], r["item_id"]): r for r in frame.to_dict("records")}
    assert len(records) == len(rows) == 9
    for record in records:
        row = rows[(record["request_id"], record["item_id"])]
        for field, value in record.items():
            got = row[field]
            if field == "served_at":
                got = int(pd.Timestamp(got).value // 1_000_000)
            elif pd.isna(got) if not isinstance(got, (list, tuple)) else False:
                got = None
            assert got == value, (field, got, value)


def test_unmatched_interactions_keep_their_reason(feedback_run: dict[str, Any]) -> None:
    frame = pd.read_parquet(feedback_run["paths"].slices / slices.UNMATCHED_DATASET)
    assert dict(zip(frame.event_id, frame.reason, strict=True)) == {
        "e6": "organic", "e7": "item_not_in_slate", "e8": "outside_window", "e9": "no_impression"}
    assert frame.loc[frame.event_id == "e6", "revenue"].item() == 7.0


def test_dead_letters_carry_reason_and_coordinates(kafka: KafkaConfig,
                                                   feedback_run: dict[str, Any]) -> None:
    job: JobConfig = feedback_run["job"]
    letters = dead_letters(kafka, job.dead_letter_topic)
    by_offset = {(d["topic"], d["offset"]): d for d in letters}
    assert len(by_offset) == 7
    assert by_offset[(job.serving_topic, 1)]["stage"] == "duplicate"
    assert by_offset[(job.interactions_topic, 1)]["stage"] == "duplicate"
    stages = {d["offset"]: (d["stage"], d["error_type"]) for d in letters
              if d["topic"] == job.interactions_topic}
    assert stages[11][0] == "validate"   # negative revenue
    assert stages[12][0] == "validate"   # unknown type
    assert stages[13] == ("decode", "DecodeError")
    assert stages[14] == ("decode", "UnknownSchemaError")
    assert "Kafka record timestamp" in by_offset[(job.interactions_topic, 15)]["reason"]
    assert by_offset[(job.interactions_topic, 13)]["raw"] == b"\x00not avro at all"
    late = dead_letters(kafka, job.late_topic)
    assert sorted((d["topic"], d["offset"]) for d in late) == [
        (job.interactions_topic, 10), (job.serving_topic, 5)]


def test_online_features_hold_the_newest_values(feedback_run: dict[str, Any]) -> None:
    check_online_features(feature_store(FeastConfig(), feedback_run["paths"]))


def test_lineage_names_the_run_and_its_outputs(kafka: KafkaConfig,
                                               feedback_run: dict[str, Any]) -> None:
    job: JobConfig = feedback_run["job"]
    codec = default_codec()
    events = [codec.decode(r.value, LINEAGE_RECORD)[1] for r in read_topic(kafka,
                                                                           job.lineage_topic)]
    kinds = [e["event_type"] for e in events]
    assert kinds[0] == "START" and kinds[-1] == "COMPLETE"
    assert {e["run_id"] for e in events} == {job.run_id}
    outputs = {o["name"] for e in events for o in e["outputs"]}
    assert names.USER_ACTIVITY in outputs and names.ITEM_PERFORMANCE in outputs
    assert any(o.startswith(f"{slices.LABELLED_DATASET}/") for o in outputs)
    mirror = feedback_run["paths"].lineage / f"{job.run_id}.jsonl"
    assert len(mirror.read_text().splitlines()) == len(events)


def test_on_rocksdb_the_job_reconciles_and_labels_exactly_as_on_the_heap(
        kafka: KafkaConfig, feedback_run: dict[str, Any],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """state_backend = "rocksdb": every state access goes through the serializers (the label
    join's RequestStateSerializer above all), so the same case must give the same outputs."""
    job = case_job(state_backend="rocksdb")
    produce_case(kafka, job)
    paths = PathsConfig(home=tmp_path_factory.mktemp("rocks"), jars=PathsConfig().jars).resolved()
    run(job, kafka, FeastConfig(), paths)
    assert reconcile(kafka, job).as_dict() == EXPECTED_COUNTS
    heap, rocks = (pd.read_parquet(p.slices / slices.LABELLED_DATASET)
                   .drop(columns=["source_topic"]).sort_values(["request_id", "item_id"])
                   .reset_index(drop=True)
                   for p in (feedback_run["paths"], paths))
    pd.testing.assert_frame_equal(heap, rocks)
