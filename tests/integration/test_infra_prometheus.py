"""The local Prometheus: idempotent up, loopback only, targets picked up from files without a
restart, queries through the HTTP API, a clear error on a taken port, nothing left after down."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from infra import process
from infra.errors import PortInUseError
from infra.prometheus_server import PrometheusServer
from loopline.net import free_port
from loopline.paths import PathsConfig

pytestmark = pytest.mark.integration


def own_home(tmp_path: Path) -> PathsConfig:
    """A home apart from the session's, for a second server that must not touch it."""
    return PathsConfig(home=tmp_path, jars=PathsConfig().jars).resolved()


def test_up_again_is_a_noop_and_binds_loopback_only(prometheus: PrometheusServer) -> None:
    before = prometheus.status()
    after = prometheus.up()
    assert after.running and after.pids == before.pids
    assert process.listen_addresses(prometheus.cfg.prometheus_port) == {"127.0.0.1"}
    config = yaml.safe_load(prometheus.config_file.read_text())
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == (
        prometheus.metrics.flink_targets()
    )


def test_a_target_file_is_scraped_without_a_restart(prometheus: PrometheusServer) -> None:
    [pid] = prometheus.status().pids
    self_target = f"{prometheus.cfg.host}:{prometheus.cfg.prometheus_port}"
    prometheus.add_targets("itself", [self_target], {"service": "prometheus"})
    try:
        assert process.wait_until(
            lambda: bool(prometheus.query('up{group="itself", service="prometheus"} == 1')), 60
        ), prometheus.active_targets()
        # Its own counters came through a scrape: a real sample, not just the `up` series.
        samples = prometheus.query('prometheus_build_info{group="itself"}')
        assert samples and samples[0]["metric"]["instance"] == self_target
    finally:
        prometheus.remove_targets("itself")
    assert prometheus.status().pids == (pid,)
    assert process.wait_until(
        lambda: not [t for t in prometheus.active_targets()
                     if t["labels"].get("group") == "itself"], 60,
    )


def test_a_taken_port_is_a_clear_error(prometheus: PrometheusServer, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", free_port(0)))
        holder.listen()
        port = holder.getsockname()[1]
        other = PrometheusServer(
            replace(prometheus.cfg, prometheus_port=port),
            own_home(tmp_path), prometheus.metrics,
        )
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port}.*LOOPLINE_SERVICES_PROMETHEUS"):
            other.up()
    assert other.status().state == "stopped"


def test_down_leaves_nothing_and_a_second_down_is_harmless(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    port = free_port(0, avoid={prometheus.cfg.prometheus_port})
    own = PrometheusServer(replace(prometheus.cfg, prometheus_port=port),
                           own_home(tmp_path), prometheus.metrics)
    [pid] = own.up().pids
    try:
        assert own.query("vector(1)")[0]["value"][1] == "1"
    finally:
        own.down()
    assert not process.is_alive(pid)
    assert not process.port_open("127.0.0.1", port)
    assert own.down().state == "stopped"
