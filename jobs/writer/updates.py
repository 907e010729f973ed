"""Decode and validate FeatureUpdate records: an Update, or a Rejection that says why."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol, cast

from feast.types import Float64, Int64, String

from feature_repo import definitions, names
from jobs.transforms.decode import Rejection
from schemas.codec import FEATURE_UPDATE, Codec
from schemas.errors import DecodeError


class KafkaRecord(Protocol):
    """What the writer reads of a consumed record (kafka-python's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class Update(NamedTuple):
    """One valid FeatureUpdate with the coordinates compaction and lineage need."""

    view: str
    entity_id: str
    event_ms: int
    values: dict[str, Any]
    partition: int
    offset: int
    job_run_id: str | None


class Rejected(NamedTuple):
    """A record the writer sets aside, with why (becomes a DeadLetter envelope)."""

    record: KafkaRecord
    why: Rejection


def _python_types() -> dict[str, dict[str, type]]:
    """Feature name → the Python type Feast accepts for it, per view (from the definitions)."""
    by_dtype: dict[str, type] = {str(Int64): int, str(Float64): float, str(String): str}
    out: dict[str, dict[str, type]] = {}
    for view in (definitions.user_activity, definitions.item_performance):
        out[view.name] = {f.name: by_dtype[str(f.dtype)] for f in view.features}
    return out


TYPES = _python_types()
FEATURE_SETS = {view: frozenset(features) for view, features in names.FEATURES_BY_VIEW.items()}


def value_problem(view: str, values: dict[str, Any]) -> str | None:
    """Why `values` cannot be written to `view` (exactly its features, typed), or None.

    Checked per record because one bad value would fail Feast's write of the whole batch, and
    a batch that can never be written would stall the writer: bad records must leave as data.
    """
    if values.keys() != FEATURE_SETS[view]:
        missing = sorted(FEATURE_SETS[view] - values.keys())
        extra = sorted(values.keys() - FEATURE_SETS[view])
        return f"values must name exactly the features of {view}: missing {missing}, " \
               f"unknown {extra}"
    types = TYPES[view]
    for name, value in values.items():
        wanted = types[name]
        if type(value) is wanted:  # what a decoded record holds: the checks below, short
            if wanted is float and not math.isfinite(cast(float, value)):
                return f"{name} must be finite, got {value}"
            continue
        if value is None:
            continue  # a feature with no value yet: Feast stores it as unset
        if wanted is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"{name} must be a number, got {type(value).__name__} {value!r}"
            if not math.isfinite(value):
                return f"{name} must be finite, got {value}"
        elif wanted is int:
            if isinstance(value, bool) or not isinstance(value, int):
                return f"{name} must be a long, got {type(value).__name__} {value!r}"
        elif not isinstance(value, str):
            return f"{name} must be a string, got {type(value).__name__} {value!r}"
    return None


def record_problem(record: KafkaRecord, event: dict[str, Any], now_ms: int,
                   max_future_ms: int) -> str | None:
    """Contract checks beyond the Avro schema: known view, key, timestamp, values."""
    view, entity_id, event_ms = event["view"], event["entity_id"], event["event_time"]
    if view not in FEATURE_SETS:
        return f"view must be one of {sorted(FEATURE_SETS)}, got {view!r}"
    if not entity_id:
        return "entity_id must be non-empty"
    expected_key = f"{view}:{entity_id}"
    key = record.key
    if key is None or key != expected_key.encode():
        got = "no key" if key is None else repr(bytes(key)[:80])
        return f"Kafka key must be {expected_key!r} (<view>:<entity_id>), got {got}"
    if event_ms <= 0:
        return f"event_time must be a positive epoch ms, got {event_ms}"
    if event_ms > now_ms + max_future_ms:
        return (f"event_time {event_ms} is {(event_ms - now_ms) // 1000} s in the future "
                f"(more than {max_future_ms // 1000} s ahead of the clock)")
    if record.timestamp != event_ms:
        return (f"event_time {event_ms} differs from the Kafka record timestamp "
                f"{record.timestamp}; producers must stamp records with the event time")
    return value_problem(view, event["values"])


def decode_batch(records: Iterable[KafkaRecord], codec: Codec, now_ms: int,
                 max_future_ms: int) -> tuple[list[Update], list[Rejected]]:
    """Every record ends as exactly one Update or one Rejected, in input order."""
    updates: list[Update] = []
    rejected: list[Rejected] = []
    decode = codec.decode
    for record in records:
        try:
            writer, event = decode(record.value or b"", FEATURE_UPDATE)
        except DecodeError as exc:
            rejected.append(Rejected(record, Rejection(
                "decode", type(exc).__name__, exc.reason, exc.fingerprint)))
            continue
        problem = record_problem(record, event, now_ms, max_future_ms)
        if problem is not None:
            rejected.append(Rejected(record, Rejection(
                "validate", "InvalidFeatureUpdate", problem, writer.fingerprint_hex)))
            continue
        updates.append(Update(event["view"], event["entity_id"], event["event_time"],
                              event["values"], record.partition, record.offset,
                              event.get("job_run_id")))
    return updates, rejected


def unknown_fingerprints(rejected: Sequence[Rejected]) -> set[str]:
    """Writer fingerprints the schema store did not know (a newer job's schema, maybe)."""
    return {r.why.fingerprint for r in rejected
            if r.why.error_type == "UnknownSchemaError" and r.why.fingerprint}
