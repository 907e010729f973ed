"""Poison input: corrupt bytes (1 % of the stream), unknown schema fingerprints, and valid Avro
carrying invalid values (negative revenue, unknown event type, revenue on a click, empty ids,
impossible propensities, timestamps far in the future) are mixed into a valid stream. Every one
lands in the dead-letter topic with its reason and source coordinates, the job never restarts,
and the valid records come out exactly as without the poison."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from bench.reliability import harness as h
from bench.reliability.workload import (
    MIN,
    build,
    expected_label_rows,
    hour_aligned_past,
    interaction,
    labelled_row_labels,
)
from feature_repo.store import FeastConfig, feature_store
from infra.flink_cluster import FlinkCluster
from infra.flink_jobs import job_state
from jobs.reconcile import read_topic, reconcile
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from schemas.codec import (
    INTERACTION_EVENT,
    LABELLED_IMPRESSION,
    MAGIC,
    SERVING_EVENT,
    default_codec,
)
from schemas.producer import EventProducer
from tests.integration.feedback_case import case_job, dead_letters

pytestmark = pytest.mark.integration

REQUESTS = 400  # ~680 valid events
DAY = 86_400_000


@dataclass(frozen=True)
class Planted:
    kind: str  # "serving" or "interaction": which input topic
    what: str
    value: Callable[[int], bytes]  # record timestamp -> value bytes
    stamp: int | None = None  # the record timestamp; None: the stream's time at its slot


def poison(rng: random.Random, count_corrupt: int, now_ms: int) -> list[Planted]:
    """Every bad record to plant; `stamp(t)` gives its bytes for a record stamped `t`."""
    codec = default_codec()

    def fixed(value: bytes) -> Callable[[int], bytes]:
        return lambda _t: value

    def encoded(name: str, event: dict[str, Any]) -> Callable[[int], bytes]:
        # event_time = the record timestamp, so the invalid value is the only fault.
        return lambda t: codec.encode(name, {**event, "event_time": t})

    out: list[Planted] = []
    # 1 % corrupt bytes: random noise of random length (some empty).
    for n in range(count_corrupt):
        noise = rng.randbytes(rng.randrange(0, 64))
        out.append(Planted("serving" if n % 2 else "interaction", "corrupt", fixed(noise)))
    good = codec.encode(INTERACTION_EVENT, interaction("trunc", 0, "u", "i"))
    out.append(Planted("interaction", "truncated", fixed(good[: len(good) // 2])))
    # Unknown writer fingerprints: a well-formed body behind a fingerprint nobody registered.
    for n in range(4):
        body = codec.encode(INTERACTION_EVENT, interaction(f"fp{n}", 0, "u", "i"))[10:]
        out.append(Planted("interaction", "fingerprint", fixed(MAGIC + rng.randbytes(8) + body)))
    # Valid Avro, invalid values.
    for event in (
        interaction("neg", 0, "u1", "item-000", "purchase", revenue=-5.0),
        interaction("share", 0, "u1", "item-000", "share"),  # unknown event type
        interaction("rev-click", 0, "u1", "item-000", "click", revenue=3.0),
        interaction("no-user", 0, "", "item-000", "click"),
        interaction("nan", 0, "u1", "item-000", "purchase", revenue=float("nan")),
    ):
        out.append(Planted("interaction", f"invalid:{event['event_id']}",
                           encoded(INTERACTION_EVENT, event)))
    serving = {"request_id": "bad-p", "event_time": 0, "user_id": "u1", "session_id": "s",
               "model_version": "v1", "arm": "control", "policy": "p", "fallback": False,
               "slate": [{"item_id": "a", "position": 0, "score": 1.0, "propensity": 0.0}]}
    out.append(Planted("serving", "invalid:propensity", encoded(SERVING_EVENT, serving)))
    out.append(Planted("serving", "invalid:empty-slate",
                       encoded(SERVING_EVENT, {**serving, "request_id": "bad-s", "slate": []})))
    # Far-future event time in the payload (30 days ahead), the record stamped in stream time.
    future = interaction("future", now_ms + 30 * DAY, "u1", "item-000")
    out.append(Planted("interaction", "future-payload",
                       fixed(codec.encode(INTERACTION_EVENT, future))))
    # A record *stamped* 30 min ahead of the clock (Kafka takes up to 1 h; the job's
    # max_future_ms is 10 min), payload agreeing: the source must keep it out of the watermark.
    ahead = now_ms + 30 * MIN
    out.append(Planted("interaction", "future-stamped",
                       fixed(codec.encode(INTERACTION_EVENT,
                                          interaction("ahead", ahead, "u1", "item-000"))),
                       stamp=ahead))
    return out


def test_poison_goes_to_the_dead_letter_topic_and_nothing_else_changes(
    kafka: KafkaConfig, flink_cluster: FlinkCluster, tmp_path: Path
) -> None:
    # max_future_ms 10 min: a record *stamped* 30 min ahead (Kafka accepts up to 1 h) must be
    # kept out of the watermark by the source and dead-lettered by decode.
    job = replace(case_job(), max_future_ms=10 * MIN, maturity_window_ms=2 * MIN)
    workload = build(REQUESTS, hour_aligned_past(3), span_ms=15 * MIN,
                     maturity_ms=job.maturity_window_ms, seed=11)
    events = h.merged(workload)
    rng = random.Random(5)
    planted = poison(rng, max(1, len(events) // 100), int(time.time() * 1000))
    rng.shuffle(planted)
    slots = dict(zip(sorted(rng.sample(range(1, len(events)), len(planted))), planted,
                     strict=True))
    h.create_topics(kafka, job)
    codec = default_codec()
    sent: list[tuple[str, str, bytes]] = []  # (topic, what, value)
    with EventProducer(kafka) as producer:
        for n, (kind, event) in enumerate(events):
            if n in slots:  # planted between valid records, stamped with the stream's time
                bad = slots[n]
                topic = job.serving_topic if bad.kind == "serving" else job.interactions_topic
                stamp = bad.stamp or event["event_time"]
                value = bad.value(stamp)
                producer.send_raw(topic, value, timestamp_ms=stamp)
                sent.append((topic, bad.what, value))
            if kind == "serving":
                producer.serving(event, topic=job.serving_topic)
            else:
                producer.interaction(event, topic=job.interactions_topic)

    home = tmp_path / "home"
    job_id = h.submit(flink_cluster, job, home, attached=True)
    state = job_state(job_id, flink_cluster)
    failures = h.exception_entries(flink_cluster, job_id)
    counts = reconcile(kafka, job).as_dict()

    letters = dead_letters(kafka, job.dead_letter_topic)
    by_coords = {(d["topic"], d["partition"], d["offset"]): d for d in letters}
    inputs = {(r.topic, r.partition, r.offset): bytes(r.value or b"")
              for t in (job.serving_topic, job.interactions_topic) for r in read_topic(kafka, t)}
    what_of = {(t, v): w for t, w, v in sent}
    planted_coords = {c: what_of[(c[0], v)] for c, v in inputs.items() if (c[0], v) in what_of}
    reasons: dict[str, list[str]] = {}
    for coords, what in planted_coords.items():
        letter = by_coords.get(coords)
        assert letter is not None, f"{what} at {coords} is not in the dead-letter topic"
        assert letter["raw"] == inputs[coords], f"{what}: the dead letter must keep the bytes"
        assert letter["reason"] and letter["error_type"] and letter["stage"] in ("decode",
                                                                                  "validate")
        reasons.setdefault(f"{letter['stage']}/{letter['error_type']}", []).append(
            f"{what}: {letter['reason'][:90]}")
    figures = {"valid": workload.input, "poison": len(sent), "poison_share":
               round(len(sent) / (workload.input + len(sent)), 4), "dead_letters": len(letters),
               "job_state": state, "restarts": len(failures), "reconcile": counts,
               "reasons": reasons}
    print("poison-input figures:", json.dumps(figures, indent=1))
    assert state == "FINISHED" and failures == [], failures[:1]
    assert len(planted_coords) == len(sent)
    assert set(by_coords) == set(planted_coords), "dead letters that were not planted"
    assert counts == workload.expected_counts(dead_lettered=len(sent), extra_input=len(sent))

    # The valid records: the same labels and online features as without any poison.
    labelled = {}
    for record in read_topic(kafka, job.labelled_topic):
        row = codec.decode(record.value, LABELLED_IMPRESSION)[1]
        labelled[(row["request_id"], row["item_id"])] = labelled_row_labels(row)
    assert labelled == expected_label_rows(workload)
    paths = PathsConfig(home=home).resolved()
    online = h.online_snapshot(feature_store(FeastConfig(), paths), workload.users,
                               workload.items)
    assert h.feature_mismatches(online, workload.expected_features(job)) == []
