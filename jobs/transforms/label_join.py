"""The label join: each served slate meets the interactions it caused within a maturity window.

State is per request id. A serving event opens the request and schedules its close at
served_at + window; interactions for the same request are matched to a slate item while the
request is open (or wait for the serving event if they arrive first). At close every slate
item becomes one LabelledImpression, positive or negative. Every input ends in one place:

* serving event  → joined (labelled at close) or a duplicate (dead-lettered);
* interaction    → joined (counted on its impression), unmatched (organic, no impression,
                   outside the window, item not in the slate) or a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.transforms.records import INTERACTION, SERVING, Envelope
from jobs.transforms.slices import REFS_FIELD

# Reasons an interaction ends up unmatched.
ORGANIC = "organic"
NO_IMPRESSION = "no_impression"
OUTSIDE_WINDOW = "outside_window"
ITEM_NOT_IN_SLATE = "item_not_in_slate"


@dataclass
class Outcome:
    clicked: bool = False
    added_to_cart: bool = False
    purchased: bool = False
    revenue: float = 0.0
    dwell_ms: int = 0
    interactions: int = 0
    refs: list[tuple[str, int, int]] = field(default_factory=list)

    def add(self, env: Envelope) -> None:
        event = env.event
        kind = event["type"]
        self.interactions += 1
        self.refs.append((env.topic, env.partition, env.offset))
        if kind == "click":
            self.clicked = True
        elif kind == "add_to_cart":
            self.added_to_cart = True
        elif kind == "purchase":
            self.purchased = True
            self.revenue += float(event.get("revenue") or 0.0)
        elif kind == "view":
            self.dwell_ms += int(event.get("dwell_ms") or 0)


@dataclass
class RequestState:
    serving: Envelope | None = None
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    pending: list[Envelope] = field(default_factory=list)
    seen_event_ids: set[str] = field(default_factory=set)
    closed_at: int | None = None

    @property
    def empty(self) -> bool:
        return self.serving is None and not self.pending and self.closed_at is None


@dataclass
class JoinOutput:
    """What one step of the join produced; the Flink edge turns it into emits and timers."""

    labelled: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[tuple[Envelope, str]] = field(default_factory=list)
    duplicates: list[Envelope] = field(default_factory=list)
    accepted: list[Envelope] = field(default_factory=list)  # first sightings: feed features
    timers: list[int] = field(default_factory=list)
    joined_interactions: int = 0
    joined_serving: int = 0
    clear: bool = False


class LabelJoin:
    """Pure state transitions of the join (window and retention in event-time ms)."""

    def __init__(self, window_ms: int, closed_ttl_ms: int) -> None:
        self.window_ms = window_ms
        self.closed_ttl_ms = closed_ttl_ms

    def on_event(self, state: RequestState, env: Envelope) -> JoinOutput:
        out = JoinOutput()
        if env.kind == SERVING:
            self._serving(state, env, out)
        elif env.kind == INTERACTION:
            self._interaction(state, env, out)
        return out

    def _serving(self, state: RequestState, env: Envelope, out: JoinOutput) -> None:
        if state.serving is not None or state.closed_at is not None:
            out.duplicates.append(env)
            return
        state.serving = env
        out.accepted.append(env)
        out.timers.append(env.event_time + self.window_ms)
        waiting, state.pending = state.pending, []
        for interaction in sorted(waiting, key=lambda e: (e.event_time, e.offset)):
            self._match(state, interaction, out)

    def _interaction(self, state: RequestState, env: Envelope, out: JoinOutput) -> None:
        event_id = env.event["event_id"]
        if event_id in state.seen_event_ids:
            out.duplicates.append(env)
            return
        state.seen_event_ids.add(event_id)
        out.accepted.append(env)
        if not env.event.get("request_id"):
            out.unmatched.append((env, ORGANIC))
            # Its event id is remembered for the closed-request TTL (the key is the event id
            # itself): a redelivered organic interaction is a duplicate, not a second one.
            if state.serving is None and not state.pending and state.closed_at is None:
                state.closed_at = env.event_time
                out.timers.append(env.event_time + self.closed_ttl_ms)
            return
        if state.closed_at is not None:
            out.unmatched.append((env, OUTSIDE_WINDOW))
        elif state.serving is not None:
            self._match(state, env, out)
        else:
            state.pending.append(env)
            out.timers.append(env.event_time + self.window_ms)

    def _match(self, state: RequestState, env: Envelope, out: JoinOutput) -> None:
        assert state.serving is not None
        served_at = state.serving.event_time
        if not served_at <= env.event_time < served_at + self.window_ms:
            out.unmatched.append((env, OUTSIDE_WINDOW))
            return
        slate_items = {item["item_id"] for item in state.serving.event["slate"]}
        item_id = env.event["item_id"]
        if item_id not in slate_items:
            out.unmatched.append((env, ITEM_NOT_IN_SLATE))
            return
        state.outcomes.setdefault(item_id, Outcome()).add(env)
        out.joined_interactions += 1

    def on_timer(self, state: RequestState, timestamp: int, end_of_input: bool) -> JoinOutput:
        """Close a matured slate, expire waiting interactions, forget closed requests."""
        out = JoinOutput()
        serving = state.serving
        if (
            serving is not None
            and state.closed_at is None
            and (end_of_input or timestamp >= serving.event_time + self.window_ms)
        ):
            out.labelled = self._labels(serving, state.outcomes)
            out.joined_serving = 1
            state.closed_at = serving.event_time + self.window_ms
            state.outcomes = {}
            out.timers.append(state.closed_at + self.closed_ttl_ms)
        if state.serving is None:
            keep = []
            for env in state.pending:
                if end_of_input or timestamp >= env.event_time + self.window_ms:
                    out.unmatched.append((env, NO_IMPRESSION))
                else:
                    keep.append(env)
            state.pending = keep
            out.clear = not keep
        elif state.closed_at is not None and (
            end_of_input or timestamp >= state.closed_at + self.closed_ttl_ms
        ):
            out.clear = True
        return out

    def _labels(self, serving: Envelope, outcomes: dict[str, Outcome]) -> list[dict[str, Any]]:
        event = serving.event
        rows = []
        for item in sorted(event["slate"], key=lambda i: i["position"]):
            outcome = outcomes.get(item["item_id"], Outcome())
            rows.append(
                {
                    "request_id": event["request_id"],
                    "item_id": item["item_id"],
                    "user_id": event["user_id"],
                    "session_id": event["session_id"],
                    "model_version": event["model_version"],
                    "arm": event["arm"],
                    "policy": event["policy"],
                    "fallback": bool(event.get("fallback", False)),
                    "position": item["position"],
                    "score": item["score"],
                    "propensity": item["propensity"],
                    "served_at": event["event_time"],
                    "clicked": outcome.clicked,
                    "added_to_cart": outcome.added_to_cart,
                    "purchased": outcome.purchased,
                    "revenue": outcome.revenue,
                    "dwell_ms": outcome.dwell_ms,
                    "interaction_count": outcome.interactions,
                    "label_window_ms": self.window_ms,
                    "source_topic": serving.topic,
                    "source_partition": serving.partition,
                    "source_offset": serving.offset,
                    REFS_FIELD: [(serving.topic, serving.partition, serving.offset), *outcome.refs],
                }
            )
        return rows
