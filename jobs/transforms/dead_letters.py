"""Build DeadLetter envelopes: the raw bytes, where they came from and why they were set aside."""

from __future__ import annotations

from typing import Any

from jobs.transforms.records import SinkRecord
from schemas.codec import DEAD_LETTER, Codec


def dead_letter(
    raw: bytes,
    topic: str,
    partition: int,
    offset: int,
    kafka_ts: int | None,
    stage: str,
    error_type: str,
    reason: str,
    fingerprint: str | None,
    now_ms: int,
    run_id: str | None,
) -> dict[str, Any]:
    return {
        "raw": raw,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "kafka_timestamp": kafka_ts,
        "stage": stage,
        "error_type": error_type,
        "reason": reason,
        "schema_fingerprint": fingerprint,
        "failed_at": now_ms,
        "job_run_id": run_id,
    }


def to_sink(letter: dict[str, Any], codec: Codec, sink_topic: str) -> SinkRecord:
    """Key dead letters by their source coordinates so a replay overwrites, not duplicates."""
    key = f"{letter['topic']}/{letter['partition']}/{letter['offset']}".encode()
    return SinkRecord(key, codec.encode(DEAD_LETTER, letter), sink_topic, letter["kafka_timestamp"])
