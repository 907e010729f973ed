"""Streaming features: event-time sliding windows per user and per item, refreshed per event.

Counters are kept in time buckets (1 min for the 1 h window, 15 min for the 24 h window), so a
value is exact up to one bucket of resolution at the old edge of the window. Values are
evaluated at the entity's newest event time, so out-of-order events update the right bucket
and the emitted timestamp never goes backwards for a key. Idle entities are re-evaluated
when their windows pass (decay), so a quiet item's 1 h clicks do drop to zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from feature_repo import names
from jobs.transforms.records import INTERACTION, SERVING, Envelope, FeatureRow

USER = "u"
ITEM = "i"

# (window name, window ms, bucket ms)
_WINDOWS = (("1h", 3_600_000, 60_000), ("24h", 86_400_000, 900_000))

USER_FIELDS = ("impressions", "clicks", "purchases", "revenue")
ITEM_FIELDS = ("impressions", "clicks", "add_to_cart", "purchases", "expected_clicks")


def examination(position: int, eta: float) -> float:
    """Position-based model: chance a user looks at slot `position` (0-based)."""
    return float((1.0 + position) ** -eta)


class FeatureEvent(NamedTuple):
    """One contribution to one entity's counters."""

    kind: str  # USER or ITEM
    entity_id: str
    ts: int
    deltas: dict[str, float]
    clicked_item: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.entity_id}"


def feature_events(env: Envelope, eta: float) -> list[FeatureEvent]:
    """Split a valid input event into per-entity counter deltas."""
    event, ts = env.event, env.event_time
    if env.kind == SERVING:
        slate = event["slate"]
        out = [FeatureEvent(USER, event["user_id"], ts, {"impressions": float(len(slate))})]
        for item in slate:
            out.append(
                FeatureEvent(
                    ITEM,
                    item["item_id"],
                    ts,
                    {"impressions": 1.0, "expected_clicks": examination(item["position"], eta)},
                )
            )
        return out
    if env.kind != INTERACTION:
        return []
    kind, user, item = event["type"], event["user_id"], event["item_id"]
    if kind == "click":
        return [
            FeatureEvent(USER, user, ts, {"clicks": 1.0}, clicked_item=item),
            FeatureEvent(ITEM, item, ts, {"clicks": 1.0}),
        ]
    if kind == "purchase":
        revenue = float(event.get("revenue") or 0.0)
        return [
            FeatureEvent(USER, user, ts, {"purchases": 1.0, "revenue": revenue}),
            FeatureEvent(ITEM, item, ts, {"purchases": 1.0}),
        ]
    if kind == "add_to_cart":
        return [FeatureEvent(ITEM, item, ts, {"add_to_cart": 1.0})]
    return []  # views feed labels (dwell), not these counters


@dataclass
class EntityState:
    """Bucketed counters of one entity, per window."""

    kind: str
    buckets: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    latest_ms: int = 0
    last_clicked: list[tuple[int, str]] = field(default_factory=list)


class FeatureAggregator:
    """Pure feature logic: apply deltas, evaluate windows, decide decay points."""

    def __init__(self, last_clicked_n: int) -> None:
        self.last_clicked_n = last_clicked_n

    @staticmethod
    def new_state(kind: str) -> EntityState:
        return EntityState(kind=kind, buckets={name: {} for name, _, _ in _WINDOWS})

    def apply(self, state: EntityState, event: FeatureEvent) -> None:
        _, _, ts, deltas, clicked_item = event
        for name, _, bucket_ms in _WINDOWS:
            bucket = state.buckets[name].setdefault(ts - ts % bucket_ms, {})
            for counter, delta in deltas.items():
                bucket[counter] = bucket.get(counter, 0.0) + delta
        if clicked_item is not None:
            # Distinct items, most recent click of each, newest last.
            kept = [(t, i) for t, i in state.last_clicked if i != clicked_item]
            newest = max([ts, *(t for t, i in state.last_clicked if i == clicked_item)])
            state.last_clicked = sorted([*kept, (newest, clicked_item)])[-self.last_clicked_n :]
        state.latest_ms = max(state.latest_ms, ts)
        self._evict(state, state.latest_ms)

    @staticmethod
    def _evict(state: EntityState, now_ms: int) -> None:
        for name, window_ms, bucket_ms in _WINDOWS:
            buckets = state.buckets[name]
            for start in [s for s in buckets if s + bucket_ms <= now_ms - window_ms]:
                del buckets[start]

    @staticmethod
    def _sums(
        state: EntityState, name: str, window_ms: int, bucket_ms: int, at_ms: int
    ) -> dict[str, float]:
        totals: dict[str, float] = {}
        for start, counters in state.buckets[name].items():
            # A bucket counts while any part of it lies in (at - window, at].
            if start + bucket_ms > at_ms - window_ms and start <= at_ms:
                for counter, value in counters.items():
                    totals[counter] = totals.get(counter, 0.0) + value
        return totals

    def evaluate(self, state: EntityState, entity_id: str, at_ms: int) -> FeatureRow:
        """Feature values of the entity as of `at_ms`."""
        values: dict[str, Any] = {}
        for name, window_ms, bucket_ms in _WINDOWS:
            s = self._sums(state, name, window_ms, bucket_ms, at_ms)
            if state.kind == USER:
                values[f"user_impressions_{name}"] = int(s.get("impressions", 0))
                values[f"user_clicks_{name}"] = int(s.get("clicks", 0))
                values[f"user_purchases_{name}"] = int(s.get("purchases", 0))
                values[f"user_revenue_{name}"] = round(s.get("revenue", 0.0), 6)
            else:
                impressions = s.get("impressions", 0.0)
                clicks = s.get("clicks", 0.0)
                expected = s.get("expected_clicks", 0.0)
                values[f"item_impressions_{name}"] = int(impressions)
                values[f"item_clicks_{name}"] = int(clicks)
                values[f"item_add_to_cart_{name}"] = int(s.get("add_to_cart", 0))
                values[f"item_purchases_{name}"] = int(s.get("purchases", 0))
                values[f"item_ctr_{name}"] = clicks / impressions if impressions else 0.0
                values[f"item_purchase_rate_{name}"] = (
                    s.get("purchases", 0.0) / impressions if impressions else 0.0
                )
                # Clicks over expected examinations: CTR as if every slot were looked at.
                values[f"item_debiased_ctr_{name}"] = clicks / expected if expected else 0.0
        if state.kind == USER:
            recent = [item for _, item in reversed(state.last_clicked)]
            values["user_last_clicked"] = ",".join(recent)
            view = names.USER_ACTIVITY
        else:
            view = names.ITEM_PERFORMANCE
        return FeatureRow(view, entity_id, at_ms, values)

    @staticmethod
    def decay_points(state: EntityState) -> list[int]:
        """When the entity's windows next change with no new events: re-evaluate then."""
        # The newest bucket leaves the window once `at - window` reaches its end.
        return [state.latest_ms - state.latest_ms % bucket_ms + bucket_ms + window_ms
                for _, window_ms, bucket_ms in _WINDOWS]

    def on_decay(
        self, state: EntityState, entity_id: str, at_ms: int
    ) -> tuple[FeatureRow | None, bool]:
        """(row to emit, whether the state can be dropped) for a decay timer at `at_ms`."""
        if at_ms not in self.decay_points(state):
            return None, False  # a stale timer from before a newer event
        self._evict(state, at_ms)
        row = self.evaluate(state, entity_id, at_ms)
        expired = all(not b for b in state.buckets.values())
        return row, expired
