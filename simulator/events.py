"""Event records in exactly the Avro contract shapes (schemas/avro/*.avsc, latest versions)."""

from __future__ import annotations

from typing import Any, NamedTuple

from simulator.policies import Slate

SERVING = "serving"
INTERACTION = "interaction"

VIEW, CLICK, ADD_TO_CART, PURCHASE = "view", "click", "add_to_cart", "purchase"


class Emitted(NamedTuple):
    """One simulated event: `kind` says which topic (SERVING or INTERACTION) it is for."""

    kind: str
    event: dict[str, Any]


def serving_event(request_id: str, event_time: int, user_id: str, session_id: str,
                  slate: Slate) -> dict[str, Any]:
    """io.loopline.events.ServingEvent."""
    return {
        "request_id": request_id,
        "event_time": event_time,
        "user_id": user_id,
        "session_id": session_id,
        "model_version": slate.model_version,
        "arm": slate.arm,
        "policy": slate.policy,
        "fallback": slate.fallback,
        "slate": [{"item_id": i.item_id, "position": i.position, "score": i.score,
                   "propensity": i.propensity} for i in slate.items],
    }


def interaction_event(event_id: str, event_time: int, user_id: str, session_id: str,
                      request_id: str | None, item_id: str, kind: str, revenue: float = 0.0,
                      dwell_ms: int | None = None, position: int | None = None,
                      ) -> dict[str, Any]:
    """io.loopline.events.InteractionEvent (revenue only on purchases)."""
    return {
        "event_id": event_id,
        "event_time": event_time,
        "user_id": user_id,
        "session_id": session_id,
        "request_id": request_id,
        "item_id": item_id,
        "type": kind,
        "revenue": revenue,
        "dwell_ms": dwell_ms,
        "position": position,
    }
