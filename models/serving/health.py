"""What /healthz says, decided from counts alone (pure, so every rule is unit-tested).

Two kinds of trouble, answered differently on purpose:
* the ServingEvent log is at risk (too many undelivered, the oldest too old, events dropped or
  refused recently): status "degraded", HTTP 503 — impressions that never reach Kafka break
  the loop (no labels, no training data, no attribution), so a load balancer or an operator
  must notice;
* slates are not model-served (feature store circuit open or absent): status "fallback",
  HTTP 200 — serving popularity is the designed answer to a failing store, and taking every
  worker out of rotation for it would turn a degraded ranking into an outage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LogBounds:
    """The limits past which the ServingEvent log counts as at risk."""

    max_pending: int
    max_age_s: float
    loss_hold_s: float


def log_problems(events: dict[str, Any] | None, bounds: LogBounds) -> list[str]:
    """Reasons the ServingEvent log is at risk, from KafkaSink.stats() (None: logging off)."""
    if events is None:
        return []
    reasons = []
    if events["pending"] > bounds.max_pending:
        reasons.append(f"{events['pending']} ServingEvents undelivered "
                       f"(bound {bounds.max_pending})")
    if events["oldest_pending_s"] > bounds.max_age_s:
        reasons.append(f"oldest undelivered ServingEvent is {events['oldest_pending_s']:.1f} s "
                       f"old (bound {bounds.max_age_s:g} s)")
    since = events.get("last_loss_s_ago")
    if since is not None and since <= bounds.loss_hold_s:
        reasons.append(f"ServingEvents lost {since:.0f} s ago (dropped {events['dropped']}, "
                       f"refused by Kafka {events['failed']} since start)")
    if reasons and events.get("last_error"):
        reasons.append(f"last Kafka error: {events['last_error']}")
    return reasons


HTTP_CODE = {"ok": 200, "fallback": 200, "degraded": 503}


def status(log_reasons: list[str], feature_store: str) -> str:
    """The /healthz status word (its HTTP code: HTTP_CODE)."""
    if log_reasons:
        return "degraded"
    if feature_store != "ok":
        return "fallback"
    return "ok"
