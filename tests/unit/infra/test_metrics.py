"""infra/metrics.py and the Prometheus config it drives: pure functions, no services."""

from __future__ import annotations

import pytest

from infra.config import KNOWN_SERVICES, ServicesConfig, load_services
from infra.metrics import REPORTER_FACTORY, MetricsConfig, flink_reporter_config, load_metrics
from infra.prometheus_server import scrape_config
from loopline.errors import ConfigError


def test_reporter_config_is_empty_when_metrics_are_off() -> None:
    assert flink_reporter_config(MetricsConfig()) == {}


def test_reporter_config_names_our_factory_host_and_port_range() -> None:
    cfg = MetricsConfig(enabled=True, flink_ports="9300-9303")
    assert flink_reporter_config(cfg) == {
        "metrics.reporter.prom.factory.class": REPORTER_FACTORY,
        "metrics.reporter.prom.host": "127.0.0.1",
        "metrics.reporter.prom.port": "9300-9303",
    }
    assert cfg.flink_targets() == [f"127.0.0.1:{p}" for p in range(9300, 9304)]
    assert MetricsConfig(flink_ports="9249").flink_targets() == ["127.0.0.1:9249"]


@pytest.mark.parametrize("ports", ["", "http", "9300-", "9303-9300", "0", "70000"])
def test_bad_port_ranges_are_refused(ports: str) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.flink_ports"):
        MetricsConfig(flink_ports=ports)


def test_a_remote_endpoint_needs_an_explicit_opt_in() -> None:
    with pytest.raises(ConfigError, match="allow_remote"):
        MetricsConfig(host="0.0.0.0")
    assert MetricsConfig(host="0.0.0.0", allow_remote=True).host == "0.0.0.0"


def test_metrics_config_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_METRICS_ENABLED", "true")
    monkeypatch.setenv("LOOPLINE_METRICS_FLINK_PORTS", "19249-19250")
    cfg = load_metrics()
    assert cfg.enabled and cfg.flink_port_range == (19249, 19250)


def test_scrape_config_scrapes_the_reporter_range_and_discovered_files() -> None:
    config = scrape_config(MetricsConfig(flink_ports="9249-9250", scrape_interval_s=1), "/t")
    assert config["global"]["scrape_interval"] == "1s"
    assert config["global"]["scrape_timeout"] == "1s"  # never longer than the interval
    flink, files = config["scrape_configs"]
    assert flink["static_configs"][0]["targets"] == ["127.0.0.1:9249", "127.0.0.1:9250"]
    assert files["file_sd_configs"][0]["files"] == ["/t/*.json"]
    slow = scrape_config(MetricsConfig(scrape_interval_s=30), "/t")
    assert slow["global"]["scrape_timeout"] == "10s"


def test_prometheus_is_a_known_service_but_not_started_by_default() -> None:
    assert "prometheus" in KNOWN_SERVICES
    assert "prometheus" not in load_services().services
    with pytest.raises(ConfigError, match="every port must differ"):
        ServicesConfig(prometheus_port=9092)
