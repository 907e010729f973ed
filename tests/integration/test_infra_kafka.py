"""The local KRaft broker: idempotent up, loopback only, topics, CreateTime timestamps."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from infra import process
from infra.errors import PortInUseError
from infra.kafka_broker import KafkaBroker
from infra.topics import (
    TopicSpec,
    consume_records,
    create_topics,
    default_specs,
    delete_topics,
)
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from schemas import topics

pytestmark = pytest.mark.integration


def test_up_again_is_a_quick_noop(kafka_broker: KafkaBroker) -> None:
    before = kafka_broker.status()
    started = time.monotonic()
    after = kafka_broker.up()
    assert after.pids == before.pids and after.running
    assert time.monotonic() - started < 10


def test_status_reports_pid_endpoints_and_data_dir(
    kafka_broker: KafkaBroker, isolated_loopline_env: Path
) -> None:
    status = kafka_broker.status()
    assert status.state == "running"
    assert process.is_alive(status.pids[0], marker="kafka.Kafka")
    assert status.endpoints["bootstrap"] == kafka_broker.bootstrap_servers
    assert Path(status.data_dir).is_relative_to(isolated_loopline_env)
    assert (Path(status.data_dir) / "meta.properties").is_file()  # formatted for KRaft


def test_broker_and_controller_listen_on_loopback_only(kafka_broker: KafkaBroker) -> None:
    for port in (kafka_broker.cfg.kafka_port, kafka_broker.cfg.kafka_controller_port):
        assert process.listen_addresses(port) == {"127.0.0.1"}


def test_all_topics_exist_with_their_partitions_and_compaction(kafka: KafkaConfig) -> None:
    report = create_topics(kafka)  # the fixture created them already: nothing to do
    assert report.created == ()
    assert set(report.existing) == set(topics.ALL)
    assert report.partitions[topics.SERVING] == 2
    assert report.partitions[topics.INTERACTIONS] == 2
    assert report.partitions[topics.LABELLED] == 1
    admin = KafkaAdminClient(**kafka.client_kwargs())
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.SCHEMAS)]
        )
    finally:
        admin.close()
    config = described["topic"][topics.SCHEMAS]
    assert config["cleanup.policy"]["value"] == "compact"
    assert config["message.timestamp.type"]["value"] == "CreateTime"


def test_default_specs_cover_every_topic() -> None:
    specs = {s.name: s for s in default_specs(3)}
    assert set(specs) == set(topics.ALL)
    assert {n for n, s in specs.items() if s.partitions == 3} == set(topics.INPUTS)


def test_old_create_time_timestamps_survive(kafka: KafkaConfig) -> None:
    """Records keep the producer's timestamp, even years old (no time-based deletion)."""
    topic = f"test.timestamps.{uuid.uuid4().hex[:8]}"
    create_topics(kafka, [TopicSpec(topic, 1)])
    old = 1_500_000_000_000  # 2017
    producer = KafkaProducer(**kafka.producer_kwargs())
    producer.send(topic, b"then", timestamp_ms=old).get(timeout=30)
    producer.close()
    records = consume_records(kafka, topic, expected=1)
    delete_topics(kafka, [topic])
    assert [(r.value, r.timestamp, r.timestamp_type) for r in records] == [(b"then", old, 0)]


def test_a_second_broker_on_a_taken_port_fails_clearly(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    other = KafkaBroker(kafka_broker.cfg, PathsConfig(home=tmp_path, jars=kafka_broker.paths.jars))
    with pytest.raises(PortInUseError) as err:
        other.up()
    message = str(err.value)
    assert f"127.0.0.1:{kafka_broker.cfg.kafka_port}" in message
    assert f"pid {kafka_broker.status().pids[0]}" in message
    assert other.status().state == "stopped"
