"""The serving boundary's one frozen config ([serving] / LOOPLINE_SERVING_*)."""

from __future__ import annotations

from dataclasses import dataclass

from loopline import settings
from loopline.errors import ConfigError
from loopline.net import is_loopback


@dataclass(frozen=True)
class ServingConfig:
    """Where serving listens, how it explores, and how long it waits before degrading."""

    host: str = "127.0.0.1"  # loopback unless deliberately exposed
    port: int = 8000
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
    # After this many consecutive lookup failures, skip Feast for breaker_cooldown_s.
    breaker_failures: int = 5
    breaker_cooldown_s: float = 10.0
    kafka_enabled: bool = True
    event_queue_size: int = 100_000  # ServingEvents waiting for Kafka before they are dropped
    rollout_refresh_s: float = 1.0  # how often rollout.json / new versions are re-checked
    seed: int | None = None  # exploration RNG seed (tests); None draws from the OS

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"serving.temperature must be > 0, got {self.temperature}")
        for name in ("port", "max_candidates", "max_k", "score_timeout_ms", "breaker_failures",
                     "event_queue_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"serving.{name} must be positive, got {getattr(self, name)}")
        if self.auth_token is not None and len(self.auth_token) < 16:
            raise ConfigError("serving.auth_token must be at least 16 characters when set")
        if self.allow_unauthenticated and not is_loopback(self.host):
            raise ConfigError(
                "serving.allow_unauthenticated is for local development on a loopback host, "
                f"got host {self.host!r}; set serving.auth_token instead"
            )


def load_serving(**overrides: object) -> ServingConfig:
    return settings.load(ServingConfig, "serving", **overrides)
