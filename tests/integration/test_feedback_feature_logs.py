"""The feedback job joins serving's FeatureLogs into labelled impressions (real broker, real
PyFlink job): logged requests' slice rows carry exactly their logged vectors, others nulls;
a duplicate log is dead-lettered, a malformed one too, a log without a serving event is
unmatched with its reason, a log behind its partition is late; reconciliation balances with
the logs counted as inputs."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import pytest

from feature_repo import names
from feature_repo.store import FeastConfig
from jobs.config import JobConfig
from jobs.feedback.run import run
from jobs.reconcile import read_topic, reconcile
from jobs.transforms import slices
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from models import feature_logs, features
from schemas.codec import FEATURE_LOG, LABELLED_IMPRESSION, default_codec
from schemas.producer import EventProducer
from tests.integration.feedback_case import MIN, T, _act, _serving, case_job, dead_letters

pytestmark = pytest.mark.integration

N_USER = len(features.VIEW_COLUMNS[names.USER_ACTIVITY])
N_ITEM = len(features.VIEW_COLUMNS[names.ITEM_PERFORMANCE])


def _log(rid: str, t: int, user: str, items: str, seed: float) -> dict[str, Any]:
    """A FeatureLog with distinct values per entity (item values start at seed + 10 * n)."""
    return {
        "request_id": rid, "event_time": t, "user_id": user, "model_version": "v1",
        "feature_service": features.FEATURE_SERVICE,
        "feature_service_version": features.SERVICE_VERSION, "sample_rate": 0.5,
        "user": {"entity_id": user, "feature_time": t - 1_000,
                 "values": [seed + k for k in range(N_USER)]},
        "items": [{"entity_id": item, "feature_time": None if n else t - 2_000,
                   "values": [seed + 10 * (n + 1) + k for k in range(N_ITEM)]}
                  for n, item in enumerate(items)],
    }


SERVING = [
    _serving("r1", T, "u1", "abc"),
    _serving("r2", T + 1 * MIN, "u2", "bd"),
    _serving("r3", T + 2 * MIN, "u1", "ae"),  # served without a log: null vectors
]
INTERACTIONS = [_act("e1", T + 5_000, "u1", "b", rid="r1")]
R1 = _log("r1", T, "u1", "abc", 100.0)
R2 = _log("r2", T + 1 * MIN, "u2", "bd", 200.0)
R2["items"][1]["values"][0] = math.nan  # the store had no value: null in the slice
LOGS = [  # in partition order (one partition): offset = index
    R1,
    R1,                                      # redelivered → duplicate (DLQ)
    None,                                    # malformed bytes → decode (DLQ)
    R2,
    _log("r9", T + 40 * MIN, "u9", "z", 900.0),  # no serving event → unmatched
    _log("r5", T + 1 * MIN, "u2", "a", 500.0),   # 39 min behind its partition → late
]


@pytest.fixture(scope="module")
def logged_run(kafka: KafkaConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from kafka.admin import KafkaAdminClient, NewTopic

    job = case_job()
    admin = KafkaAdminClient(**kafka.client_kwargs())
    admin.create_topics([NewTopic(t, 1, 1) for t in (*job.input_topics, *job.output_topics)])
    admin.close()
    codec = default_codec()
    with EventProducer(kafka) as producer:
        for event in SERVING:
            producer.serving(event, topic=job.serving_topic)
        for event in INTERACTIONS:
            producer.interaction(event, topic=job.interactions_topic)
        for log in LOGS:
            if log is None:
                producer.send_raw(job.feature_log_topic, b"\x00not a FeatureLog",
                                  timestamp_ms=T + 30_000)
            else:
                producer.send_raw(job.feature_log_topic, codec.encode(FEATURE_LOG, log),
                                  key=log["request_id"].encode(), timestamp_ms=log["event_time"])
    paths = PathsConfig(home=tmp_path_factory.mktemp("home"), jars=PathsConfig().jars).resolved()
    run(job, kafka, FeastConfig(), paths)
    frame = pd.read_parquet(paths.slices / slices.LABELLED_DATASET)
    return {"job": job, "paths": paths, "frame": frame}


def test_reconciliation_counts_every_feature_log_in_one_place(
        kafka: KafkaConfig, logged_run: dict[str, Any]) -> None:
    assert reconcile(kafka, logged_run["job"]).as_dict() == {
        "input": 3 + 1 + 6, "joined_serving": 3, "joined_interactions": 1,
        "joined_feature_logs": 2, "joined": 6, "unmatched": 1, "late": 1, "dead_lettered": 2,
        "balanced": True,
    }


def test_slice_rows_carry_exactly_the_logged_vectors(logged_run: dict[str, Any]) -> None:
    frame: pd.DataFrame = logged_run["frame"]
    rows = {(r["request_id"], r["item_id"]): r for r in frame.to_dict("records")}
    assert sorted(rows) == [("r1", "a"), ("r1", "b"), ("r1", "c"), ("r2", "b"), ("r2", "d"),
                            ("r3", "a"), ("r3", "e")]
    for log, offset in ((R1, 0), (R2, 3)):
        for n, item in enumerate(log["items"]):
            row = rows[(log["request_id"], item["entity_id"])]
            assert (row["feature_log_partition"], row["feature_log_offset"]) == (0, offset)
            assert row["feature_service_version"] == features.SERVICE_VERSION
            assert row["feature_log_sample_rate"] == 0.5
            assert row["logged_user_feature_time"] == pd.Timestamp(log["event_time"] - 1_000,
                                                                   unit="ms", tz="UTC")
            if n:
                assert pd.isna(row["logged_item_feature_time"])
            else:
                assert row["logged_item_feature_time"] == pd.Timestamp(
                    log["event_time"] - 2_000, unit="ms", tz="UTC")
            assert list(row["logged_user_values"]) == log["user"]["values"]
            expected = [None if math.isnan(v) else v for v in item["values"]]
            got = [None if v is None or math.isnan(v) else v for v in row["logged_item_values"]]
            assert got == expected
    assert rows[("r1", "b")]["clicked"]  # the labels are untouched by the join
    for key in (("r3", "a"), ("r3", "e")):
        assert all(pd.isna(rows[key][c]) for c in slices.LOGGED_COLUMNS), key
    manifest_sources = {}
    for manifest in (logged_run["paths"].slices / slices.LABELLED_DATASET).glob("*/_manifest.json"):
        manifest_sources.update(json.loads(manifest.read_text())["sources"])
    assert manifest_sources[logged_run["job"].feature_log_topic] == {"0": [0, 3]}


def test_training_reads_the_logged_vectors_from_the_slice(logged_run: dict[str, Any]) -> None:
    read = feature_logs.from_slice(logged_run["frame"])
    assert read.without_log == 2 and not read.malformed  # r3's two impressions
    assert sorted(zip(read.frame["request_id"], read.frame["item_id"], strict=True)) == [
        ("r1", "a"), ("r1", "b"), ("r1", "c"), ("r2", "b"), ("r2", "d")]
    d = read.frame[(read.frame["request_id"] == "r2") & (read.frame["item_id"] == "d")].iloc[0]
    item_columns = features.VIEW_COLUMNS[names.ITEM_PERFORMANCE]
    assert math.isnan(d[item_columns[0]]) and d[item_columns[1]] == 200.0 + 20 + 1
    assert read.offsets == {"0": [0, 3]}


def test_unmatched_late_and_dead_lettered_logs_say_why(
        kafka: KafkaConfig, logged_run: dict[str, Any]) -> None:
    job: JobConfig = logged_run["job"]
    unmatched = dead_letters(kafka, job.unmatched_topic)
    assert [(u["topic"], u["offset"], u["stage"], u["error_type"]) for u in unmatched] == [
        (job.feature_log_topic, 4, "unmatched", "UnmatchedFeatureLog")]
    assert unmatched[0]["reason"].startswith("no_serving_event")
    late = dead_letters(kafka, job.late_topic)
    assert [(d["topic"], d["offset"], d["stage"]) for d in late] == [
        (job.feature_log_topic, 5, "late")]
    dlq = sorted((d["offset"], d["stage"], d["error_type"])
                 for d in dead_letters(kafka, job.dead_letter_topic))
    assert dlq == [(1, "duplicate", "DuplicateEvent"), (2, "decode", "DecodeError")]
    codec = default_codec()
    labelled = [codec.decode(r.value, LABELLED_IMPRESSION)[1]
                for r in read_topic(kafka, job.labelled_topic)]
    assert {(r["request_id"], r["feature_log_offset"]) for r in labelled} == {
        ("r1", 0), ("r2", 3), ("r3", None)}


def test_with_the_feature_log_topic_off_the_job_reads_two_topics_as_before(
        kafka: KafkaConfig, tmp_path: Any) -> None:
    """job.feature_log_topic = "": no third input, no topic created, the known case
    reconciles exactly as it always has."""
    from kafka import KafkaConsumer

    from tests.integration.feedback_case import EXPECTED_COUNTS, produce_case

    job = case_job(feature_log_topic="")
    produce_case(kafka, job)
    paths = PathsConfig(home=tmp_path, jars=PathsConfig().jars).resolved()
    run(job, kafka, FeastConfig(), paths)
    assert reconcile(kafka, job).as_dict() == EXPECTED_COUNTS
    consumer = KafkaConsumer(**kafka.client_kwargs())
    try:
        assert not any(t.startswith("t.features.logged") and job.group_id[2:] in t
                       for t in consumer.topics())
    finally:
        consumer.close()
