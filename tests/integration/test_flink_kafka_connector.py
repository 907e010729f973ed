"""The Flink Kafka SQL connector against the real broker, on the local mini-cluster.

Runs infra.flink_probe in this process: a Table API job with `pipeline.jars` = the connector
jar, 'raw' format, the partition / offset / timestamp metadata columns, and
`scan.bounded.mode = latest-offset` so the job ends. What arrives must be exactly what was
sent: same bytes (binary-safe), one record per source record, and the source timestamp kept.
"""

from __future__ import annotations

import os
import uuid

import pytest
from kafka import KafkaProducer

from infra import flink_probe, jars
from infra.topics import TopicSpec, consume_records, create_topics, delete_topics
from loopline.kafka import KafkaConfig
from loopline.paths import load_paths

pytestmark = pytest.mark.integration


def test_raw_records_and_metadata_survive_a_bounded_copy(kafka: KafkaConfig) -> None:
    run = uuid.uuid4().hex[:8]
    source, sink = f"test.connector.{run}.in", f"test.connector.{run}.out"
    create_topics(kafka, [TopicSpec(source, 2), TopicSpec(sink, 1)])
    producer = KafkaProducer(**kafka.producer_kwargs())
    sent = {}
    for i in range(10):
        # Arbitrary bytes, including an Avro single-object header and non-UTF-8 bytes.
        value = b"\xc3\x01" + os.urandom(8) + f"record-{i}".encode()
        timestamp = 1_600_000_000_000 + i * 1_000  # event times from 2020: kept as is
        meta = producer.send(source, value, partition=i % 2, timestamp_ms=timestamp).get(30)
        sent[f"{meta.partition}:{meta.offset}"] = (value, timestamp)
    producer.close()

    connector = jars.file_urls([jars.kafka_connector_jar(load_paths())])
    flink_probe.run_local(kafka, source, sink, connector)  # returns once the job FINISHED

    # One more than sent: a duplicate would show up instead of being cut off.
    records = consume_records(kafka, sink, expected=len(sent) + 1, idle_timeout_s=5)
    delete_topics(kafka, [source, sink])
    received = {r.key.decode(): (r.value, r.timestamp) for r in records}
    assert len(records) == len(sent)  # exactly once each: bounded, nothing duplicated
    assert received == sent
    assert {r.timestamp_type for r in records} == {0}  # CreateTime, set by the Flink sink
    assert sorted(sent) == [f"{p}:{o}" for p in (0, 1) for o in range(5)]
