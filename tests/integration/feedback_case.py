"""A small, known feedback case shared by the job tests (mini-cluster, cluster, Redis).

Every path is exercised: joins, duplicates, out-of-order and late events, organic and
unmatched interactions, corrupt bytes, invalid values, an unknown schema fingerprint and a
timestamp mismatch. EXPECTED_COUNTS is what reconciliation must find.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from feast import FeatureStore
from kafka.admin import KafkaAdminClient, NewTopic

from bench.reliability.harness import unique_job
from feature_repo import names
from jobs.config import JobConfig
from jobs.reconcile import read_topic
from loopline.kafka import KafkaConfig
from schemas.codec import DEAD_LETTER, INTERACTION_EVENT, MAGIC, default_codec
from schemas.producer import EventProducer

MIN = 60_000
# Event times are hour-aligned, a few hours in the past (brokers refuse future timestamps).
T = (int(time.time() * 1000) // 3_600_000 - 4) * 3_600_000


def _serving(rid: str, t: int, user: str, items: str) -> dict[str, Any]:
    return {"request_id": rid, "event_time": t, "user_id": user, "session_id": f"s-{user}",
            "model_version": "v1", "arm": "control", "policy": "softmax(t=1)", "fallback": False,
            "slate": [{"item_id": i, "position": p, "score": 1.0 - p / 10, "propensity": 0.5}
                      for p, i in enumerate(items)]}


def _act(eid: str, t: int, user: str, item: str, kind: str = "click", rid: str | None = None,
         revenue: float = 0.0, dwell: int | None = None) -> dict[str, Any]:
    return {"event_id": eid, "event_time": t, "user_id": user, "session_id": f"s-{user}",
            "request_id": rid, "item_id": item, "type": kind, "revenue": revenue,
            "dwell_ms": dwell, "position": None}


SERVING = [  # in partition order
    _serving("r1", T, "u1", "abc"),
    _serving("r1", T, "u1", "abc"),              # duplicate → DLQ
    _serving("r2", T + 1 * MIN, "u2", "bcd"),
    _serving("r3", T + 2 * MIN, "u1", "ad"),
    _serving("r4", T + 20 * MIN, "u3", "e"),     # no outcomes: labelled negative
    _serving("r5", T + 1 * MIN, "u2", "ab"),     # 19 min behind its partition → late
]
INTERACTIONS = [
    _act("e1", T + 5_000, "u1", "b", rid="r1"),
    _act("e1", T + 5_000, "u1", "b", rid="r1"),  # duplicate → DLQ
    _act("e7", T + 6_000, "u1", "zzz", rid="r1"),  # not in the slate → unmatched
    _act("e2", T + 10_000, "u1", "b", "purchase", rid="r1", revenue=20.0),
    _act("e3", T + 70_000, "u2", "d", rid="r2"),
    _act("e4", T + 75_000, "u2", "c", "view", rid="r2", dwell=3000),
    _act("e5", T + 125_000, "u1", "a", rid="r3"),
    _act("e6", T + 3 * MIN, "u3", "z", "purchase", revenue=7.0),  # organic → unmatched
    _act("e9", T + 4 * MIN, "u1", "a", rid="r-unknown"),          # never served → unmatched
    _act("e8", T + 31 * MIN, "u1", "a", rid="r1"),  # after r1's 30 min window → unmatched
    _act("e10", T + 1 * MIN, "u2", "b", rid="r2"),  # 30 min behind its partition → late
]
INVALID = [
    _act("e11", T + 31 * MIN, "u1", "a", "purchase", revenue=-5.0),
    _act("e12", T + 31 * MIN, "u1", "a", "share"),
]



EXPECTED_COUNTS = {
    "input": 22, "joined_serving": 4, "joined_interactions": 5, "joined_feature_logs": 0,
    "joined": 9,
    "unmatched": 4, "late": 2, "dead_lettered": 7, "balanced": True,
}


def case_job(**overrides: Any) -> JobConfig:
    """A bounded job config on fresh, uniquely named topics."""
    return unique_job("t", bounded=True, startup="earliest-offset", **overrides)


def produce_case(kafka: KafkaConfig, job: JobConfig) -> None:
    """Create the job's topics (1 partition each, so partition order is known) and fill them."""
    admin = KafkaAdminClient(**kafka.client_kwargs())
    admin.create_topics([NewTopic(t, 1, 1) for t in (job.serving_topic, job.interactions_topic,
                                                      *job.output_topics)])
    admin.close()
    codec = default_codec()
    with EventProducer(kafka) as producer:
        for event in SERVING:
            producer.serving(event, topic=job.serving_topic)
        for event in INTERACTIONS + INVALID:
            producer.interaction(event, topic=job.interactions_topic)
        late_t = T + 31 * MIN
        producer.send_raw(job.interactions_topic, b"\x00not avro at all", timestamp_ms=late_t)
        body = codec.encode(INTERACTION_EVENT, _act("e13", late_t, "u1", "a"))[10:]
        producer.send_raw(job.interactions_topic, MAGIC + b"\x01" * 8 + body, timestamp_ms=late_t)
        mismatch = codec.encode(INTERACTION_EVENT, _act("e14", late_t, "u1", "a"))
        producer.send_raw(job.interactions_topic, mismatch, timestamp_ms=late_t + 1000)


def dead_letters(kafka: KafkaConfig, topic: str) -> list[dict[str, Any]]:
    """Every DeadLetter envelope in `topic` (the dead-letter or the late topic), decoded."""
    codec = default_codec()
    return [codec.decode(r.value, DEAD_LETTER)[1] for r in read_topic(kafka, topic)]


def dead_letter_reasons(kafka: KafkaConfig, job: JobConfig) -> list[str]:
    """'topic@offset stage: reason' for every dead letter of the run (assertion messages)."""
    return [f"{d['topic']}@{d['offset']} {d['stage']}: {d['reason']}"
            for d in dead_letters(kafka, job.dead_letter_topic)]


def check_online_features(store: FeatureStore) -> None:
    """The Feast values the case must leave online (any store: SQLite or Redis)."""
    items = store.get_online_features(
        features=[f"{names.ITEM_PERFORMANCE}:{f}" for f in (
            "item_impressions_1h", "item_clicks_1h", "item_purchases_1h", "item_ctr_1h",
            "item_debiased_ctr_1h")],
        entity_rows=[{"item_id": "a"}, {"item_id": "b"}],
    ).to_dict()
    # a: shown at position 0 in r1 and r3; clicked by e5, e8 and e9 (clicks count even when
    # the join cannot attribute them). b: position 1 in r1, 0 in r2; e1 click, e2 purchase.
    assert items["item_impressions_1h"] == [2, 2]
    assert items["item_clicks_1h"] == [3, 1]
    assert items["item_purchases_1h"] == [0, 1]
    assert items["item_ctr_1h"] == [1.5, 0.5]
    assert items["item_debiased_ctr_1h"] == pytest.approx([1.5, 1 / 1.5])
    users = store.get_online_features(
        features=[f"{names.USER_ACTIVITY}:{f}" for f in (
            "user_impressions_24h", "user_clicks_24h", "user_revenue_24h", "user_last_clicked")],
        entity_rows=[{"user_id": "u1"}, {"user_id": "u3"}],
    ).to_dict()
    assert users["user_impressions_24h"] == [5, 1]
    assert users["user_clicks_24h"] == [5, 0]   # e1, e7, e5, e9, e8
    assert users["user_revenue_24h"] == [20.0, 7.0]
    assert users["user_last_clicked"][0] == "a,zzz,b"
