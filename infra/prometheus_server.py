"""A local Prometheus (Debian package `prometheus`) that scrapes the jobs and serving.

Bound to loopback, state in <home>/services/prometheus (prometheus.yml, data/, targets/).
The config is written on every `up` from ServicesConfig + MetricsConfig: the Flink reporter's
port range as static targets, plus file service discovery over targets/*.json, so a test or a
service started later (serving's /metrics, a job on another port) registers itself with
`add_targets` without a restart. Readiness: GET /-/ready answers 200.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra import process
from infra.config import ServicesConfig
from infra.errors import InfraError, MissingBinaryError, PortInUseError, ServiceStartError
from infra.metrics import MetricsConfig
from infra.service import RUNNING, STOPPED, UNHEALTHY, ServiceStatus
from loopline.paths import PathsConfig


class PrometheusQueryError(InfraError):
    """Prometheus' HTTP API did not answer a query, or answered with an error."""


@dataclass(frozen=True)
class PrometheusEndpoint:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def scrape_config(
    metrics: MetricsConfig, targets_dir: str, bearer_jobs: dict[str, tuple[str, str]] | None = None
) -> dict[str, Any]:
    """prometheus.yml as a dict: the Flink reporter range + file-discovered targets, and one
    job per `bearer_jobs` entry, name -> (targets file, token file), for endpoints behind a
    Bearer token (serving's /metrics follows serving's auth rule)."""
    interval = f"{metrics.scrape_interval_s:g}s"
    # A scrape may not outlast its interval (Prometheus refuses the config otherwise).
    timeout = f"{min(metrics.scrape_interval_s, 10.0):g}s"
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": timeout,
                   "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": "flink",
                "static_configs": [
                    {"targets": metrics.flink_targets(), "labels": {"service": "flink"}}
                ],
            },
            {
                "job_name": "loopline",
                # Prometheus watches these files and picks up changes without a reload.
                "file_sd_configs": [
                    {"files": [f"{targets_dir}/*.json"], "refresh_interval": "5s"}
                ],
            },
            *(
                {
                    "job_name": f"loopline-{name}",
                    # Read at every scrape: a rotated token needs no reload.
                    "authorization": {"type": "Bearer", "credentials_file": token_file},
                    "file_sd_configs": [{"files": [targets_file], "refresh_interval": "5s"}],
                }
                for name, (targets_file, token_file) in sorted((bearer_jobs or {}).items())
            ),
        ],
    }  # fmt: skip


