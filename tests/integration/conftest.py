"""Real services for integration tests, each started once per session and always stopped.

Ports differ from the developer defaults (Kafka 19092/19093, Redis 16379, Flink REST 18081,
RPC 16123, Prometheus 19090, Flink reporters 19249-19252; the next free port when one is
taken) so a developer's running stack is never touched; state lives in the session's
temporary Loopline home (see tests/conftest.py). The
fixtures also export LOOPLINE_KAFKA_BOOTSTRAP_SERVERS, LOOPLINE_SERVICES_* and
LOOPLINE_METRICS_FLINK_PORTS so code under test that loads its config, and CLI subprocesses,
find these services. Metrics stay off unless a test sets LOOPLINE_METRICS_ENABLED.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.config import ServicesConfig
from infra.flink_cluster import FlinkCluster
from infra.kafka_broker import KafkaBroker
from infra.metrics import MetricsConfig
from infra.prometheus_server import PrometheusServer
from infra.redis_server import RedisEndpoint, RedisServer
from infra.stack import Stack
from infra.topics import create_topics, default_specs
from loopline.kafka import KafkaConfig
from loopline.net import free_port
from loopline.paths import load_paths

PREFERRED_PORTS = {
    "kafka_port": 19092,
    "kafka_controller_port": 19093,
    "redis_port": 16379,
    "flink_rest_port": 18081,
    "flink_rpc_port": 16123,
    "prometheus_port": 19090,
}
# Flink's Prometheus reporters: one port per JVM (the mini-cluster, or a JobManager and its
# TaskManagers), scraped by the session Prometheus every second.
REPORTER_PORTS = 4


def pick_ports(preferred: dict[str, int]) -> dict[str, int]:
    chosen: dict[str, int] = {}
    for name, port in preferred.items():
        chosen[name] = free_port(port, avoid=frozenset(chosen.values()))
    return chosen


def pick_port_range(first: int, count: int, avoid: frozenset[int]) -> str:
    """'a-b': `count` consecutive ports, each free now and none in `avoid`."""
    for start in range(first, first + 2000, count):
        ports = range(start, start + count)
        if all(p not in avoid and free_port(p, avoid=avoid) == p for p in ports):
            return f"{start}-{start + count - 1}"
    raise RuntimeError(f"no {count} consecutive free ports from {first}")


@pytest.fixture(scope="session")
def services_config() -> ServicesConfig:
    # Generous timeout: CI shares two cores with JVM start-ups.
    return ServicesConfig(**pick_ports(PREFERRED_PORTS), start_timeout_s=240)


@pytest.fixture(scope="session")
def metrics_config(services_config: ServicesConfig) -> MetricsConfig:
    taken = frozenset(getattr(services_config, f) for f in PREFERRED_PORTS)
    return MetricsConfig(
        flink_ports=pick_port_range(19249, REPORTER_PORTS, taken), scrape_interval_s=1.0
    )


@pytest.fixture(scope="session")
def stack(services_config: ServicesConfig, metrics_config: MetricsConfig) -> Iterator[Stack]:
    """The session's stack handle (starts nothing by itself)."""
    cfg = services_config
    with pytest.MonkeyPatch.context() as mp:
        for field in PREFERRED_PORTS:
            mp.setenv(f"LOOPLINE_SERVICES_{field.upper()}", str(getattr(cfg, field)))
        mp.setenv("LOOPLINE_KAFKA_BOOTSTRAP_SERVERS", f"{cfg.host}:{cfg.kafka_port}")
        mp.setenv("LOOPLINE_METRICS_FLINK_PORTS", metrics_config.flink_ports)
        mp.setenv("LOOPLINE_METRICS_SCRAPE_INTERVAL_S", str(metrics_config.scrape_interval_s))
        yield Stack(cfg, load_paths(), metrics_config)


@pytest.fixture(scope="session")
def kafka_broker(stack: Stack) -> Iterator[KafkaBroker]:
    broker = stack.kafka
    broker.up()
    try:
        yield broker
    finally:
        broker.down()


@pytest.fixture(scope="session")
def kafka(kafka_broker: KafkaBroker, stack: Stack) -> KafkaConfig:
    """Client config of the session broker, with every Loopline topic created."""
    config = kafka_broker.client_config()
    create_topics(config, default_specs(stack.cfg.kafka_input_partitions))
    return config


@pytest.fixture(scope="session")
def redis_server(stack: Stack) -> Iterator[RedisServer]:
    server = stack.redis
    server.up()
    try:
        yield server
    finally:
        server.down()


@pytest.fixture(scope="session")
def redis(redis_server: RedisServer) -> RedisEndpoint:
    return redis_server.endpoint


@pytest.fixture(scope="session")
def flink_cluster(stack: Stack) -> Iterator[FlinkCluster]:
    cluster = stack.flink
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def prometheus(stack: Stack) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping the Flink reporter range every second; tests add targets
    (e.g. serving's /metrics) with `prometheus.add_targets(name, ["host:port"])`."""
    server = stack.prometheus
    server.up()
    try:
        yield server
    finally:
        server.down()
