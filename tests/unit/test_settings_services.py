"""infra.config.ServicesConfig loaded through loopline.settings: values and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import ServicesConfig, load_services
from infra.kafka_broker import new_cluster_id, render_properties
from loopline import settings
from loopline.errors import ConfigError


def test_defaults() -> None:
    cfg = load_services()
    assert cfg == ServicesConfig()
    assert (cfg.kafka_port, cfg.redis_port, cfg.flink_rest_port) == (9092, 6379, 8081)
    assert cfg.services == ("kafka", "redis", "flink")


def test_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "loopline.toml"
    path.write_text('[services]\nkafka_port = 29092\nservices = ["kafka"]\n')
    monkeypatch.setenv(settings.CONFIG_ENV, str(path))
    monkeypatch.setenv("LOOPLINE_SERVICES_FLINK_SLOTS", "4")
    cfg = load_services()
    assert (cfg.kafka_port, cfg.services, cfg.flink_slots) == (29092, ("kafka",), 4)


@pytest.mark.parametrize(
    ("variable", "raw", "fragment"),
    [
        ("LOOPLINE_SERVICES_HOST", "0.0.0.0", "expected a loopback address"),
        ("LOOPLINE_SERVICES_HOST", "example.org", "expected a loopback address"),
        ("LOOPLINE_SERVICES_KAFKA_PORT", "70000", "expected a port in 1..65535, got 70000"),
        ("LOOPLINE_SERVICES_REDIS_PORT", "9092", "every port must differ"),
        ("LOOPLINE_SERVICES_SERVICES", "kafka,zookeeper", "got ['zookeeper']"),
        ("LOOPLINE_SERVICES_FLINK_SLOTS", "0", "flink_slots: expected >= 1, got 0"),
        ("LOOPLINE_SERVICES_KAFKA_PORT", "ninety", "expected int, got 'ninety'"),
        ("LOOPLINE_SERVICES_STOP_TIMEOUT_S", "-1", "must be > 0"),
    ],
)
def test_bad_values_raise_config_error(
    variable: str, raw: str, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ConfigError) as err:
        load_services()
    assert fragment in str(err.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    assert ServicesConfig(host=host).host == host


def test_broker_properties_follow_the_config(tmp_path: Path) -> None:
    cfg = ServicesConfig(kafka_port=19092, kafka_controller_port=19093)
    props = dict(
        line.split("=", 1)
        for line in render_properties(cfg, tmp_path).splitlines()
        if line and not line.startswith("#")
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path)
    assert props["log.message.timestamp.type"] == "CreateTime"
    assert props["log.retention.ms"] == "-1"
    assert props["auto.create.topics.enable"] == "false"


def test_cluster_ids_look_like_kafka_uuids() -> None:
    ids = {new_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
