"""FeatureUpdate records as the writer reads them from Kafka, for the writer's unit tests."""

from __future__ import annotations

from typing import Any, NamedTuple

from feature_repo import names
from schemas.codec import FEATURE_UPDATE, default_codec

T0 = 1_700_000_000_000
TOPIC = "loopline.features.updates"


class Rec(NamedTuple):
    """The fields of kafka-python's ConsumerRecord that the writer reads."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def values(view: str, n: int = 1) -> dict[str, Any]:
    """A complete, well-typed value map for `view` whose numbers all derive from `n`."""
    out: dict[str, Any] = {}
    for name in names.FEATURES_BY_VIEW[view]:
        if name == "user_last_clicked":
            out[name] = f"i{n}"
        elif any(k in name for k in ("ctr", "rate", "revenue")):
            out[name] = n / 10
        else:
            out[name] = n
    return out


def update(view: str, entity: str, event_ms: int, n: int = 1, run_id: str | None = "run-a"
           ) -> dict[str, Any]:
    return {"view": view, "entity_id": entity, "event_time": event_ms,
            "values": values(view, n), "job_run_id": run_id}


def rec(event: dict[str, Any], offset: int, partition: int = 0, key: bytes | None = None,
        timestamp: int | None = None) -> Rec:
    """Encoded as the job writes it: key <view>:<entity_id>, record timestamp = event time."""
    return Rec(TOPIC, partition, offset,
               event["event_time"] if timestamp is None else timestamp,
               f"{event['view']}:{event['entity_id']}".encode() if key is None else key,
               default_codec().encode(FEATURE_UPDATE, event))
