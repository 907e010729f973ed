"""Builders of input events for job tests."""

from __future__ import annotations

from typing import Any

from jobs.transforms.records import INTERACTION, SERVING, Envelope
from schemas import topics

T0 = 1_767_261_600_000  # 2026-01-01T10:00:00Z


def serving(request_id: str, t: int, user: str = "u1", items: tuple[str, ...] = ("a", "b", "c"),
            version: str = "v1") -> dict[str, Any]:
    return {
        "request_id": request_id, "event_time": t, "user_id": user, "session_id": "s1",
        "model_version": version, "arm": "treatment", "policy": "softmax(t=1)",
        "fallback": False,
        "slate": [{"item_id": item, "position": i, "score": 1.0 - i / 10, "propensity": 0.5}
                  for i, item in enumerate(items)],
    }


def interaction(event_id: str, t: int, item: str, kind: str = "click",
                request_id: str | None = "r1", user: str = "u1",
                revenue: float = 0.0, dwell_ms: int | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id, "event_time": t, "user_id": user, "session_id": "s1",
        "request_id": request_id, "item_id": item, "type": kind, "revenue": revenue,
        "dwell_ms": dwell_ms, "position": None,
    }


def env(event: dict[str, Any], offset: int = 0) -> Envelope:
    kind = SERVING if "slate" in event else INTERACTION
    topic = topics.SERVING if kind == SERVING else topics.INTERACTIONS
    return Envelope(kind, event, b"raw", topic, 0, offset)
