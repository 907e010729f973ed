"""The serving side the simulated shoppers talk to: the real SlateService, its ServingEvents
on the demo's serving topic, and pinned shadows of each version for ground truth.

Every simulated request goes through `SlateService.rank` with the simulated clock and a
deterministic request id; ground truth asks each version for the same request through
`rank_pinned` (no logging, its own exploration generator). The shadows and the live request
read one Feast lookup (`SharedLookup`), so they rank on the same features at the same moment.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from demo.errors import DemoStackError
from models.serving.events import KafkaSink
from models.serving.service import SlateService
from simulator import Slate


class SharedLookup:
    """A FeatureStore stand-in that answers a repeated online lookup from memory.

    `fresh()` (called before each live request) forgets the last answer, so only the shadows
    of the same request reuse it; every other call goes to the real store.
    """

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._last: tuple[Any, Any] | None = None
        self.lookups = 0
        self.reused = 0

    def fresh(self) -> None:
        with self._lock:
            self._last = None

    def get_online_features(self, features: Any, entity_rows: Any, **kwargs: Any) -> Any:
        key = (tuple(features), tuple(tuple(sorted(r.items())) for r in entity_rows),
               tuple(sorted(kwargs.items())))
        with self._lock:
            if self._last is not None and self._last[0] == key:
                self.reused += 1
                return self._last[1]
        response = self._store.get_online_features(features=features, entity_rows=entity_rows,
                                                   **kwargs)
        with self._lock:
            self._last = (key, response)
            self.lookups += 1
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class ServedLog:
    """The serving sink: forwards each ServingEvent to Kafka and counts the impressions per
    event-time partition (what the job's final slices must hold)."""

    def __init__(self, sink: KafkaSink, partition_ms: int) -> None:
        self.sink = sink
        self.partition_ms = partition_ms
        self.impressions: Counter[int] = Counter()  # partition start ms -> slate items
        self.events = 0

    def __call__(self, event: dict[str, Any]) -> None:
        t = int(event["event_time"])
        self.impressions[t - t % self.partition_ms] += len(event["slate"])
        self.events += 1
        self.sink(event)

    def wait_sent(self, timeout_s: float = 120.0) -> None:
        """Until Kafka acknowledged every event queued so far; fail loudly if any was lost."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.sink.stats()
            if stats["failed"] or stats["dropped"]:
                raise DemoStackError(
                    f"serving lost ServingEvents on their way to Kafka ({stats['failed']} "
                    f"failed, {stats['dropped']} dropped): {stats['last_error']}")
            if stats["sent"] >= stats["queued"] == self.events:
                return
            if time.monotonic() > deadline:
                raise DemoStackError(f"serving events not acknowledged by Kafka within "
                                     f"{timeout_s:.0f}s: {stats}")
            time.sleep(0.05)


class LiveRecommender:
    """The simulator's view of serving: one live, logged request per simulated request."""

    def __init__(self, service: SlateService, lookup: SharedLookup, run_tag: str,
                 on_request: Callable[[], None] | None = None) -> None:
        self.service = service
        self.lookup = lookup
        self.run_tag = run_tag
        self.on_request = on_request
        self.requests = 0
        self.last: tuple[tuple[str, tuple[str, ...], int], Any] | None = None

    def __call__(self, user_id: str, session_id: str, candidates: Sequence[str], k: int,
                 event_time: int) -> Slate:
        self.lookup.fresh()
        self.requests += 1
        slate = self.service.rank(user_id, session_id, list(candidates), k, event_ms=event_time,
                                  request_id=f"{self.run_tag}-q{self.requests:07d}")
        self.last = ((user_id, tuple(candidates), event_time), slate)
        if self.on_request is not None:
            self.on_request()
        return Slate.from_object(slate)


def shadow(live: LiveRecommender, version: str, seed: int) -> Callable[..., Slate]:
    """`version` pinned, for ground truth: ranks the request, logs nothing. When the live
    request was served by this very version, its slate is that version's draw already
    (same features, same model, same policy), so it is reused rather than drawn again."""
    gen = np.random.default_rng([seed, zlib.crc32(version.encode())])

    def recommend(user_id: str, session_id: str, candidates: Sequence[str], k: int,
                  event_time: int) -> Slate:
        if live.last is not None:
            request, slate = live.last
            if (request == (user_id, tuple(candidates), event_time)
                    and slate.model_version == version and not slate.fallback):
                return Slate.from_object(slate)
        return Slate.from_object(
            live.service.rank_pinned(version, user_id, list(candidates), k, gen))

    return recommend
