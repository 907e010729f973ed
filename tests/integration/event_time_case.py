"""A multi-hour event log for the event-time tests (backfill = stream, point-in-time truth).

Three hours of slates and the interactions they cause, with a quiet gap longer than the 1 h
window in the middle (so windows empty out and decay rows must appear), organic traffic and
a redelivered organic click. Outcomes are random and independent of everything a feature can
see, so a model on point-in-time features must not beat a coin (the planted-leak check).
"""

from __future__ import annotations

import random
import time
from typing import Any

import pandas as pd

from feature_repo import names
from jobs.config import JobConfig
from jobs.reconcile import read_topic
from jobs.transforms.records import INTERACTION, SERVING, Envelope
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from schemas.codec import FEATURE_UPDATE, LABELLED_IMPRESSION, default_codec

MIN = 60_000
HOUR = 60 * MIN
# Hour-aligned, far enough back that the whole log is in the past (brokers refuse the future).
T0 = (int(time.time() * 1000) // HOUR - 8) * HOUR
GAP = (T0 + 70 * MIN, T0 + 150 * MIN)  # nothing is served or done in here


def build(n_requests: int = 500, seed: int = 11) -> tuple[list[dict[str, Any]],
                                                          list[dict[str, Any]]]:
    """(serving events, interactions), each in event-time order."""
    rng = random.Random(seed)
    items = [f"it-{k:02d}" for k in range(30)]
    users = [f"us-{k:02d}" for k in range(40)]
    serving, acts = [], []
    times = sorted(rng.randrange(T0, T0 + 4 * HOUR) for _ in range(n_requests))
    times = [t for t in times if not GAP[0] <= t < GAP[1] - 10 * MIN]
    for i, t in enumerate(times):
        rid, user = f"req-{i:04d}", rng.choice(users)
        slate = rng.sample(items, 4)
        serving.append({"request_id": rid, "event_time": t, "user_id": user,
                        "session_id": f"s-{user}", "model_version": "v1", "arm": "control",
                        "policy": "uniform", "fallback": False,
                        "slate": [{"item_id": it, "position": p, "score": 0.5,
                                   "propensity": 0.25} for p, it in enumerate(slate)]})

        def act(suffix: str, kind: str, item: str, request: str | None = rid,
                revenue: float = 0.0, rid: str = rid, t: int = t, user: str = user
                ) -> dict[str, Any]:
            return {"event_id": f"{rid}-{suffix}", "event_time": t + rng.randrange(1, 9 * MIN),
                    "user_id": user, "session_id": f"s-{user}", "request_id": request,
                    "item_id": item, "type": kind, "revenue": revenue, "dwell_ms": None,
                    "position": None}

        if rng.random() < 0.35:
            acts.append(act("c", "click", rng.choice(slate)))
        if rng.random() < 0.10:
            acts.append(act("a", "add_to_cart", rng.choice(slate)))
        if rng.random() < 0.08:
            acts.append(act("p", "purchase", rng.choice(slate),
                            revenue=round(rng.uniform(1, 90), 2)))
        if rng.random() < 0.05:
            acts.append(act("o", "click", rng.choice(items), request=None))
    acts.sort(key=lambda e: (e["event_time"], e["event_id"]))
    organic = next(a for a in acts if a["request_id"] is None)
    acts.insert(acts.index(organic) + 1, dict(organic))  # redelivered: must count once
    return serving, acts


def accepted(serving: list[dict[str, Any]], acts: list[dict[str, Any]]) -> list[Envelope]:
    """The events the job accepts (the redelivered duplicate is not one)."""
    seen: set[str] = set()
    out = [Envelope(SERVING, e, b"", "s", 0, i) for i, e in enumerate(serving)]
    for i, a in enumerate(acts):
        if a["event_id"] not in seen:
            seen.add(a["event_id"])
            out.append(Envelope(INTERACTION, a, b"", "i", 0, i))
    return out


def labelled(kafka: KafkaConfig, job: JobConfig) -> dict[tuple[str, str], dict[str, Any]]:
    codec = default_codec()
    rows = {}
    for record in read_topic(kafka, job.labelled_topic):
        row = codec.decode(record.value, LABELLED_IMPRESSION)[1]
        rows[(row["request_id"], row["item_id"])] = row
    return rows


def online_updates(kafka: KafkaConfig, job: JobConfig) -> dict[tuple[str, str], dict[str, Any]]:
    """What newest-event-time-wins leaves of the job's online updates, per (view, entity)."""
    codec = default_codec()
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in read_topic(kafka, job.feature_updates_topic):
        update = codec.decode(record.value, FEATURE_UPDATE)[1]
        key = (update["view"], update["entity_id"])
        if key not in newest or update["event_time"] >= newest[key]["event_time"]:
            newest[key] = update
    return {k: {"event_time": u["event_time"], **u["values"]} for k, u in newest.items()}


def offline_log(paths: PathsConfig, view: str) -> pd.DataFrame:
    """Every row of the offline feature log of `view`, sorted (entity, time)."""
    folder = paths.features_offline / view
    frame = pd.concat([pd.read_parquet(f) for f in sorted(folder.glob("*.parquet"))])
    key = names.KEY_BY_VIEW[view]
    return frame.sort_values([key, names.TIMESTAMP_FIELD]).reset_index(drop=True)
