"""Serving's Prometheus metrics, defined once (GET /metrics when serving.metrics_enabled).

Each SlateService owns a ServingMetrics on its own CollectorRegistry, so two services in one
process (tests, the demo) never mix counts. With several worker processes the server points
SHARED_DIR_ENV (and prometheus-client's PROMETHEUS_MULTIPROC_DIR) at one folder before the
workers start; values then live in files there and a scrape sums every worker (gauges say how
they combine).

Importing Feast switches prometheus-client into multiprocess mode for the whole process, in a
temporary folder of Feast's own (feast/metrics.py sets PROMETHEUS_MULTIPROC_DIR, eagerly). A
metric created there starts from the value the same name last had in this process, so two
services would share counts. Outside our own multi-worker mode this module therefore puts
prometheus-client back on in-memory values (new metric children only; Feast's metrics are not
served by Loopline).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

PREFIX = "loopline_serving"
SHARED_DIR_ENV = "_LOOPLINE_SERVING_SHARED_DIR"  # set by server.run_workers, never by users

if not os.environ.get(SHARED_DIR_ENV):
    values.ValueClass = values.MutexValue
# Latency buckets (seconds) around the 30 ms / 100 ms targets.
_LATENCY = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5)
_LOOKUP = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)


class ServingMetrics:
    """The metric objects one service updates."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests", "Slates served, by experiment arm, assigned model version "
            "and whether popularity served them instead", ["arm", "version", "fallback"],
            registry=r)
        self.fallbacks = Counter(
            f"{PREFIX}_fallbacks", "Slates served by popularity, by arm, assigned version "
            "and reason", ["arm", "version", "reason"], registry=r)
        self.shed = Counter(
            f"{PREFIX}_shed", "/rank requests refused with 503 (concurrency limit)", registry=r)
        self.latency = Histogram(
            f"{PREFIX}_request_seconds", "Time to answer a /rank request (answered ones)",
            ["fallback"], buckets=_LATENCY, registry=r)
        self.lookup = Histogram(
            f"{PREFIX}_feature_lookup_seconds", "Online feature lookup of one request",
            buckets=_LOOKUP, registry=r)
        self.events = Counter(
            f"{PREFIX}_events", "ServingEvents by outcome: accepted by the log queue, "
            "delivered (acknowledged by Kafka), dropped (queue full), failed (refused by Kafka)",
            ["outcome"], registry=r)
        self.event_pending = Gauge(
            f"{PREFIX}_event_queue_depth", "ServingEvents accepted but not yet acknowledged",
            registry=r, multiprocess_mode="livesum")
        self.event_oldest = Gauge(
            f"{PREFIX}_event_oldest_pending_seconds", "Age of the oldest undelivered "
            "ServingEvent", registry=r, multiprocess_mode="livemax")
        self.item_cache_age = Gauge(
            f"{PREFIX}_item_features_age_seconds", "Age of the oldest item-feature row served "
            "from the in-process cache in the last refresh", registry=r,
            multiprocess_mode="livemax")
        self._event_seen: dict[str, int] = {}

    def served(self, arm: str, version: str, reason: str | None) -> None:
        self.requests.labels(arm, version, "true" if reason else "false").inc()
        if reason:
            self.fallbacks.labels(arm, version, reason).inc()

    def sink_stats(self, stats: dict[str, Any]) -> None:
        """Mirror KafkaSink.stats() (cumulative counts) into the counters and gauges."""
        for outcome in ("accepted", "delivered", "dropped", "failed"):
            delta = int(stats[outcome]) - self._event_seen.get(outcome, 0)
            if delta > 0:
                self.events.labels(outcome).inc(delta)
                self._event_seen[outcome] = int(stats[outcome])
        self.event_pending.set(stats["pending"])
        self.event_oldest.set(stats["oldest_pending_s"])

    def exposition(self) -> bytes:
        """The Prometheus text format: every worker's values in multiprocess mode."""
        folder = os.environ.get(SHARED_DIR_ENV)
        if folder:
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged, path=os.path.join(folder, "metrics"))
            return generate_latest(merged)
        return generate_latest(self.registry)
