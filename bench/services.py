"""The services a benchmark runs against: its own Kafka + Redis (+ the Flink standalone
cluster for the soak), or ones handed in (tests).

By default a benchmark starts a private broker and Redis on free loopback ports under its own
home (never a developer's running stack), and stops them at the end. Tests pass the session
fixtures instead. Either way the pids are known, so the memory sampler can watch them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchRunError
from infra import process
from infra.config import ServicesConfig
from infra.flink_cluster import FlinkCluster
from infra.redis_server import RedisEndpoint
from infra.stack import Stack
from infra.topics import TopicSpec, create_topics, default_specs, delete_topics
from loopline.errors import LooplineError
from loopline.kafka import KafkaConfig
from loopline.net import free_port
from loopline.paths import PathsConfig

_PREFERRED = {
    "kafka_port": 29092,
    "kafka_controller_port": 29093,
    "redis_port": 26379,
    "flink_rest_port": 28081,
    "flink_rpc_port": 26123,
}


def _pid_listening(port: int) -> int | None:
    owner = process.port_owner(port)  # 'pid N (cmd)'
    if owner.startswith("pid "):
        return int(owner.split()[1])
    return None


@dataclass
class Services:
    """Kafka (+ optional Redis, Flink cluster) endpoints, and the pids to watch for memory."""

    kafka: KafkaConfig
    redis: RedisEndpoint | None
    pids: dict[str, int] = field(default_factory=dict)
    flink: FlinkCluster | None = None

    def create_topics(self, names: Iterable[str], partitions: int) -> None:
        specs = [TopicSpec(n, partitions, {"message.timestamp.type": "CreateTime"})
                 for n in names]
        try:
            create_topics(self.kafka, specs)
        except LooplineError as exc:
            raise BenchRunError(f"creating benchmark topics failed: {exc}") from exc

    def delete_topics(self, names: Iterable[str]) -> None:
        with contextlib.suppress(LooplineError):
            delete_topics(self.kafka, list(names))

    def flush_redis(self) -> None:
        """Empty the benchmark's own Redis (only called on a Redis this run owns or was given
        for benchmarking), so each run starts from an empty online store."""
        if self.redis is None:
            return
        import redis

        client = redis.Redis(host=self.redis.host, port=self.redis.port)
        try:
            client.flushall()
        finally:
            client.close()


def attach(kafka: KafkaConfig, redis: RedisEndpoint | None,
           flink: FlinkCluster | None = None) -> Services:
    """Services started elsewhere (e.g. the integration-test fixtures)."""
    pids: dict[str, int] = {}
    host_port = kafka.bootstrap_servers.split(",")[0]
    broker = _pid_listening(int(host_port.rsplit(":", 1)[1]))
    if broker is not None:
        pids["kafka"] = broker
    if redis is not None:
        server = _pid_listening(redis.port)
        if server is not None:
            pids["redis"] = server
    services = Services(kafka, redis, pids, flink)
    with contextlib.suppress(LooplineError):
        create_topics(kafka, default_specs(2))  # the schemas topic the job's registry reads
    return services


@contextlib.contextmanager
def own(home: Path, redis: bool = True, kafka_heap: str = "1g",
        flink: bool = False) -> Iterator[Services]:
    """Start a private Kafka (and Redis, Flink cluster) under `home`; stop them on exit."""
    ports: dict[str, int] = {}
    for name, preferred in _PREFERRED.items():
        ports[name] = free_port(preferred, ports.values())
    cfg = ServicesConfig(
        kafka_port=ports["kafka_port"], kafka_controller_port=ports["kafka_controller_port"],
        redis_port=ports["redis_port"], flink_rest_port=ports["flink_rest_port"],
        flink_rpc_port=ports["flink_rpc_port"], kafka_heap=kafka_heap, redis_maxmemory="2gb",
        start_timeout_s=240)
    stack = Stack(cfg, PathsConfig(home=home / f"services-{uuid.uuid4().hex[:6]}").resolved())
    names = ["kafka", *(["redis"] if redis else []), *(["flink"] if flink else [])]
    try:
        try:
            stack.up(names)
        except LooplineError as exc:
            raise BenchRunError(f"starting the benchmark's own services failed: {exc}") from exc
        pids = {s.name: s.pids[0] for s in stack.status(names) if s.pids}
        kafka = stack.kafka.client_config()
        create_topics(kafka, default_specs(2))
        yield Services(kafka, stack.redis.endpoint if redis else None, pids,
                       stack.flink if flink else None)
    finally:
        with contextlib.suppress(LooplineError):
            stack.down(names, wipe=True)
