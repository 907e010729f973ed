"""The small record types that flow between the job's operators."""

from __future__ import annotations

from typing import Any, NamedTuple

SERVING = "serving"
INTERACTION = "interaction"


class SourceRecord(NamedTuple):
    """One Kafka record as read: value bytes plus where it came from."""

    raw: bytes
    topic: str
    partition: int
    offset: int
    kafka_ts: int | None  # Kafka record timestamp (epoch ms): the event time by contract


class Envelope(NamedTuple):
    """A decoded, valid input event with its source coordinates."""

    kind: str  # SERVING or INTERACTION
    event: dict[str, Any]
    raw: bytes
    topic: str
    partition: int
    offset: int

    @property
    def event_time(self) -> int:
        return int(self.event["event_time"])

    @property
    def join_key(self) -> str:
        """Serving events and the interactions they caused meet under the request id."""
        if self.kind == SERVING:
            return str(self.event["request_id"])
        return str(self.event.get("request_id") or f"organic:{self.event['event_id']}")


class SinkRecord(NamedTuple):
    """A value bound for a Kafka topic (key, Avro bytes, topic, record timestamp)."""

    key: bytes | None
    value: bytes
    topic: str
    timestamp_ms: int | None
