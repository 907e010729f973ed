"""Serving's two logs (ServingEvents, FeatureLogs) through one shared producer on the real
broker: every record reaches its own topic once, and the first sink to close leaves the
producer working for the other."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from bench.reliability import harness as h
from infra.topics import TopicSpec, consume_records, create_topics
from loopline.kafka import KafkaConfig
from models import features
from models.serving.events import KafkaSink, SharedProducer, serving_event
from schemas.codec import FEATURE_LOG, SERVING_EVENT, default_codec

pytestmark = pytest.mark.integration

START_MS = 1_767_261_600_000


def _topic(kafka: KafkaConfig, what: str) -> str:
    name = f"loopline.test.{what}.{uuid.uuid4().hex[:8]}"
    create_topics(kafka, [TopicSpec(name, 2, {"message.timestamp.type": "CreateTime"})])
    return name


def _log(i: int) -> dict[str, Any]:
    return {"request_id": f"r{i}", "event_time": START_MS + i, "user_id": "u1",
            "model_version": "v1", "feature_service": features.FEATURE_SERVICE,
            "feature_service_version": features.SERVICE_VERSION, "sample_rate": 1.0,
            "user": {"entity_id": "u1", "feature_time": START_MS, "values": [1.0, 2.0]},
            "items": [{"entity_id": "i1", "feature_time": None, "values": [3.0]}]}


def _ids(kafka: KafkaConfig, topic: str, schema: str, expected: int) -> Counter[str]:
    codec = default_codec()
    return Counter(codec.decode(r.value, schema)[1]["request_id"]
                   for r in consume_records(kafka, topic, expected, idle_timeout_s=20))


def test_both_logs_share_one_producer_and_every_record_arrives_once(kafka: KafkaConfig) -> None:
    served_topic, logged_topic = _topic(kafka, "served"), _topic(kafka, "logged")
    shared = SharedProducer(kafka, linger_ms=50)
    events = KafkaSink(kafka, topic=served_topic, producer=shared)
    logs = KafkaSink(kafka, topic=logged_topic, schema=FEATURE_LOG, producer=shared)
    try:
        for i in range(20):
            events(serving_event(f"r{i}", START_MS + i, "u1", "s1", "v1", "control",
                                 "softmax(t=1)", False, []))
            logs(_log(i))
        h.wait_until(lambda: events.stats()["delivered"] == logs.stats()["delivered"] == 20,
                     60, "the first 20 records of each log delivered", interval_s=0.1)
        assert shared.get() is events.producer.get() is logs.producer.get()
    finally:
        events.close()
    # The ServingEvent sink closed first: the producer must still carry the FeatureLogs.
    for i in range(20, 30):
        logs(_log(i))
    logs.close()

    for stats, sent in ((events.stats(), 20), (logs.stats(), 30)):
        assert (stats["accepted"], stats["delivered"], stats["pending"], stats["failed"],
                stats["dropped"]) == (sent, sent, 0, 0, 0), stats
    assert _ids(kafka, served_topic, SERVING_EVENT, 20) == Counter(f"r{i}" for i in range(20))
    assert _ids(kafka, logged_topic, FEATURE_LOG, 30) == Counter(f"r{i}" for i in range(30))
