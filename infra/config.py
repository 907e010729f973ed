"""ServicesConfig: ports, sizes and the service selection of the local stack ([services])."""

from __future__ import annotations

from dataclasses import dataclass

from infra.java import SMALL_MACHINE_JIT
from loopline import settings
from loopline.errors import ConfigError
from loopline.net import is_loopback

KNOWN_SERVICES = ("kafka", "redis", "flink", "prometheus")
# Started by a bare `loopline infra up`; Prometheus is opt-in (`loopline infra up prometheus`).
DEFAULT_SERVICES = ("kafka", "redis", "flink")


@dataclass(frozen=True)
class ServicesConfig:
    """The local Kafka / Redis / Flink / Prometheus stack ([services] / LOOPLINE_SERVICES_*).

    Everything binds to `host`, which must be a loopback address: these are development
    services without authentication and must never be reachable from the network.
    """

    # Which services `loopline infra up` starts when none are named.
    services: tuple[str, ...] = DEFAULT_SERVICES
    host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    # Explicit topics catch misspelt names; turn on only for ad-hoc experiments.
    kafka_auto_create_topics: bool = False
    # Time-based retention compares with record timestamps: replayed or simulated events with
    # old event times would be deleted within minutes, so keep records until size says so.
    kafka_retention_ms: int = -1
    kafka_retention_bytes: int = 1024**3  # per partition
    # The two input topics get 2 partitions so the job's parallelism 2 has work per subtask.
    kafka_input_partitions: int = 2
    redis_port: int = 6379
    redis_maxmemory: str = "512mb"
    flink_rest_port: int = 8081
    flink_rpc_port: int = 6123
    flink_slots: int = 2
    flink_jobmanager_memory: str = "1024m"
    flink_taskmanager_memory: str = "1728m"
    # HotSpot options of the TaskManagers, which run the job's operators (why: JobConfig.
    # jit_options); "" = the JVM's defaults.
    flink_taskmanager_java_opts: str = SMALL_MACHINE_JIT
    # Prometheus scrapes [metrics] endpoints (infra/metrics.py) and whatever targets files
    # are dropped into <home>/services/prometheus/targets/ (file service discovery).
    prometheus_port: int = 9090
    prometheus_retention: str = "2d"
    start_timeout_s: float = 120.0
    stop_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        unknown = [s for s in self.services if s not in KNOWN_SERVICES]
        if unknown:
            raise ConfigError(
                f"services.services: expected some of {list(KNOWN_SERVICES)}, got {unknown}"
            )
        if not is_loopback(self.host):
            raise ConfigError(
                f"services.host: expected a loopback address (127.0.0.1, ::1, localhost), "
                f"got {self.host!r}"
            )
        ports = {
            "kafka_port": self.kafka_port,
            "kafka_controller_port": self.kafka_controller_port,
            "redis_port": self.redis_port,
            "flink_rest_port": self.flink_rest_port,
            "flink_rpc_port": self.flink_rpc_port,
            "prometheus_port": self.prometheus_port,
        }
        for name, port in ports.items():
            if not 1 <= port <= 65535:
                raise ConfigError(f"services.{name}: expected a port in 1..65535, got {port}")
        if len(set(ports.values())) != len(ports):
            raise ConfigError(f"services: every port must differ, got {ports}")
        for name, value in (("flink_slots", self.flink_slots),
                            ("kafka_input_partitions", self.kafka_input_partitions)):
            if value < 1:
                raise ConfigError(f"services.{name}: expected >= 1, got {value}")
        if self.start_timeout_s <= 0 or self.stop_timeout_s <= 0:
            raise ConfigError(
                "services: start_timeout_s and stop_timeout_s must be > 0, got "
                f"{self.start_timeout_s} and {self.stop_timeout_s}"
            )


def load_services(**overrides: object) -> ServicesConfig:
    return settings.load(ServicesConfig, "services", **overrides)
