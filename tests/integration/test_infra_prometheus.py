"""The local Prometheus: idempotent up, loopback only, targets picked up from files without a
restart, queries through the HTTP API, a clear error on a taken port, nothing left after down."""

from __future__ import annotations

import http.server
import socket
import threading
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

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


class _TokenMetrics(http.server.BaseHTTPRequestHandler):
    """/metrics behind a Bearer token, like serving's: 401 without the right one."""

    token = "s3cret"
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        if self.path != "/metrics" or self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_response(401)
            self.end_headers()
            return
        body = b"# TYPE loopline_probe_total counter\nloopline_probe_total 7\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep the test output quiet
        pass


def test_a_bearer_protected_endpoint_is_scraped_with_its_token(
    prometheus: PrometheusServer,
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenMetrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = f"127.0.0.1:{server.server_address[1]}"
    try:
        prometheus.add_targets("tokened", [target], bearer_token=_TokenMetrics.token)
        token_file = prometheus.bearer_dir / "tokened.token"
        assert token_file.stat().st_mode & 0o077 == 0  # owner-only
        assert process.wait_until(
            lambda: bool(prometheus.query('loopline_probe_total{group="tokened"} == 7')), 60
        ), prometheus.active_targets()
        assert "Bearer s3cret" in _TokenMetrics.seen
        assert not prometheus.query('up{job="loopline-tokened"} == 0')
    finally:
        prometheus.remove_targets("tokened")
        server.shutdown()
        server.server_close()
    assert not (prometheus.bearer_dir / "tokened.token").exists()
    assert "loopline-tokened" not in prometheus.config_file.read_text()
