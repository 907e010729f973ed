"""The serving boundary's one frozen config ([serving] / LOOPLINE_SERVING_*)."""

from __future__ import annotations

from dataclasses import dataclass

from loopline import settings
from loopline.errors import ConfigError
from loopline.net import is_loopback
from schemas import topics


@dataclass(frozen=True)
class ServingConfig:
    """Where serving listens, how it explores, how much it takes on, and when it says so."""

    host: str = "127.0.0.1"  # loopback unless deliberately exposed
    port: int = 8000
    # Worker processes behind the one port (each a full, stateless ranker); 0 = one per core.
    workers: int = 1
    # Every path but /healthz needs "Authorization: Bearer <token>". Without a configured token
    # `loopline serve` generates one per run and prints it (models/serving/server.py); serving
    # with no token at all takes the explicit local-development switch below (loopback only).
    auth_token: str | None = None
    allow_unauthenticated: bool = False
    temperature: float = 1.0  # softmax exploration over raw scores (log-odds for binary)
    max_candidates: int = 1000
    max_k: int = 50
    # Budget for the Feast lookup plus scoring; past it the request is served by popularity.
    score_timeout_ms: int = 100
    # After this many consecutive lookup *failures* (errors, or a store call that overran the
    # budget on its own), skip Feast for breaker_cooldown_s. Load never trips it: admission
    # below keeps the work in flight bounded, so queueing is not counted as slowness.
    breaker_failures: int = 5
    breaker_cooldown_s: float = 10.0
    # Admission (per worker): at most max_in_flight /rank requests are worked on at once; up
    # to max_waiting more wait at most queue_wait_ms for a slot; anything beyond is shed with
    # 503 + Retry-After: retry_after_s. Shedding keeps answered latency bounded above the knee.
    # Two per worker: one GIL per process, so a third request in flight adds only latency
    # (the second overlaps the first one's store round trip).
    max_in_flight: int = 2
    max_waiting: int = 16
    queue_wait_ms: int = 20
    retry_after_s: int = 1
    # Read features with the online store's own client (models/serving/online.py) rather than
    # Feast's get_online_features, whose response building costs ~10 ms CPU per request.
    fast_lookup: bool = True
    # Item features (shared by every user) are served from an in-process cache refreshed from
    # the online store every item_refresh_ms; a row older than item_max_age_ms is re-read on
    # the request instead (the bound on how stale a served item feature can be).
    item_cache: bool = True
    item_refresh_ms: int = 250
    item_max_age_ms: int = 1000
    item_cache_size: int = 200_000
    kafka_enabled: bool = True
    event_topic: str = topics.SERVING  # where ServingEvents go (the feedback job's input)
    # The ServingEvent log. Policy when the queue is full: drop the event and count it
    # (`events.dropped`, /healthz degraded); requests never block on the broker.
    event_queue_size: int = 100_000
    # How long the log's producer lets a batch wait for more records (one producer carries
    # the ServingEvent and FeatureLog topics). kafka-python's CPU goes per produce request,
    # not per record, so batching is what keeps the log cheap; no request waits for it.
    event_linger_ms: int = 50
    # /healthz turns degraded (HTTP 503) when more events than this are undelivered, when the
    # oldest undelivered one is older than event_max_age_s, or when any was dropped or refused
    # within the last event_loss_hold_s.
    event_max_pending: int = 20_000
    event_max_age_s: float = 10.0
    event_loss_hold_s: float = 60.0
    # Feature logging (models/serving/feature_log.py): the share of requests whose served
    # feature vectors go to feature_log_topic (0 = off). Sampled by request id, so the
    # consistency check knows which requests should have a log. Same drop-and-count sink.
    feature_log_sample_rate: float = 1.0
    feature_log_topic: str = topics.FEATURE_LOGS
    # Refuse to start unless the serving topic exists and is writable.
    check_topics: bool = True
    metrics_enabled: bool = False  # GET /metrics (Prometheus text), same auth rule as /rank
    rollout_refresh_s: float = 1.0  # how often rollout.json / new versions are re-checked
    seed: int | None = None  # exploration RNG seed (tests); None draws from the OS

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"serving.temperature must be > 0, got {self.temperature}")
        for name in ("port", "max_candidates", "max_k", "score_timeout_ms", "breaker_failures",
                     "event_queue_size", "max_in_flight", "item_refresh_ms", "item_max_age_ms",
                     "item_cache_size", "event_max_pending", "event_max_age_s",
                     "retry_after_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"serving.{name} must be positive, got {getattr(self, name)}")
        for name in ("workers", "max_waiting", "queue_wait_ms", "event_loss_hold_s",
                     "event_linger_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"serving.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.feature_log_sample_rate <= 1.0:
            raise ConfigError("serving.feature_log_sample_rate must be in [0, 1], got "
                              f"{self.feature_log_sample_rate}")
        if self.item_max_age_ms < self.item_refresh_ms:
            raise ConfigError(
                f"serving.item_max_age_ms ({self.item_max_age_ms}) must be at least "
                f"serving.item_refresh_ms ({self.item_refresh_ms})")
        if self.auth_token is not None and len(self.auth_token) < 16:
            raise ConfigError("serving.auth_token must be at least 16 characters when set")
        if self.allow_unauthenticated and not is_loopback(self.host):
            raise ConfigError(
                "serving.allow_unauthenticated is for local development on a loopback host, "
                f"got host {self.host!r}; set serving.auth_token instead"
            )


def load_serving(**overrides: object) -> ServingConfig:
    return settings.load(ServingConfig, "serving", **overrides)
