"""A deterministic event stream for the reliability tests, and what an undisturbed run yields.

`build()` makes served slates and the interactions they cause (clicks, views, purchases),
organic traffic and interactions for requests that were never served, all in event-time order
on one partition per topic, so nothing is late and every outcome is known in advance:

* counts per bucket (joined serving / interactions, unmatched, late, dead-lettered);
* one labelled impression per (request_id, item_id), with its labels;
* the final online feature values per entity — computed with the job's own pure transforms
  (jobs/transforms/features.py) over the accepted events, i.e. the result of an undisturbed
  run, without Flink. Valid as long as the stream's event time spans less than the 1 h
  window (no decay fires) and the run ends with end-of-input semantics (bounded, or a
  stop --drain), which is how every test here ends.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from jobs.config import JobConfig
from jobs.transforms.features import final_values
from jobs.transforms.records import INTERACTION, SERVING, Envelope

MIN = 60_000
SLATE_SIZE = 3


def hour_aligned_past(hours_back: int = 3) -> int:
    """An hour-aligned epoch ms a few hours back (Kafka 4 refuses timestamps > 1 h ahead)."""
    return (int(time.time() * 1000) // 3_600_000 - hours_back) * 3_600_000


@dataclass
class Workload:
    """Input events in partition order plus the outcome of an undisturbed run."""

    serving: list[dict[str, Any]]
    interactions: list[dict[str, Any]]
    maturity_ms: int
    expected_labels: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    joined_interactions: int = 0
    unmatched: int = 0

    @property
    def input(self) -> int:
        return len(self.serving) + len(self.interactions)

    def expected_counts(self, late: int = 0, dead_lettered: int = 0, extra_input: int = 0
                        ) -> dict[str, Any]:
        """reconcile(...).as_dict() of a run over this workload (+ planted bad records)."""
        joined = len(self.serving) + self.joined_interactions
        return {
            "input": self.input + extra_input,
            "joined_serving": len(self.serving),
            "joined_interactions": self.joined_interactions,
            "joined_feature_logs": 0,  # the workload has no FeatureLogs (serving's vectors)
            "joined": joined,
            "unmatched": self.unmatched,
            "late": late,
            "dead_lettered": dead_lettered,
            "balanced": self.input + extra_input == joined + self.unmatched + late + dead_lettered,
        }

    @property
    def users(self) -> list[str]:
        return sorted({e["user_id"] for e in (*self.serving, *self.interactions)})

    @property
    def items(self) -> list[str]:
        slate_items = {i["item_id"] for e in self.serving for i in e["slate"]}
        return sorted(slate_items | {e["item_id"] for e in self.interactions})

    def expected_features(self, job: JobConfig) -> dict[str, dict[str, dict[str, Any]]]:
        """{view: {entity_id: {feature: value}}} an undisturbed run leaves online."""
        return reference_features(
            [Envelope(SERVING, e, b"", "serving", 0, i) for i, e in enumerate(self.serving)]
            + [Envelope(INTERACTION, e, b"", "interactions", 0, i)
               for i, e in enumerate(self.interactions)],
            job,
        )


def reference_features(accepted: Iterable[Envelope], job: JobConfig
                       ) -> dict[str, dict[str, dict[str, Any]]]:
    """Final feature values of every entity after `accepted` events, no decay (the features'
    Python definition, jobs/transforms/features.py)."""
    return final_values(accepted, job.position_bias_eta, job.last_clicked_n)


def _serving(rid: str, t: int, user: str, items: list[str]) -> dict[str, Any]:
    return {"request_id": rid, "event_time": t, "user_id": user, "session_id": f"s-{user}",
            "model_version": "v1", "arm": "control", "policy": "softmax(t=1)", "fallback": False,
            "slate": [{"item_id": item, "position": p, "score": round(1.0 - p / 10, 3),
                       "propensity": 0.5} for p, item in enumerate(items)]}


def interaction(eid: str, t: int, user: str, item: str, kind: str = "click",
                rid: str | None = None, revenue: float = 0.0,
                dwell: int | None = None) -> dict[str, Any]:
    return {"event_id": eid, "event_time": t, "user_id": user, "session_id": f"s-{user}",
            "request_id": rid, "item_id": item, "type": kind, "revenue": revenue,
            "dwell_ms": dwell, "position": None}


def build(n_requests: int, t0: int, span_ms: int = 20 * MIN, maturity_ms: int = 2 * MIN,
          seed: int = 7, users: int = 60, items: int = 40, prefix: str = "r") -> Workload:
    """`n_requests` slates over `span_ms` of event time from `t0`, with their interactions.

    Per request: a click on a slate item (40 %), a view with dwell time (15 %), a purchase
    (10 %), an organic click of the same user (5 %) and a click on a request that was never
    served (2 %). Every attributed interaction falls strictly inside the maturity window.
    """
    if span_ms >= 50 * MIN:
        raise ValueError("keep the stream's event time under the 1 h window (no decay)")
    rng = random.Random(seed)
    pool = [f"item-{k:03d}" for k in range(items)]
    serving, acts = [], []
    labels: dict[tuple[str, str], dict[str, Any]] = {}
    joined = unmatched = 0
    step = span_ms / n_requests
    for i in range(n_requests):
        rid, served = f"{prefix}{i:05d}", t0 + math.floor(i * step)
        user = f"user-{rng.randrange(users):03d}"
        slate = rng.sample(pool, SLATE_SIZE)
        serving.append(_serving(rid, served, user, slate))
        for item in slate:
            labels[(rid, item)] = {"clicked": False, "purchased": False, "revenue": 0.0,
                                   "dwell_ms": 0, "interaction_count": 0}

        def within() -> int:
            return served + rng.randrange(1_000, maturity_ms - 1_000)  # noqa: B023

        if rng.random() < 0.40:
            item = rng.choice(slate)
            acts.append(interaction(f"{rid}-c", within(), user, item, "click", rid))
            labels[(rid, item)]["clicked"] = True
            labels[(rid, item)]["interaction_count"] += 1
            joined += 1
        if rng.random() < 0.15:
            item, dwell = rng.choice(slate), rng.randrange(500, 30_000)
            acts.append(interaction(f"{rid}-v", within(), user, item, "view", rid, dwell=dwell))
            labels[(rid, item)]["dwell_ms"] += dwell
            labels[(rid, item)]["interaction_count"] += 1
            joined += 1
        if rng.random() < 0.10:
            item, revenue = rng.choice(slate), round(rng.uniform(5, 120), 2)
            acts.append(interaction(f"{rid}-p", within(), user, item, "purchase", rid,
                                    revenue=revenue))
            labels[(rid, item)]["purchased"] = True
            labels[(rid, item)]["revenue"] += revenue
            labels[(rid, item)]["interaction_count"] += 1
            joined += 1
        if rng.random() < 0.05:
            acts.append(interaction(f"{rid}-o", within(), user, rng.choice(pool), "click"))
            unmatched += 1  # organic
        if rng.random() < 0.02:
            acts.append(interaction(f"{rid}-x", within(), user, rng.choice(pool), "click",
                                    f"never-served-{rid}"))
            unmatched += 1  # no impression
    acts.sort(key=lambda e: (e["event_time"], e["event_id"]))
    return Workload(serving, acts, maturity_ms, labels, joined, unmatched)


def labelled_row_labels(row: dict[str, Any]) -> dict[str, Any]:
    """The label part of a labelled impression, comparable with Workload.expected_labels."""
    return {"clicked": bool(row["clicked"]), "purchased": bool(row["purchased"]),
            "revenue": round(float(row["revenue"]), 6), "dwell_ms": int(row["dwell_ms"] or 0),
            "interaction_count": int(row["interaction_count"])}


def expected_label_rows(workload: Workload) -> dict[tuple[str, str], dict[str, Any]]:
    return {k: {**v, "revenue": round(v["revenue"], 6)}
            for k, v in workload.expected_labels.items()}
