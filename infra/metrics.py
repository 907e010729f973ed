"""MetricsConfig ([metrics]): the jobs' Prometheus endpoints, and what Prometheus scrapes.

The Flink side is Flink's Prometheus reporter (its AbstractPrometheusReporter: same metric
names, labels and types) behind our small factory in infra/jvm/flink-metrics-loopback, because
Flink 2.2's own factory always listens on every interface; ours binds `host` (loopback by
default), as every local service here does.
"""

from __future__ import annotations

from dataclasses import dataclass

from loopline import settings
from loopline.errors import ConfigError
from loopline.net import is_loopback

# Built by `make jars` (infra/jvm/flink-metrics-loopback); infra.jars.prometheus_reporter_jar.
REPORTER_FACTORY = "io.loopline.flink.metrics.BoundPrometheusReporterFactory"
REPORTER_NAME = "prom"  # metrics.reporter.<name>.*


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics] / LOOPLINE_METRICS_*."""

    # Off by default: an endpoint is a port someone must own; `loopline job run` and the
    # cluster turn it on with LOOPLINE_METRICS_ENABLED=true.
    enabled: bool = False
    host: str = "127.0.0.1"
    # A port or a range "a-b": each JVM (the mini-cluster; a cluster's JobManager and every
    # TaskManager) takes the next free port of it. Prometheus scrapes the whole range.
    flink_ports: str = "9249-9252"
    scrape_interval_s: float = 15.0
    # Opening an endpoint beyond loopback is a deliberate act (no auth on /metrics).
    allow_remote: bool = False

    def __post_init__(self) -> None:
        first, last = self.flink_port_range
        if not 1 <= first <= last <= 65535:
            raise ConfigError(
                f"metrics.flink_ports: expected a port or a range a-b within 1..65535, got "
                f"{self.flink_ports!r}"
            )
        if not self.allow_remote and not is_loopback(self.host):
            raise ConfigError(
                f"metrics.host: expected a loopback address unless metrics.allow_remote is "
                f"set (/metrics has no authentication), got {self.host!r}"
            )
        if self.scrape_interval_s <= 0:
            raise ConfigError(
                f"metrics.scrape_interval_s: expected > 0, got {self.scrape_interval_s}"
            )

    @property
    def flink_port_range(self) -> tuple[int, int]:
        first, dash, last = self.flink_ports.strip().partition("-")
        try:
            return int(first), int(last if dash else first)
        except ValueError as exc:
            raise ConfigError(
                f"metrics.flink_ports: expected a port or a range a-b, got {self.flink_ports!r}"
            ) from exc

    def flink_targets(self) -> list[str]:
        """Every host:port a Flink JVM may serve /metrics on (Prometheus scrape targets)."""
        first, last = self.flink_port_range
        return [f"{self.host}:{port}" for port in range(first, last + 1)]


def flink_reporter_config(cfg: MetricsConfig) -> dict[str, str]:
    """The `metrics.reporter.prom.*` Flink options for `cfg` ({} when metrics are off)."""
    if not cfg.enabled:
        return {}
    prefix = f"metrics.reporter.{REPORTER_NAME}"
    return {
        f"{prefix}.factory.class": REPORTER_FACTORY,
        f"{prefix}.host": cfg.host,
        f"{prefix}.port": cfg.flink_ports,
    }


def load_metrics(**overrides: object) -> MetricsConfig:
    return settings.load(MetricsConfig, "metrics", **overrides)
