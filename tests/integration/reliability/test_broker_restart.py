"""Broker restart: the Kafka broker is stopped and started again mid-stream while the job runs
on the cluster and two producers publish — the simulator's path (EventProducer: acks=all,
idempotent, bounded retries, flush raises) for interactions and the serving path (KafkaSink, a
queue and a sender thread) for served slates. Nothing acknowledged is lost, a refused record
is reported (never silent) and sent again, the job resumes by itself, and reconciliation over
what the topics hold is exact.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaError

from bench.reliability import harness as h
from bench.reliability.harness import drainable
from bench.reliability.workload import (
    MIN,
    build,
    expected_label_rows,
    hour_aligned_past,
    labelled_row_labels,
)
from feature_repo.store import FeastConfig, feature_store
from infra.flink_cluster import FlinkCluster
from infra.kafka_broker import KafkaBroker
from jobs.reconcile import read_topic, reconcile
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from models.serving.events import KafkaSink
from schemas.codec import INTERACTION_EVENT, SERVING_EVENT, default_codec
from schemas.producer import EventProducer, ProduceError
from tests.integration.feedback_case import case_job

pytestmark = pytest.mark.integration

REQUESTS = 600


class AckedProducer:
    """The simulator's side: each interaction is flushed on its own, so every acknowledgement
    (and every refusal) is known per event. Delivery gives up after 4 s (bounded), so the
    outage surfaces as ProduceErrors; a refused event is reported, and sent again on a new
    producer once the broker is back (at least once: the job dead-letters a duplicate)."""


    def __init__(self, kafka: KafkaConfig, topic: str) -> None:
        self.kafka = kafka
        self.producer: EventProducer | None = None
        self.topic = topic
        self.acked: list[str] = []
        self.errors: list[str] = []

    def send(self, event: dict[str, Any]) -> None:
        for _ in range(120):
            try:
                if self.producer is None:
                    self.producer = EventProducer(self.kafka, request_timeout_ms=2_000,
                                                  delivery_timeout_ms=4_000, max_block_ms=4_000,
                                                  bootstrap_timeout_ms=4_000)
                self.producer.interaction(event, topic=self.topic)
                self.producer.flush(timeout_s=30)
            except (ProduceError, KafkaError) as exc:
                self.errors.append(f"{event['event_id']}: {type(exc).__name__}: {exc}"[:200])
                self.close()
                time.sleep(1)
                continue
            self.acked.append(event["event_id"])
            return
        raise AssertionError(f"{event['event_id']} refused 120 times: {self.errors[-1]}")

    def close(self) -> None:
        if self.producer is not None:
            with suppress(Exception):
                self.producer.close()
            self.producer = None


def test_broker_restart_mid_stream_loses_no_acknowledged_event(
    kafka: KafkaConfig, kafka_broker: KafkaBroker, flink_cluster: FlinkCluster, tmp_path: Path
) -> None:
    job = drainable(replace(case_job(), bounded=False, checkpoint_interval_ms=2_000,
                            maturity_window_ms=2 * MIN))
    workload = build(REQUESTS, hour_aligned_past(3), span_ms=12 * MIN,
                     maturity_ms=job.maturity_window_ms, seed=23)
    events = h.merged(workload)
    h.create_topics(kafka, job)
    home = tmp_path / "home"
    figures: dict[str, Any] = {"events": len(events)}
    flink_cluster.up()
    sink = KafkaSink(kafka, topic=job.serving_topic, retry_s=1.0)
    interactions = AckedProducer(kafka, job.interactions_topic)
    try:
        with h.running_job(flink_cluster, job, home) as job_id:
            h.wait_until(lambda: h.all_tasks_running(flink_cluster, job_id), 180, "job running")
            sent = threading.Event()

            def publish() -> None:
                start = time.monotonic()
                for n, (kind, event) in enumerate(events):
                    if kind == "serving":
                        sink(event)  # serving: queued, sent by the sink's own thread
                    else:
                        interactions.send(event)
                    delay = start + 24.0 * (n + 1) / len(events) - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                sent.set()

            publisher = threading.Thread(target=publish, daemon=True)
            publisher.start()
            time.sleep(6)  # mid-stream
            down_at = time.monotonic()
            kafka_broker.down()
            time.sleep(5)
            kafka_broker.up()
            figures["broker_down_s"] = round(time.monotonic() - down_at, 1)
            publisher.join(timeout=300)
            assert sent.is_set(), "the publisher did not finish"
            sink.close(timeout_s=150)
            figures["publish_s_after_restart"] = round(time.monotonic() - down_at, 1)
            h.wait_until(lambda: h.caught_up(kafka, job), 240, "job caught up")
            figures["recovered_s"] = round(time.monotonic() - down_at, 1)
            figures["job_restarts"] = h.restarts(flink_cluster, job_id)
            assert h.stop_with_drain(flink_cluster, job_id, tmp_path / "savepoints") == \
                "FINISHED"
    finally:
        kafka_broker.up()  # the session's broker: always give it back
        sink.close(timeout_s=5)
        interactions.close()

    codec = default_codec()
    in_topics = Counter(
        [codec.decode(r.value, SERVING_EVENT)[1]["request_id"]
         for r in read_topic(kafka, job.serving_topic)]
        + [codec.decode(r.value, INTERACTION_EVENT)[1]["event_id"]
           for r in read_topic(kafka, job.interactions_topic)])
    stats = sink.stats()
    figures.update(serving_sink=stats, interactions_acked=len(interactions.acked),
                   interaction_errors=interactions.errors[:3],
                   interaction_error_count=len(interactions.errors),
                   duplicates_in_topics=sum(n - 1 for n in in_topics.values()))
    counts = reconcile(kafka, job).as_dict()
    figures["reconcile"] = counts
    print("broker-restart figures:", json.dumps(figures, indent=1))

    # Producers: every acknowledged event is in its topic; a failure was counted, not hidden.
    assert not [e for e in interactions.acked if e not in in_topics]
    assert interactions.errors, "the outage must surface as errors to the producer"
    assert stats["sent"] + stats["failed"] + stats["dropped"] == stats["queued"] == \
        len(workload.serving)
    assert stats["failed"] == 0 or stats["last_error"], "a failed send must say why"
    lost_serving = [e["request_id"] for e in workload.serving if e["request_id"] not in in_topics]
    assert len(lost_serving) == stats["failed"], (lost_serving[:5], stats)
    assert all(e["event_id"] in in_topics for e in workload.interactions)

    # The job: every record the topics hold is accounted for, exactly once.
    duplicates = figures["duplicates_in_topics"]
    assert counts["balanced"] and counts["input"] == sum(in_topics.values()), counts
    if not lost_serving:  # then the outcome is exactly that of the undisturbed workload
        assert counts == workload.expected_counts(dead_lettered=duplicates,
                                                  extra_input=duplicates)
        paths = PathsConfig(home=home).resolved()
        rows = h.labelled_slice_rows(paths)
        assert {(r["request_id"], r["item_id"]): labelled_row_labels(r) for r in rows} == \
            expected_label_rows(workload)
        h.write_features(kafka, job, paths)
        online = h.online_snapshot(feature_store(FeastConfig(), paths), workload.users,
                                   workload.items)
        assert h.feature_mismatches(online, workload.expected_features(job)) == []
