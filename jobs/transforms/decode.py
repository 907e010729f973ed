"""Decode and validate a source record: a valid Envelope, or a dead letter that says why."""

from __future__ import annotations

import math
from typing import Any

from jobs.transforms.records import INTERACTION, SERVING, Envelope, SourceRecord
from schemas.codec import INTERACTION_EVENT, SERVING_EVENT, Codec
from schemas.errors import DecodeError

INTERACTION_TYPES = ("view", "click", "add_to_cart", "purchase")


class Rejection:
    """Why a record could not be used, in the terms of the DeadLetter contract."""

    __slots__ = ("error_type", "fingerprint", "reason", "stage")

    def __init__(self, stage: str, error_type: str, reason: str, fingerprint: str | None) -> None:
        self.stage = stage
        self.error_type = error_type
        self.reason = reason
        self.fingerprint = fingerprint

    def __repr__(self) -> str:
        return f"Rejection({self.stage}, {self.error_type}: {self.reason})"


def _finite_non_negative(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def validate_serving(event: dict[str, Any]) -> str | None:
    """Semantic checks Avro cannot express; returns the reason for rejection, if any."""
    for key in ("request_id", "user_id", "model_version"):
        if not event.get(key):
            return f"ServingEvent.{key} must be non-empty"
    slate = event.get("slate") or []
    if not slate:
        return "ServingEvent.slate must hold at least one item"
    positions = [item["position"] for item in slate]
    if len(set(positions)) != len(positions) or min(positions) < 0:
        return f"ServingEvent.slate positions must be distinct and >= 0, got {positions}"
    items = [item["item_id"] for item in slate]
    if len(set(items)) != len(items):
        return "ServingEvent.slate lists an item more than once"
    for item in slate:
        p = item["propensity"]
        if not (isinstance(p, float) and math.isfinite(p) and 0.0 < p <= 1.0):
            return f"propensity of {item['item_id']} must be in (0, 1], got {p}"
        if not math.isfinite(item["score"]):
            return f"score of {item['item_id']} must be finite, got {item['score']}"
    return None


def validate_interaction(event: dict[str, Any]) -> str | None:
    kind = event.get("type")
    if kind not in INTERACTION_TYPES:
        return f"InteractionEvent.type must be one of {INTERACTION_TYPES}, got {kind!r}"
    for key in ("event_id", "user_id", "item_id"):
        if not event.get(key):
            return f"InteractionEvent.{key} must be non-empty"
    revenue = event.get("revenue", 0.0)
    if not _finite_non_negative(revenue):
        return f"InteractionEvent.revenue must be a finite number >= 0, got {revenue}"
    if revenue > 0 and kind != "purchase":
        return f"InteractionEvent.revenue is only for purchases, got {revenue} on a {kind}"
    dwell = event.get("dwell_ms")
    if dwell is not None and dwell < 0:
        return f"InteractionEvent.dwell_ms must be >= 0, got {dwell}"
    position = event.get("position")
    if position is not None and position < 0:
        return f"InteractionEvent.position must be >= 0, got {position}"
    return None


def decode_record(
    record: SourceRecord,
    codec: Codec,
    serving_topic: str,
    interactions_topic: str,
    now_ms: int,
    max_future_ms: int,
) -> Envelope | Rejection:
    """Turn one Kafka record into an Envelope, or say exactly why it is unusable."""
    if record.topic == serving_topic:
        kind, reader = SERVING, SERVING_EVENT
    elif record.topic == interactions_topic:
        kind, reader = INTERACTION, INTERACTION_EVENT
    else:
        return Rejection("decode", "UnexpectedTopic", f"no decoder for topic {record.topic}", None)
    try:
        writer, event = codec.decode(record.raw, reader)
    except DecodeError as exc:
        return Rejection("decode", type(exc).__name__, exc.reason, exc.fingerprint)
    fingerprint = writer.fingerprint_hex
    problem = validate_serving(event) if kind == SERVING else validate_interaction(event)
    if problem is None:
        event_time = event["event_time"]
        if event_time > now_ms + max_future_ms:
            problem = (
                f"event_time {event_time} is {(event_time - now_ms) // 1000} s in the future "
                f"(more than {max_future_ms // 1000} s ahead of the clock)"
            )
        elif record.kafka_ts is not None and record.kafka_ts != event_time:
            problem = (
                f"event_time {event_time} differs from the Kafka record timestamp "
                f"{record.kafka_ts}; producers must stamp records with the event time"
            )
    if problem is not None:
        return Rejection("validate", "InvalidEvent", problem, fingerprint)
    return Envelope(kind, event, record.raw, record.topic, record.partition, record.offset)


def is_late(partition_max_ms: int | None, event_ms: int, out_of_orderness_ms: int) -> bool:
    """Behind its partition's watermark (max event time seen there minus the bound).

    Deciding per source partition, in partition order, makes lateness deterministic and
    never looser than Flink's own watermark (the minimum over partitions), so an event that
    is not late here can never be behind the watermark of a downstream operator.
    """
    return partition_max_ms is not None and event_ms < partition_max_ms - out_of_orderness_ms