class PrometheusServer:
    """The local Prometheus under `paths.services / "prometheus"`."""

    name = "prometheus"

    def __init__(self, cfg: ServicesConfig, paths: PathsConfig, metrics: MetricsConfig) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.root = paths.services / "prometheus"
        self.config_file = self.root / "prometheus.yml"
        self.targets_dir = self.root / "targets"
        self.bearer_dir = self.root / "bearer"  # <name>.json targets + <name>.token, 0600
        self.data_dir = self.root / "data"
        self.pid_file = self.root / "prometheus.pid"
        self.log_file = self.root / "prometheus.log"

    @property
    def endpoint(self) -> PrometheusEndpoint:
        return PrometheusEndpoint(self.cfg.host, self.cfg.prometheus_port)

    @property
    def _listen(self) -> str:
        return f"{self.cfg.host}:{self.cfg.prometheus_port}"

    # -- lifecycle -------------------------------------------------------------------------
    def up(self) -> ServiceStatus:
        with process.locked(self.root / ".lock"):
            self._write_config()
            pid = self._pid()
            if pid is None:
                pid = self._start()
            else:
                os.kill(pid, signal.SIGHUP)  # re-read prometheus.yml (targets may have changed)
            running = pid
            if not process.wait_until(
                self._ready, self.cfg.start_timeout_s, lambda: process.is_alive(running), 0.2
            ):
                raise ServiceStartError(
                    f"prometheus: expected {self.endpoint.url}/-/ready to answer 200 within "
                    f"{self.cfg.start_timeout_s:.0f}s, got no answer (log: {self.log_file})",
                    details=process.tail(self.log_file),
                )
            return self.status()

    def down(self) -> ServiceStatus:
        with process.locked(self.root / ".lock"):
            pid = self._pid()
            if pid is not None:
                process.terminate([pid], self.cfg.stop_timeout_s, "prometheus")
            self.pid_file.unlink(missing_ok=True)
        return self.status()

    def status(self) -> ServiceStatus:
        pid = self._pid()
        state = STOPPED if pid is None else RUNNING if self._ready() else UNHEALTHY
        return ServiceStatus(
            name=self.name,
            state=state,
            pids=() if pid is None else (pid,),
            endpoints={"url": self.endpoint.url},
            data_dir=str(self.root),
            log=str(self.log_file),
        )

    def wipe(self) -> None:
        if self._pid() is not None:
            raise ServiceStartError("prometheus: expected a stopped server before wiping, it runs")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- targets and queries ---------------------------------------------------------------
    def add_targets(
        self,
        name: str,
        targets: list[str],
        labels: dict[str, str] | None = None,
        bearer_token: str | None = None,
    ) -> None:
        """Scrape `targets` (host:port, path /metrics) as group `name` from now on; with
        `bearer_token`, as a job of its own that sends `Authorization: Bearer <token>`
        (a new such job makes the running server re-read its config)."""
        group = [{"targets": targets, "labels": {"group": name, **(labels or {})}}]
        if bearer_token is None:
            _replace_file(self.targets_dir / f"{name}.json", json.dumps(group))
            return
        token_file = self.bearer_dir / f"{name}.token"
        _replace_file(token_file, bearer_token, mode=0o600)
        _replace_file(self.bearer_dir / f"{name}.json", json.dumps(group))
        self.reload()

    def remove_targets(self, name: str) -> None:
        (self.targets_dir / f"{name}.json").unlink(missing_ok=True)
        if (self.bearer_dir / f"{name}.token").exists():
            (self.bearer_dir / f"{name}.json").unlink(missing_ok=True)
            (self.bearer_dir / f"{name}.token").unlink()
            self.reload()

    def reload(self) -> None:
        """Rewrite prometheus.yml and have a running server re-read it (SIGHUP)."""
        with process.locked(self.root / ".lock"):
            self._write_config()
            pid = self._pid()
            if pid is not None:
                os.kill(pid, signal.SIGHUP)

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a successful answer."""
        url = f"{self.endpoint.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise PrometheusQueryError(f"prometheus {path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PrometheusQueryError(
                f"prometheus {path}: expected a JSON answer from {self.endpoint.url}, got {exc}"
            ) from exc
        if body.get("status") != "success":
            raise PrometheusQueryError(f"prometheus {path}: {body.get('error', body)}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector: [{"metric": {labels}, "value": [t, "v"]}]."""
        data = self.api("query", query=promql)
        if data.get("resultType") != "vector":
            raise PrometheusQueryError(
                f"prometheus query {promql!r}: expected a vector, got {data.get('resultType')}"
            )
        return list(data["result"])

    def active_targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", state="active")["activeTargets"])

    # -- internals -------------------------------------------------------------------------
    def _write_config(self) -> None:
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        bearer_jobs = {
            token.stem: (str(token.with_suffix(".json")), str(token))
            for token in sorted(self.bearer_dir.glob("*.token"))
        }
        config = scrape_config(self.metrics, str(self.targets_dir), bearer_jobs)
        header = "# Written by infra/prometheus_server.py on every `up`; change [metrics].\n"
        self.config_file.write_text(header + yaml.safe_dump(config, sort_keys=False))

    def _start(self) -> int:
        binary = shutil.which("prometheus")
        if binary is None:
            raise MissingBinaryError(
                "prometheus: expected `prometheus` on PATH, found none; run `make apt` "
                "(installs the Debian package prometheus)"
            )
        if process.port_open(self.cfg.host, self.cfg.prometheus_port):
            raise PortInUseError(
                f"prometheus: expected {self._listen} to be free, but "
                f"{process.describe_port_holder(self.cfg.host, self.cfg.prometheus_port)}; "
                "stop it or set LOOPLINE_SERVICES_PROMETHEUS_PORT"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--storage.tsdb.retention.time={self.cfg.prometheus_retention}",
            f"--web.listen-address={self._listen}",
        ]
        pid = process.spawn_detached(cmd, log_file=self.log_file, cwd=self.root)
        process.write_pid(self.pid_file, pid)
        return pid

    def _pid(self) -> int | None:
        pid = process.read_pid(self.pid_file)
        if pid is not None and process.is_alive(pid, marker=f"--web.listen-address={self._listen}"):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def _replace_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` atomically: Prometheus never reads a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    staged.unlink(missing_ok=True)
    # Created with its final mode: a token is never readable by others, even for a moment.
    with os.fdopen(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as fh:
        fh.write(text)
    staged.replace(path)
