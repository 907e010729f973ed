"""Feature logs through the real broker: serving's FeatureLogs go to their own topic through
the KafkaSink, `loopline consistency` reads them back by serving time (with garbage and a
lost log on the topic) and compares them with real Feast point-in-time values of a slice
written by the job's partition writer; `loopline train --features logged` trains on the
vectors as the feedback job joins them into the slice (the job's own join is tested in
test_feedback_feature_logs.py) and names their offsets in lineage."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from bench import synthetic
from cli.main import main as loopline
from infra.topics import TopicSpec, create_topics
from jobs.transforms import slices as contract
from loopline.kafka import KafkaConfig
from models.registry import Registry
from models.rollout import Rollout
from models.serving.config import ServingConfig
from models.serving.events import KafkaSink
from models.serving.feature_log import FeatureLogger
from models.serving.service import SlateService
from models.slices import SliceRange
from models.training import TrainingConfig, train
from schemas import topics
from schemas.codec import FEATURE_LOG, default_codec
from schemas.producer import EventProducer
from tests.unit.models.conftest import HOURS, SLICE, START_MS, build_shop, loopline_home

pytestmark = pytest.mark.integration

LAST_WRITE_MS = START_MS + HOURS * synthetic.HOUR_MS  # 13:00, every online row's time
CHECKED = "2026-01-01T13..2026-01-01T14"
LOST = {"req-0003", "req-0004"}  # requests whose log never reaches Kafka


class Losing:
    """A sink that loses the logs of some requests on the way (a crashed serving worker)."""

    def __init__(self, sink: KafkaSink) -> None:
        self.sink = sink
        self.delivered: list[dict[str, Any]] = []

    def __call__(self, record: dict[str, Any]) -> None:
        if record["request_id"] not in LOST:
            self.sink(record)
            self.delivered.append(record)

    def close(self) -> None:
        self.sink.close()


def labelled(events: list[dict[str, Any]],
             logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The job's slice rows for what was served (no interactions: labels all false), with
    the logged vectors the job joins (the n-th log at offset n)."""
    by_request = {log["request_id"]: (log, n) for n, log in enumerate(logs)}
    rows = []
    for offset, e in enumerate(events):
        for s in e["slate"]:
            rows.append({
                "request_id": e["request_id"], "item_id": s["item_id"], "user_id": e["user_id"],
                "session_id": e["session_id"], "model_version": e["model_version"],
                "arm": e["arm"], "policy": e["policy"], "fallback": e["fallback"],
                "position": s["position"], "score": s["score"], "propensity": s["propensity"],
                "served_at": e["event_time"], "clicked": False, "added_to_cart": False,
                "purchased": False, "revenue": 0.0, "dwell_ms": 0, "interaction_count": 0,
                "label_window_ms": synthetic.LABEL_WINDOW_MS, "source_topic": topics.SERVING,
                "source_partition": 0, "source_offset": offset,
                contract.REFS_FIELD: [(topics.SERVING, 0, offset)],
            })
            if e["request_id"] in by_request:
                log, n = by_request[e["request_id"]]
                rows[-1].update(contract.logged_columns(log, 0, n, s["item_id"]))
    return rows


def test_feature_logs_round_trip_through_kafka_into_the_check_and_training(
        kafka: KafkaConfig, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    topic = f"it.{uuid.uuid4().hex[:8]}.features.logged"
    create_topics(kafka, [TopicSpec(topic, 2)])
    with loopline_home(tmp_path / "home") as paths:
        shop = build_shop(paths)
        version = train(paths, SliceRange.parse(SLICE), shop.store,
                        TrainingConfig(num_boost_round=20)).version
        Rollout(Registry.from_paths(paths)).full(version)
        events: list[dict[str, Any]] = []
        sink = KafkaSink(kafka, topic=topic, schema=FEATURE_LOG)
        losing = Losing(sink)
        service = SlateService(ServingConfig(seed=1, score_timeout_ms=10_000),
                               Registry.from_paths(paths), shop.store, events.append,
                               feature_log=FeatureLogger(losing, 1.0))
        service.warm()
        for n in range(30):
            service.rank(shop.world.users[n % 7], "s", list(shop.world.items[:25]), 5,
                         event_ms=LAST_WRITE_MS + 60_000 + n * 1000, request_id=f"req-{n:04d}")
        service.close()  # flushes the sink
        assert sink.stats()["delivered"] == 28 and sink.stats()["failed"] == 0

        codec = default_codec()
        in_range = LAST_WRITE_MS + 30 * 60_000
        with EventProducer(kafka) as producer:
            producer.send_raw(topic, b"garbage", key=b"x", timestamp_ms=in_range)
            producer.send_raw(topic, b"\xc3\x01" + b"\x01" * 8, key=b"y", timestamp_ms=in_range)
            # a valid log of another hour: outside the slice's serving times, never read
            early = codec.encode(FEATURE_LOG, {
                "request_id": "req-early", "event_time": LAST_WRITE_MS - 60_000,
                "user_id": "u0", "model_version": version, "feature_service": "ranker_v1",
                "feature_service_version": "sha256:none", "sample_rate": 1.0,
                "user": {"entity_id": "u0", "feature_time": None, "values": []}, "items": []})
            producer.send_raw(topic, early, key=b"z", timestamp_ms=LAST_WRITE_MS - 60_000)
        synthetic.write_slices(paths, labelled(events, losing.delivered))

        assert loopline(["consistency", "--slice", CHECKED, "--topic", topic, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["logs"]["records"] == 30 and report["logs"]["malformed"] == 2
        assert report["missing_logs"]["missing_requests"] == len(LOST)
        assert report["compared_rows"] == 5 * 28
        assert all(f["mismatches"] == 0 for f in report["features"])
        assert report["staleness"]["item_performance"]["p50_ms"] >= 60_000
        assert [b.split(":")[0] for b in report["breaches"]] == ["missing feature logs"]
        assert report["logs"]["sources"][topic]  # the offsets read, for lineage

        assert loopline(["retrain-check", "--json"]) == 0
        decision = json.loads(capsys.readouterr().out)
        assert any("missing feature logs" in r for r in decision["reasons"])

        assert loopline(["train", "--slice", CHECKED, "--features", "logged", "--json"]) == 0
        trained = json.loads(capsys.readouterr().out)
        used = trained["lineage"]["features"]
        assert used["source"] == "logged" and used["rows"] == 5 * 28
        assert used["rows_without_log"] == 5 * len(LOST)
        assert used["feature_log_offsets"] == {"0": [0, 27]}
