"""`loopline infra` end to end in subprocesses, on a stack of its own (own home and ports):
up twice is harmless, status reports, down leaves no process; errors are one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra import process
from infra.config import ServicesConfig
from infra.kafka_broker import KafkaBroker
from infra.metrics import MetricsConfig
from infra.prometheus_server import PrometheusServer
from loopline.paths import PathsConfig
from tests.integration.conftest import PREFERRED_PORTS, REPORTER_PORTS, pick_port_range, pick_ports

pytestmark = pytest.mark.integration


def loopline(
    *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture
def own_stack_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a stack separate from the session fixtures: own home, free ports."""
    env = dict(os.environ)
    # Shift the preferred ports so they cannot collide with the session services' ones.
    for field, port in pick_ports({k: v + 100 for k, v in PREFERRED_PORTS.items()}).items():
        env[f"LOOPLINE_SERVICES_{field.upper()}"] = str(port)
    env["LOOPLINE_PATHS_HOME"] = str(tmp_path / "home")
    env["LOOPLINE_SERVICES_START_TIMEOUT_S"] = "240"
    env["LOOPLINE_KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{env['LOOPLINE_SERVICES_KAFKA_PORT']}"
    # The cluster's JobManager and TaskManager report to a Prometheus of this stack.
    taken = frozenset(int(v) for k, v in env.items() if k.startswith("LOOPLINE_SERVICES_")
                      and k.endswith("_PORT"))
    env["LOOPLINE_METRICS_ENABLED"] = "true"
    env["LOOPLINE_METRICS_FLINK_PORTS"] = pick_port_range(19349, REPORTER_PORTS, taken)
    env["LOOPLINE_METRICS_SCRAPE_INTERVAL_S"] = "1"
    return env


def status_of(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    out = loopline("infra", "status", "--json", env=env)
    assert out.returncode == 0, out.stderr
    return {s["name"]: s for s in json.loads(out.stdout)}


def test_up_up_status_topics_down(own_stack_env: dict[str, str]) -> None:
    env = own_stack_env
    try:
        first = loopline("infra", "up", "kafka", "redis", "flink", "prometheus", env=env)
        assert first.returncode == 0, first.stderr
        running = status_of(env)
        assert {n: s["state"] for n, s in running.items()} == {
            "kafka": "running", "redis": "running", "flink": "running",
            "prometheus": "running"}  # fmt: skip
        assert running["kafka"]["data_dir"].startswith(env["LOOPLINE_PATHS_HOME"])
        assert len(running["flink"]["pids"]) == 2  # JobManager + TaskManager
        # Both cluster JVMs serve Flink's metrics on loopback, and the stack's Prometheus
        # scrapes them (the [metrics] reporter plugin of the session cluster).
        prometheus = PrometheusServer(
            ServicesConfig(prometheus_port=int(env["LOOPLINE_SERVICES_PROMETHEUS_PORT"])),
            PathsConfig(home=Path(env["LOOPLINE_PATHS_HOME"])).resolved(),
            MetricsConfig(flink_ports=env["LOOPLINE_METRICS_FLINK_PORTS"]),
        )
        assert process.wait_until(
            lambda: {s["metric"]["__name__"] for s in prometheus.query(
                '{__name__=~"flink_(jobmanager|taskmanager)_Status_JVM_CPU_Load"}')} == {
                "flink_jobmanager_Status_JVM_CPU_Load", "flink_taskmanager_Status_JVM_CPU_Load"},
            120,
        ), prometheus.active_targets()
        first, last = (int(p) for p in env["LOOPLINE_METRICS_FLINK_PORTS"].split("-"))
        reporting = [p for p in range(first, last + 1) if process.listen_addresses(p)]
        assert len(reporting) == 2
        assert all(process.listen_addresses(p) == {"127.0.0.1"} for p in reporting)

        second = loopline("infra", "up", env=env)  # default: every configured service
        assert second.returncode == 0, second.stderr
        assert {n: s["pids"] for n, s in status_of(env).items()} == {
            n: s["pids"] for n, s in running.items()
        }

        topics = loopline("infra", "topics", env=env)
        assert topics.returncode == 0, topics.stderr
        assert "created  loopline.serving  partitions=2" in topics.stdout
        again = loopline("infra", "topics", env=env)
        assert "created" not in again.stdout and "exists   loopline.schemas" in again.stdout
    finally:
        down = loopline("infra", "down", env=env)
    assert down.returncode == 0, down.stderr
    pids = [p for s in running.values() for p in s["pids"]]
    assert not [p for p in pids if process.is_alive(p)], "processes left behind"
    ports = [int(v) for k, v in env.items() if k.startswith("LOOPLINE_SERVICES_") and "PORT" in k]
    assert not [p for p in ports if process.port_open("127.0.0.1", p)], "ports still open"
    assert {s["state"] for s in status_of(env).values()} == {"stopped"}
    # Flink's pid files must not point at dead processes either.
    assert not list((Path(env["LOOPLINE_PATHS_HOME"]) / "services/flink/pid").glob("*.pid"))


def test_port_in_use_is_one_line_exit_2(
    kafka_broker: KafkaBroker, own_stack_env: dict[str, str]
) -> None:
    env = dict(own_stack_env, LOOPLINE_SERVICES_KAFKA_PORT=str(kafka_broker.cfg.kafka_port))
    out = loopline("infra", "up", "kafka", env=env)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("loopline: error: kafka:")
    assert f"127.0.0.1:{kafka_broker.cfg.kafka_port} is held by pid" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_config_and_bad_usage_are_one_line_exit_2(own_stack_env: dict[str, str]) -> None:
    env = dict(own_stack_env, LOOPLINE_SERVICES_KAFKA_PORT="ninety-two")
    bad_config = loopline("infra", "status", env=env)
    assert bad_config.returncode == 2
    assert bad_config.stderr == (
        "loopline: error: LOOPLINE_SERVICES_KAFKA_PORT: expected int, got 'ninety-two'\n"
    )
    bad_service = loopline("infra", "up", "zookeeper", env=own_stack_env)
    assert bad_service.returncode == 2 and bad_service.stderr.count("\n") == 1
    assert "got ['zookeeper']" in bad_service.stderr
    bad_usage = loopline("infra", "sideways", env=own_stack_env)
    assert bad_usage.returncode == 2 and bad_usage.stderr.count("\n") == 1
    assert "invalid choice: 'sideways'" in bad_usage.stderr


def test_verbose_shows_the_traceback(own_stack_env: dict[str, str]) -> None:
    env = dict(own_stack_env, LOOPLINE_SERVICES_KAFKA_PORT="ninety-two")
    out = loopline("--verbose", "infra", "status", env=env)
    assert out.returncode == 2
    assert "Traceback" in out.stderr and "ConfigError" in out.stderr


def test_help_lists_the_infra_actions(own_stack_env: dict[str, str]) -> None:
    out = loopline("infra", "--help", env=own_stack_env)
    assert out.returncode == 0
    for action in ("up", "down", "status", "topics"):
        assert action in out.stdout
