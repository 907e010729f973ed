"""A single-node Apache Kafka 4.x broker in KRaft combined mode (broker + controller).

Runs `java -cp <jars>/kafka/* kafka.Kafka server.properties` from the Maven-resolved jars,
bound to loopback. On first start the data dir is formatted with
`kafka.tools.StorageTool format --standalone` (a single-voter dynamic quorum, the Kafka 4.x
way; `controller.quorum.bootstrap.servers` instead of the static `controller.quorum.voters`).
State lives in <home>/services/kafka: data/, logs/, server.properties, kafka.pid.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from infra import jars, process
from infra.config import ServicesConfig
from infra.errors import PortInUseError, ServiceStartError
from infra.java import java_binary
from infra.service import RUNNING, STOPPED, UNHEALTHY, ServiceStatus
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
NODE_ID = 1

_LOG4J2 = """\
# Written by infra/kafka_broker.py on every start; edit the template there instead.
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {logs}/server.log
appender.file.filePattern = {logs}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
# Per-request chatter of the embedded controller drowns the lines that explain a failure.
logger.controller.name = org.apache.kafka.controller
logger.controller.level = WARN
"""


@dataclass(frozen=True)
class SaslPlain:
    """SASL/PLAIN authentication on the client listener (SASL_PLAINTEXT on loopback).

    For testing that every client carries its credentials, not for transport security. The
    first user is also the broker's own (inter-broker) identity and `client_config()`'s.
    """

    users: Mapping[str, str]  # username -> password

    def __post_init__(self) -> None:
        if not self.users:
            raise ValueError("SaslPlain needs at least one user")
        for text in (*self.users, *self.users.values()):
            if any(c in text for c in '"\\;\n'):
                raise ValueError(f"SaslPlain: quotes, backslashes and ';' are not supported in "
                                 f"JAAS credentials, got {text!r}")

    @property
    def principal(self) -> tuple[str, str]:
        return next(iter(self.users.items()))

    def jaas(self) -> str:
        user, password = self.principal
        known = " ".join(f'user_{u}="{p}"' for u, p in self.users.items())
        return ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{user}" password="{password}" {known};')


class KafkaBroker:
    """The local broker under `paths.services / folder`, configured by `cfg`.

    `sasl` puts SASL/PLAIN on the client listener (a second, authenticated test broker lives
    in its own folder, e.g. "kafka-sasl").
    """

    name = "kafka"

    def __init__(self, cfg: ServicesConfig, paths: PathsConfig, sasl: SaslPlain | None = None,
                 folder: str = "kafka") -> None:
        self.cfg = cfg
        self.paths = paths
        self.sasl = sasl
        self.root = paths.services / folder
        self.data_dir = self.root / "data"
        self.log_dir = self.root / "logs"
        self.properties = self.root / "server.properties"
        self.pid_file = self.root / "kafka.pid"

    # -- addresses -------------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        return f"{self.cfg.host}:{self.cfg.kafka_port}"

    def client_config(self) -> KafkaConfig:
        """Client settings for this broker (PLAINTEXT on loopback, or SASL/PLAIN with `sasl`)."""
        if self.sasl is None:
            return KafkaConfig(bootstrap_servers=self.bootstrap_servers)
        user, password = self.sasl.principal
        return KafkaConfig(bootstrap_servers=self.bootstrap_servers,
                           security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                           sasl_username=user, sasl_password=password)

    # -- lifecycle -------------------------------------------------------------------------
    def up(self) -> ServiceStatus:
        with process.locked(self.root / ".lock"):
            pid = self._pid()
            if pid is not None:
                if self._wait_ready(pid, self.cfg.start_timeout_s):
                    return self.status()
                raise ServiceStartError(
                    f"kafka: pid {pid} runs but the broker does not answer on "
                    f"{self.bootstrap_servers} after {self.cfg.start_timeout_s:.0f}s; "
                    f"`loopline infra down kafka` then up again (log: {self.log_dir})",
                    details=self._log_tail(),
                )
            self._check_ports_free()
            java = java_binary()
            classpath = jars.kafka_classpath(self.paths)
            self._write_config()
            self._format_storage(java, classpath)
            pid = process.spawn_detached(
                [
                    str(java),
                    f"-Xmx{self.cfg.kafka_heap}",
                    f"-Xms{self.cfg.kafka_heap}",
                    "-Djava.awt.headless=true",
                    f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
                    f"-Dkafka.logs.dir={self.log_dir}",
                    "-cp",
                    classpath,
                    MAIN_CLASS,
                    str(self.properties),
                ],
                log_file=self.log_dir / "stdout.log",
                cwd=self.root,
            )
            process.write_pid(self.pid_file, pid)
            if not self._wait_ready(pid, self.cfg.start_timeout_s):
                alive = process.is_alive(pid)
                with contextlib.suppress(Exception):
                    process.terminate([pid], 10.0, "kafka")
                self.pid_file.unlink(missing_ok=True)
                raise ServiceStartError(
                    f"kafka: expected the broker to answer on {self.bootstrap_servers} within "
                    f"{self.cfg.start_timeout_s:.0f}s, but it "
                    f"{'did not' if alive else 'exited'} (log: {self.log_dir / 'server.log'})",
                    details=self._log_tail(),
                )
            return self.status()

    def down(self) -> ServiceStatus:
        with process.locked(self.root / ".lock"):
            pid = self._pid()
            if pid is not None:
                # A clean SIGTERM shutdown flushes logs and skips recovery on the next start.
                process.terminate([pid], self.cfg.stop_timeout_s, "kafka")
            self.pid_file.unlink(missing_ok=True)
        return self.status(probe=False)

    def status(self, probe: bool = True) -> ServiceStatus:
        pid = self._pid()
        endpoints = {
            "bootstrap": self.bootstrap_servers,
            "controller": f"{self.cfg.host}:{self.cfg.kafka_controller_port}",
        }
        pids: tuple[int, ...] = ()
        if pid is None:
            state = STOPPED
        else:
            healthy = not probe or self._answers(timeout_ms=3000)
            state, pids = (RUNNING if healthy else UNHEALTHY), (pid,)
        return ServiceStatus(
            name=self.name,
            state=state,
            pids=pids,
            endpoints=endpoints,
            data_dir=str(self.data_dir),
            log=str(self.log_dir / "server.log"),
        )

    def wipe(self) -> None:
        if self._pid() is not None:
            raise ServiceStartError("kafka: expected a stopped broker before wiping, it runs")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- internals -------------------------------------------------------------------------
    def _pid(self) -> int | None:
        """The broker pid if our broker (this server.properties) is alive; clears stale files."""
        pid = process.read_pid(self.pid_file)
        if pid is not None and process.is_alive(pid, marker=str(self.properties)):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def _check_ports_free(self) -> None:
        for port in (self.cfg.kafka_port, self.cfg.kafka_controller_port):
            if process.port_open(self.cfg.host, port):
                raise PortInUseError(
                    f"kafka: expected {self.cfg.host}:{port} to be free for the broker, but "
                    f"{process.describe_port_holder(self.cfg.host, port)}; stop it or set "
                    "LOOPLINE_SERVICES_KAFKA_PORT / LOOPLINE_SERVICES_KAFKA_CONTROLLER_PORT"
                )

    def _write_config(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties.write_text(render_properties(self.cfg, self.data_dir, self.sasl))
        (self.root / "log4j2.properties").write_text(_LOG4J2.format(logs=self.log_dir))

    def _format_storage(self, java: Path, classpath: str) -> None:
        """Format the data dir once (KRaft refuses to start on an unformatted log dir)."""
        if (self.data_dir / "meta.properties").exists():
            return
        cmd = [
            str(java),
            "-Xmx256m",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            "-cp",
            classpath,
            STORAGE_TOOL,
            "format",
            "--standalone",
            "--cluster-id",
            new_cluster_id(),
            "--config",
            str(self.properties),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            output = (out.stderr or out.stdout).strip()
            raise ServiceStartError(
                f"kafka: formatting {self.data_dir} failed (exit {out.returncode}): "
                f"{output.splitlines()[-1] if output else 'no output'}",
                details=output,
            )

    def _wait_ready(self, pid: int, timeout_s: float) -> bool:
        def ready() -> bool:
            return process.port_open(self.cfg.host, self.cfg.kafka_port) and self._answers(2000)

        return process.wait_until(ready, timeout_s, lambda: process.is_alive(pid), 0.5)

    def _answers(self, timeout_ms: int) -> bool:
        """True when the broker serves metadata and is registered, unfenced, with itself."""
        from kafka import KafkaAdminClient  # deferred: kafka-python is slow-ish to import
        from kafka.errors import KafkaConfigurationError, KafkaError

        try:
            with _quiet_kafka_logs():
                admin = KafkaAdminClient(
                    **{**self.client_config().client_kwargs(), "request_timeout_ms": timeout_ms},
                    client_id="loopline-infra-probe",
                )
                try:
                    cluster = admin.describe_cluster()
                finally:
                    admin.close()
        except KafkaConfigurationError:
            raise  # our bug, not a broker that is still starting
        except (KafkaError, OSError, ValueError):  # any of these means "not ready yet"
            return False
        return any(not b.get("is_fenced", False) for b in cluster.get("brokers", []))

    def _log_tail(self) -> str:
        return process.tail(self.log_dir / "server.log") or process.tail(
            self.log_dir / "stdout.log"
        )


def render_properties(cfg: ServicesConfig, data_dir: Path, sasl: SaslPlain | None = None) -> str:
    """server.properties for a combined broker+controller on loopback."""
    host, port, cport = cfg.host, cfg.kafka_port, cfg.kafka_controller_port
    client = "PLAINTEXT" if sasl is None else "SASL_PLAINTEXT"
    lines = [
        "# Written by infra/kafka_broker.py on every start; change ServicesConfig instead.",
        "process.roles=broker,controller",
        f"node.id={NODE_ID}",
        f"controller.quorum.bootstrap.servers={host}:{cport}",
        f"listeners={client}://{host}:{port},CONTROLLER://{host}:{cport}",
        f"advertised.listeners={client}://{host}:{port},CONTROLLER://{host}:{cport}",
        f"inter.broker.listener.name={client}",
        "controller.listener.names=CONTROLLER",
        f"listener.security.protocol.map=CONTROLLER:PLAINTEXT,{client}:{client}",
        f"log.dirs={data_dir}",
        # The Flink job takes event time from the record timestamp: keep the producer's.
        "log.message.timestamp.type=CreateTime",
        # Old event times (replays, simulations) must not trigger time-based deletion.
        f"log.retention.ms={cfg.kafka_retention_ms}",
        f"log.retention.bytes={cfg.kafka_retention_bytes}",
        f"auto.create.topics.enable={'true' if cfg.kafka_auto_create_topics else 'false'}",
        "num.partitions=1",
        # One node: internal topics cannot be replicated; few partitions keep startup cheap.
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=4",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "share.coordinator.state.topic.num.partitions=4",
        "group.initial.rebalance.delay.ms=0",
        # 2 shared cores: fewer threads than the defaults (3 network, 8 io).
        "num.network.threads=2",
        "num.io.threads=2",
    ]
    if sasl is not None:
        lines += [
            "sasl.enabled.mechanisms=PLAIN",
            "sasl.mechanism.inter.broker.protocol=PLAIN",
            f"listener.name.sasl_plaintext.plain.sasl.jaas.config={sasl.jaas()}",
        ]
    return "\n".join([*lines, ""])


def new_cluster_id() -> str:
    """A random KRaft cluster id (URL-safe base64 of 16 bytes, as `kafka-storage random-uuid`)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka rejects ids that look like a CLI flag
            return text


@contextlib.contextmanager
def _quiet_kafka_logs() -> Iterator[None]:
    """kafka-python logs every refused connection; during a readiness poll that is noise."""
    logger = logging.getLogger("kafka")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)
