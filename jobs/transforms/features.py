"""The streaming features' definition, in Python: what the JVM operator computes, stated as a
brute force over the events at or before a time. Tests and benchmarks check the job against
it; nothing on the job's hot path calls it.

Counters live in event-time buckets (1 min for the 1 h window, 15 min for the 24 h window); a
value at time `at` counts every bucket any part of which lies in (at - window, at], from the
events at or before `at`: exact up to one bucket at the old edge of the window. Sums are over
integers (revenue in micro-units, impressions per slate position), so no value depends on the
order events arrived in. The last-clicked list holds distinct items whose newest click is
still inside the 24 h window, newest first (ties by item id, descending).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

from feature_repo import names
from jobs.transforms.records import INTERACTION, SERVING, Envelope

USER = "u"
ITEM = "i"

# (window name, window ms, bucket ms)
WINDOWS = (("1h", 3_600_000, 60_000), ("24h", 86_400_000, 900_000))
CLICK_WINDOW = WINDOWS[1]


class FeatureEvent(NamedTuple):
    """One contribution of one accepted input event to one entity's counters."""

    kind: str  # USER or ITEM
    entity_id: str
    ts: int
    impressions: int = 0
    clicks: int = 0
    purchases: int = 0
    add_to_cart: int = 0
    revenue_micros: int = 0
    position: int = -1  # slate position of an item impression
    clicked_item: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.entity_id}"


def examination(position: int, eta: float) -> float:
    """Position-based model: chance a user looks at slot `position` (0-based). For eta = 1 a
    plain division, so Java and Python agree to the last bit."""
    return 1.0 / (1.0 + position) if eta == 1.0 else float((1.0 + position) ** -eta)


def micros(amount: float) -> int:
    """Revenue in integer micro-units (as Java's Math.round(amount * 1e6))."""
    return math.floor(amount * 1_000_000.0 + 0.5)


def feature_events(env: Envelope, eta: float = 1.0) -> list[FeatureEvent]:
    """Split a valid input event into per-entity contributions."""
    event, ts = env.event, env.event_time
    if env.kind == SERVING:
        slate = event["slate"]
        out = [FeatureEvent(USER, event["user_id"], ts, impressions=len(slate))]
        out += [FeatureEvent(ITEM, item["item_id"], ts, impressions=1, position=item["position"])
                for item in slate]
        return out
    if env.kind != INTERACTION:
        return []
    kind, user, item = event["type"], event["user_id"], event["item_id"]
    if kind == "click":
        return [FeatureEvent(USER, user, ts, clicks=1, clicked_item=item),
                FeatureEvent(ITEM, item, ts, clicks=1)]
    if kind == "purchase":
        revenue = micros(float(event.get("revenue") or 0.0))
        return [FeatureEvent(USER, user, ts, purchases=1, revenue_micros=revenue),
                FeatureEvent(ITEM, item, ts, purchases=1)]
    if kind == "add_to_cart":
        return [FeatureEvent(ITEM, item, ts, add_to_cart=1)]
    return []  # views feed labels (dwell), not these counters


def _counts(start: int, bucket_ms: int, window_ms: int, at_ms: int) -> bool:
    return start <= at_ms and start + bucket_ms > at_ms - window_ms


def values_at(kind: str, events: Iterable[FeatureEvent], at_ms: int, eta: float = 1.0,
              last_clicked_n: int = 10) -> dict[str, Any]:
    """Feature values of one entity at `at_ms`, from its events (any order; those after
    `at_ms` are ignored). Named as feature_repo/names.py."""
    seen = [e for e in events if e.ts <= at_ms]
    values: dict[str, Any] = {}
    for name, window_ms, bucket_ms in WINDOWS:
        live = [e for e in seen if _counts(e.ts - e.ts % bucket_ms, bucket_ms, window_ms, at_ms)]
        impressions = sum(e.impressions for e in live)
        clicks = sum(e.clicks for e in live)
        purchases = sum(e.purchases for e in live)
        if kind == USER:
            values[f"user_impressions_{name}"] = impressions
            values[f"user_clicks_{name}"] = clicks
            values[f"user_purchases_{name}"] = purchases
            values[f"user_revenue_{name}"] = sum(e.revenue_micros for e in live) / 1_000_000
            continue
        by_position: dict[int, int] = {}
        for e in live:
            if e.position >= 0 and e.impressions:
                by_position[e.position] = by_position.get(e.position, 0) + e.impressions
        expected = 0.0
        for position in sorted(by_position):
            expected += by_position[position] * examination(position, eta)
        values[f"item_impressions_{name}"] = impressions
        values[f"item_clicks_{name}"] = clicks
        values[f"item_add_to_cart_{name}"] = sum(e.add_to_cart for e in live)
        values[f"item_purchases_{name}"] = purchases
        values[f"item_ctr_{name}"] = clicks / impressions if impressions else 0.0
        values[f"item_purchase_rate_{name}"] = purchases / impressions if impressions else 0.0
        # Clicks over expected examinations: CTR as if every slot were looked at.
        values[f"item_debiased_ctr_{name}"] = clicks / expected if expected > 0 else 0.0
    if kind == USER:
        _, window_ms, bucket_ms = CLICK_WINDOW
        newest: dict[str, int] = {}
        for e in seen:
            if e.clicked_item is not None:
                newest[e.clicked_item] = max(e.ts, newest.get(e.clicked_item, e.ts))
        live_clicks = [(ts, item) for item, ts in newest.items()
                       if _counts(ts - ts % bucket_ms, bucket_ms, window_ms, at_ms)]
        live_clicks.sort(reverse=True)
        values["user_last_clicked"] = ",".join(item for _, item in live_clicks[:last_clicked_n])
    return values


def view_of(kind: str) -> str:
    return names.USER_ACTIVITY if kind == USER else names.ITEM_PERFORMANCE


def final_values(accepted: Iterable[Envelope], eta: float = 1.0, last_clicked_n: int = 10
                 ) -> dict[str, dict[str, dict[str, Any]]]:
    """{view: {entity: values}} at each entity's newest event: what a run leaves online when
    no decay fires (event time spanning less than a window, or ending at end of input)."""
    by_key: dict[str, list[FeatureEvent]] = {}
    for env in accepted:
        for event in feature_events(env, eta):
            by_key.setdefault(event.key, []).append(event)
    out: dict[str, dict[str, dict[str, Any]]] = {names.USER_ACTIVITY: {},
                                                   names.ITEM_PERFORMANCE: {}}
    for key, events in by_key.items():
        kind, entity = key.split(":", 1)
        latest = max(e.ts for e in events)
        out[view_of(kind)][entity] = values_at(kind, events, latest, eta, last_clicked_n)
    return out
