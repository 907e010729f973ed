"""Feature logging at serving: the vectors a slate was scored with, as FeatureLog records.

Why log them: training reads Feast's offline history at served_at − 1 ms, serving reads the
online store. If the two disagree (a feature computed differently online, a stale online row)
the model is trained on inputs it never sees. Logging what serving actually used makes the
difference measurable (`loopline consistency`) and trainable (`loopline train --features
logged`).

What is logged: the user's row once and each *slate item's* row (not every candidate: only
shown items get labels), in the feature service's column order (features.VIEW_COLUMNS, named
by features.SERVICE_VERSION), with the event time of each online row, so staleness = serving
time − feature time is known per value.

Sampling is decided from the request id alone (`sampled`): reproducible, and the consistency
check can tell which requests *should* have a log, so a log that never arrives is counted as
missing rather than mistaken for anything else. Records go to their own topic through the
same bounded-queue sink as ServingEvents (events.KafkaSink): never blocking a request.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from feature_repo import names
from models import features
from models.serving.events import EventSink

log = logging.getLogger(__name__)

_USER_COLS = [features.COLUMNS.index(c) for c in features.VIEW_COLUMNS[names.USER_ACTIVITY]]
_ITEM_COLS = [features.COLUMNS.index(c) for c in features.VIEW_COLUMNS[names.ITEM_PERFORMANCE]]


def sampled(request_id: str, rate: float) -> bool:
    """Whether a request's features are logged at `rate`: a hash of the request id below the
    rate, so every process (serving workers, the checker) reaches the same answer."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def _time(ms: float) -> int | None:
    return None if math.isnan(ms) else int(ms)


def record(request_id: str, event_ms: int, user_id: str, model_version: str,
           rows: features.OnlineRows, chosen: Sequence[int], candidates: Sequence[str],
           sample_rate: float) -> dict[str, Any]:
    """The FeatureLog record (io.loopline.events.FeatureLog) of one served slate: `chosen`
    are the candidates' indices in slate order."""
    matrix = rows.matrix
    user_values = matrix[0, _USER_COLS] if len(matrix) else np.full(len(_USER_COLS), np.nan)
    return {
        "request_id": request_id, "event_time": int(event_ms), "user_id": user_id,
        "model_version": model_version, "feature_service": features.FEATURE_SERVICE,
        "feature_service_version": features.SERVICE_VERSION, "sample_rate": float(sample_rate),
        "user": {"entity_id": user_id, "feature_time": _time(rows.user_time_ms),
                 "values": user_values.tolist()},
        "items": [{"entity_id": candidates[i], "feature_time": _time(rows.item_time_ms[i]),
                   "values": matrix[i, _ITEM_COLS].tolist()} for i in chosen],
    }


class FeatureLogger:
    """Decides per request whether to log, builds the record, hands it to the sink; counts
    every outcome (a logging failure never fails the request)."""

    def __init__(self, sink: EventSink, sample_rate: float) -> None:
        self.sink = sink
        self.sample_rate = sample_rate
        self.counts = {"logged": 0, "not_sampled": 0, "no_features": 0, "errors": 0}
        self._lock = threading.Lock()

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1

    def log(self, request_id: str, event_ms: int, user_id: str, model_version: str,
            rows: features.OnlineRows | None, chosen: Sequence[int],
            candidates: Sequence[str]) -> None:
        if not sampled(request_id, self.sample_rate):
            self._count("not_sampled")
            return
        if rows is None:  # the lookup never answered (store down, timeout): nothing to log
            self._count("no_features")
            return
        try:
            self.sink(record(request_id, event_ms, user_id, model_version, rows, chosen,
                             candidates, self.sample_rate))
        except Exception as exc:  # a broken log must not fail the request: counted instead
            self._count("errors")
            log.error("could not log the features of %s: %s", request_id, exc)
            return
        self._count("logged")

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self.counts)
        sink_stats = getattr(self.sink, "stats", None)
        return {**counts, "sample_rate": self.sample_rate,
                "sink": sink_stats() if callable(sink_stats) else None}

    def close(self) -> None:
        closer = getattr(self.sink, "close", None)
        if callable(closer):
            closer()
