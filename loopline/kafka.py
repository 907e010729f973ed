"""Kafka client settings shared by producers (serving, simulator), the Flink job and tools.

One frozen KafkaConfig carries the endpoint and security settings; it renders them for
kafka-python (`client_kwargs`) and for the Flink Kafka connector (`flink_properties`), so a
SASL/SSL setting reaches every client the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loopline import settings
from loopline.errors import ConfigError

_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_FLINK_KAFKA_SHADED = "org.apache.flink.kafka.shaded."  # flink-sql-connector-kafka relocation


@dataclass(frozen=True)
class KafkaConfig:
    """Where the brokers are and how to talk to them ([kafka] / LOOPLINE_KAFKA_*)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    # Producers wait for all in-sync replicas and retry idempotently: acknowledged = durable.
    producer_acks: str = "all"
    producer_retries: int = 10
    request_timeout_ms: int = 30000

    def __post_init__(self) -> None:
        if self.security_protocol not in _PROTOCOLS:
            raise ConfigError(
                f"kafka.security_protocol must be one of {_PROTOCOLS}, "
                f"got {self.security_protocol!r}"
            )
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password is not None
        ):
            raise ConfigError(
                "kafka.security_protocol "
                f"{self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password"
            )

    def client_kwargs(self) -> dict[str, Any]:
        """Connection and security keyword arguments for kafka-python clients."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        if self.ssl_cafile:
            kwargs["ssl_cafile"] = self.ssl_cafile
        return kwargs

    def producer_kwargs(self) -> dict[str, Any]:
        """kafka-python KafkaProducer arguments: durable, idempotent, bounded retries."""
        return {
            **self.client_kwargs(),
            "acks": self.producer_acks if self.producer_acks == "all" else int(self.producer_acks),
            "retries": self.producer_retries,
            "enable_idempotence": self.producer_acks == "all",
            "linger_ms": 5,
        }

    def flink_properties(self) -> dict[str, str]:
        """The same settings as Flink Kafka connector options ('properties.*')."""
        props = {
            "properties.bootstrap.servers": self.bootstrap_servers,
            "properties.security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            props["properties.sasl.mechanism"] = self.sasl_mechanism
            # The Flink SQL Kafka connector jar relocates the Kafka client: JAAS must name the
            # login module by its shaded class, or the job fails with "No LoginModule found".
            module = _FLINK_KAFKA_SHADED + (
                "org.apache.kafka.common.security.scram.ScramLoginModule"
                if self.sasl_mechanism.startswith("SCRAM")
                else "org.apache.kafka.common.security.plain.PlainLoginModule"
            )
            props["properties.sasl.jaas.config"] = (
                f'{module} required username="{_jaas_quoted(self.sasl_username)}" '
                f'password="{_jaas_quoted(self.sasl_password)}";'
            )
        if self.ssl_cafile:
            props["properties.ssl.truststore.type"] = "PEM"
            props["properties.ssl.truststore.location"] = self.ssl_cafile
        return props


def _jaas_quoted(value: str | None) -> str:
    """A value for inside a JAAS double-quoted string: backslashes and quotes escaped."""
    return (value or "").replace("\\", "\\\\").replace('"', '\\"')


def load_kafka(**overrides: object) -> KafkaConfig:
    return settings.load(KafkaConfig, "kafka", **overrides)
