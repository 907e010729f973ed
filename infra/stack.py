"""The whole local stack: Kafka, Redis, Flink and Prometheus, each selectable, started in a
fixed order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from infra.config import KNOWN_SERVICES, ServicesConfig, load_services
from infra.errors import InfraError
from infra.flink_cluster import FlinkCluster
from infra.kafka_broker import KafkaBroker
from infra.metrics import MetricsConfig, load_metrics
from infra.prometheus_server import PrometheusServer
from infra.redis_server import RedisServer
from infra.service import Service, ServiceStatus
from loopline.paths import PathsConfig, load_paths


@dataclass(frozen=True)
class Stack:
    """The local services under one Loopline home, configured by one ServicesConfig."""

    cfg: ServicesConfig
    paths: PathsConfig
    metrics: MetricsConfig | None = None  # None: [metrics] from loopline.toml / environment

    @classmethod
    def load(cls) -> Stack:
        """From [services] / [paths] / [metrics] in loopline.toml and LOOPLINE_* variables."""
        return cls(load_services(), load_paths(), load_metrics())

    @property
    def kafka(self) -> KafkaBroker:
        return KafkaBroker(self.cfg, self.paths)

    @property
    def redis(self) -> RedisServer:
        return RedisServer(self.cfg, self.paths)

    @property
    def flink(self) -> FlinkCluster:
        return FlinkCluster(self.cfg, self.paths, self.metrics)

    @property
    def prometheus(self) -> PrometheusServer:
        return PrometheusServer(self.cfg, self.paths, self.metrics or load_metrics())

    def service(self, name: str) -> Service:
        factories: dict[str, Callable[[ServicesConfig, PathsConfig], Service]] = {
            "kafka": KafkaBroker,
            "redis": RedisServer,
            "flink": lambda cfg, paths: self.flink,
            "prometheus": lambda cfg, paths: self.prometheus,
        }
        if name not in factories:
            raise InfraError(f"expected a service among {list(KNOWN_SERVICES)}, got {name!r}")
        return factories[name](self.cfg, self.paths)

    def select(self, names: Sequence[str] = ()) -> list[str]:
        """`names` (default: the configured services) in start order, duplicates removed."""
        chosen = set(names or self.cfg.services)
        unknown = chosen - set(KNOWN_SERVICES)
        if unknown:
            raise InfraError(
                f"expected services among {list(KNOWN_SERVICES)}, got {sorted(unknown)}"
            )
        return [n for n in KNOWN_SERVICES if n in chosen]

    def up(self, names: Sequence[str] = ()) -> list[ServiceStatus]:
        # Kafka first: jobs submitted right after `up` read from it. Sequential on purpose:
        # JVM start-up is CPU-bound and two at once on two cores gains little.
        return [self.service(n).up() for n in self.select(names)]

    def down(self, names: Sequence[str] = (), wipe: bool = False) -> list[ServiceStatus]:
        """Stop in reverse start order (Flink jobs first lose their sources, not vice versa)."""
        statuses = []
        for name in reversed(self.select(names or KNOWN_SERVICES)):
            service = self.service(name)
            statuses.append(service.down())
            if wipe:
                service.wipe()
        return statuses

    def status(self, names: Sequence[str] = ()) -> list[ServiceStatus]:
        return [self.service(n).status() for n in self.select(names or KNOWN_SERVICES)]
