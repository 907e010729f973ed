"""Produce Loopline events to Kafka: the one way serving, the simulator and tests publish.

Every record is Avro single-object encoded with the codec, keyed, and stamped with its event
time as the Kafka record timestamp (the feedback job's event-time contract). Sends are
durable (acks=all, idempotent, bounded retries); a failed send raises instead of vanishing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from loopline.errors import LooplineError
from loopline.kafka import KafkaConfig
from schemas import topics
from schemas.codec import INTERACTION_EVENT, SERVING_EVENT, Codec, default_codec
from schemas.registry import SchemaRegistry


class ProduceError(LooplineError):
    """Kafka did not acknowledge a record."""


class EventProducer:
    """Thin, typed wrapper over KafkaProducer for the input contracts."""

    def __init__(self, kafka: KafkaConfig, codec: Codec | None = None,
                 registry: SchemaRegistry | None = None, **overrides: Any) -> None:
        """`registry`: publish each writer schema to the schemas topic before first use."""
        self.codec = codec or default_codec()
        self.registry = registry
        try:
            self._producer = KafkaProducer(**{**kafka.producer_kwargs(), **overrides})
        except KafkaError as exc:
            raise ProduceError(
                f"cannot connect to Kafka at {kafka.bootstrap_servers}: {exc}"
            ) from exc
        self._pending: list[Any] = []

    def send_raw(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        timestamp_ms: int | None = None,
        partition: int | None = None,
    ) -> None:
        self._pending.append(
            self._producer.send(
                topic, value=value, key=key, timestamp_ms=timestamp_ms, partition=partition
            )
        )

    def _encode(self, name: str, event: dict[str, Any], version: int | None) -> bytes:
        store = self.codec.store
        schema = store.latest(name) if version is None else store.version(name, version)
        if self.registry is not None:
            self.registry.publish(schema)
        return self.codec.encode_with(schema, event)

    def serving(
        self, event: dict[str, Any], topic: str = topics.SERVING, version: int | None = None
    ) -> None:
        self.send_raw(
            topic,
            self._encode(SERVING_EVENT, event, version),
            key=event["request_id"].encode(),
            timestamp_ms=event["event_time"],
        )

    def interaction(
        self, event: dict[str, Any], topic: str = topics.INTERACTIONS, version: int | None = None
    ) -> None:
        key = (event.get("request_id") or event["user_id"]).encode()
        self.send_raw(
            topic,
            self._encode(INTERACTION_EVENT, event, version),
            key=key,
            timestamp_ms=event["event_time"],
        )

    def send_all(
        self, serving: Iterable[dict[str, Any]] = (), interactions: Iterable[dict[str, Any]] = ()
    ) -> None:
        for event in serving:
            self.serving(event)
        for event in interactions:
            self.interaction(event)

    def flush(self, timeout_s: float = 60.0) -> int:
        """Wait for every pending send; raise on the first one Kafka refused."""
        self._producer.flush(timeout=timeout_s)
        pending, self._pending = self._pending, []
        for future in pending:
            try:
                future.get(timeout=timeout_s)
            except KafkaError as exc:
                raise ProduceError(f"Kafka refused a record: {type(exc).__name__}: {exc}") from exc
        return len(pending)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
