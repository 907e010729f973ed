"""A local Redis (Debian package `redis-server`) for Feast's scaled online store.

Bound to loopback, no persistence (the online store is rebuilt from the stream), state in
<home>/services/redis. Readiness is a PING answered with PONG.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass

from infra import process
from infra.config import ServicesConfig
from infra.errors import MissingBinaryError, PortInUseError, ServiceStartError
from infra.service import RUNNING, STOPPED, UNHEALTHY, ServiceStatus
from loopline.paths import PathsConfig


@dataclass(frozen=True)
class RedisEndpoint:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    @property
    def connection_string(self) -> str:
        """Feast's redis online store form: 'host:port'."""
        return f"{self.host}:{self.port}"


class RedisServer:
    """The local redis-server under `paths.services / "redis"`."""

    name = "redis"

    def __init__(self, cfg: ServicesConfig, paths: PathsConfig) -> None:
        self.cfg = cfg
        self.root = paths.services / "redis"
        self.pid_file = self.root / "redis.pid"
        self.log_file = self.root / "redis.log"

    @property
    def endpoint(self) -> RedisEndpoint:
        return RedisEndpoint(self.cfg.host, self.cfg.redis_port)

    def up(self) -> ServiceStatus:
        with process.locked(self.root / ".lock"):
            pid = self._pid()
            if pid is None:
                pid = self._start()
            if not process.wait_until(
                self._answers, self.cfg.start_timeout_s, lambda: process.is_alive(pid), 0.1
            ):
                raise ServiceStartError(
                    f"redis: expected PONG from {self.endpoint.connection_string} within "
                    f"{self.cfg.start_timeout_s:.0f}s, got none (log: {self.log_file})",
                    details=process.tail(self.log_file) or process.tail(self.root / "stdout.log"),
                )
            return self.status()

    def down(self) -> ServiceStatus:
        with process.locked(self.root / ".lock"):
            pid = self._pid()
            if pid is not None:
                process.terminate([pid], self.cfg.stop_timeout_s, "redis")
            self.pid_file.unlink(missing_ok=True)
        return self.status()

    def status(self) -> ServiceStatus:
        pid = self._pid()
        state = STOPPED if pid is None else RUNNING if self._answers() else UNHEALTHY
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
            raise ServiceStartError("redis: expected a stopped server before wiping, it runs")
        shutil.rmtree(self.root, ignore_errors=True)

    def _start(self) -> int:
        binary = shutil.which("redis-server")
        if binary is None:
            raise MissingBinaryError(
                "redis: expected `redis-server` on PATH, found none; run `make apt` "
                "(installs the Debian package redis-server)"
            )
        if process.port_open(self.cfg.host, self.cfg.redis_port):
            raise PortInUseError(
                f"redis: expected {self.cfg.host}:{self.cfg.redis_port} to be free, but "
                f"{process.describe_port_holder(self.cfg.host, self.cfg.redis_port)}; stop it "
                "or set LOOPLINE_SERVICES_REDIS_PORT"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [
            binary,
            "--bind", self.cfg.host,
            "--port", str(self.cfg.redis_port),
            "--protected-mode", "yes",
            "--dir", str(self.root),
            "--logfile", str(self.log_file),
            # Online features are rebuilt from Kafka; disk snapshots would only cost I/O.
            "--save", "",
            "--appendonly", "no",
            "--maxmemory", self.cfg.redis_maxmemory,
            # Fail writes loudly when full rather than silently evicting feature values.
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        pid = process.spawn_detached(cmd, log_file=self.root / "stdout.log", cwd=self.root)
        process.write_pid(self.pid_file, pid)
        return pid

    def _pid(self) -> int | None:
        pid = process.read_pid(self.pid_file)
        marker = f":{self.cfg.redis_port}"  # redis-server shows "redis-server 127.0.0.1:6379"
        if pid is not None and process.is_alive(pid, marker=marker):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.cfg.host, self.cfg.redis_port), timeout=1) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False
