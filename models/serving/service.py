"""The ranking path, framework-free: assign arm → features → score → explore → log.

Degradation: the Feast lookup and scoring run under one time budget on a small worker pool;
on timeout, error, a missing model, or an open circuit breaker (repeated Feast failures) the
slate is ranked by popularity instead: item clicks from the online features when those came
back, else the static table saved with the model version. The event then says
fallback=true and model_version="popularity"; the arm stays the user's assigned arm, so
exposure per arm is logged whatever happened.

Logged propensity: P(item at exactly its position) under softmax(t) Plackett-Luce sampling
over the scores used for that slate (model or popularity), computed exactly (policy.py).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import numpy as np
from feast import FeatureStore

from models import features
from models.errors import ModelsError
from models.policy import SoftmaxPolicy
from models.ranker import Ranker
from models.registry import Registry
from models.rollout import Rollout, RolloutState
from models.serving.config import ServingConfig
from models.serving.events import EventSink, serving_event

log = logging.getLogger(__name__)

POPULARITY = "popularity"
DEFAULT_ARM = "default"
SHADOW_ARM = "shadow"  # arm label of rank_pinned slates (never logged)
_CLICKS = features.COLUMNS.index("item_clicks_24h")


@dataclass(frozen=True)
class SlateItem:
    item_id: str
    position: int
    score: float
    propensity: float


@dataclass(frozen=True)
class Slate:
    request_id: str
    model_version: str
    arm: str
    policy: str
    fallback: bool
    fallback_reason: str | None
    items: tuple[SlateItem, ...]


class _Breaker:
    """Open after N consecutive failures; half-open again after the cooldown."""

    def __init__(self, failures: int, cooldown_s: float) -> None:
        self.failures, self.cooldown_s = failures, cooldown_s
        self.streak, self.opened_at = 0, 0.0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        return self.streak < self.failures or time.monotonic() - self.opened_at > self.cooldown_s

    def record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self.streak = 0
                return
            self.streak += 1
            if self.streak >= self.failures:
                self.opened_at = time.monotonic()


class SlateService:
    """Ranks candidate sets for users; thread-safe (FastAPI runs sync endpoints in threads)."""

    def __init__(self, cfg: ServingConfig, registry: Registry, store: FeatureStore | None,
                 sink: EventSink | None) -> None:
        self.cfg = cfg
        self.registry = registry
        self.rollout = Rollout(registry)
        self.store = store
        self.sink = sink
        self.policy = SoftmaxPolicy(cfg.temperature)
        self._rng = np.random.default_rng(cfg.seed)
        self._rng_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="score")
        self._breaker = _Breaker(cfg.breaker_failures, cfg.breaker_cooldown_s)
        self._rankers: dict[str, Ranker | None] = {}
        self._popularity: dict[str, dict[str, float]] = {}
        self._routing: tuple[RolloutState | None, str | None] = (None, None)
        self._routing_checked = -1e9
        self._routing_mtime = -1.0
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {"requests": 0, "fallback": 0, "sink_errors": 0}
        self.fallback_reasons: dict[str, int] = {}

    # ---- routing and models -------------------------------------------------------------
    def _routing_now(self) -> tuple[RolloutState | None, str | None]:
        """(rollout state, latest version), re-read at most every rollout_refresh_s."""
        now = time.monotonic()
        if now - self._routing_checked >= self.cfg.rollout_refresh_s:
            with self._lock:
                self._routing_checked = now
                mtime = self.rollout.mtime()
                state = self._routing[0]
                if mtime != self._routing_mtime:
                    self._routing_mtime = mtime
                    try:
                        state = self.rollout.state()
                    except ModelsError as exc:
                        log.error("keeping the previous rollout: %s", exc)
                self._routing = (state, self.registry.latest())
        return self._routing

    def _ranker(self, version: str) -> Ranker | None:
        if version not in self._rankers:
            try:
                ranker: Ranker | None = self.registry.ranker(version)
            except ModelsError as exc:
                log.error("model %s unavailable: %s", version, exc)
                ranker = None
            with self._lock:
                self._rankers[version] = ranker
        return self._rankers[version]

    def _static_popularity(self, version: str | None) -> dict[str, float]:
        if version is None:
            return {}
        if version not in self._popularity:
            try:
                table = self.registry.popularity(version)
            except ModelsError:
                table = {}
            with self._lock:
                self._popularity[version] = table
        return self._popularity[version]

    def warm(self) -> None:
        """Load the models the current routing can pick, before the first request."""
        state, latest = self._routing_now()
        versions = {a.version for a in state.arms} if state else {latest} - {None}
        for version in versions:
            if version:
                self._ranker(version)
                self._static_popularity(version)
        if self.store is not None:
            try:  # the first lookup loads Feast's registry: not on a user's request
                features.online(self.store, "warm-up", ["warm-up"])
            except Exception as exc:  # serving still starts; requests will fall back
                log.warning("Feast warm-up failed: %s: %s", type(exc).__name__, exc)

    # ---- ranking ------------------------------------------------------------------------
    def _lookup_and_score(self, user_id: str, items: list[str],
                          ranker: Ranker | None) -> tuple[np.ndarray, np.ndarray | None]:
        assert self.store is not None
        matrix = features.online(self.store, user_id, items)
        return matrix, (ranker.score(matrix) if ranker is not None else None)

    def _scores(self, user_id: str, items: list[str], version: str | None,
                budget: bool = True) -> tuple[np.ndarray, str | None]:
        """Model scores, or popularity scores plus the reason for falling back. With
        budget=False (shadows: nobody waits on them) the work runs on the calling thread."""
        ranker = self._ranker(version) if version else None
        matrix = None
        reason: str | None = None
        if self.store is None:
            reason = "feature store unavailable"
        elif not self._breaker.allow():
            reason = "feature store circuit open"
        else:
            try:
                if budget:
                    future: Future[Any] = self._pool.submit(self._lookup_and_score, user_id,
                                                            items, ranker)
                    matrix, scores = future.result(timeout=self.cfg.score_timeout_ms / 1000)
                else:
                    matrix, scores = self._lookup_and_score(user_id, items, ranker)
                self._breaker.record(True)
                if scores is not None and np.all(np.isfinite(scores)):
                    return scores, None
                reason = ("no model registered" if version is None
                          else f"model {version} unavailable")
            except FutureTimeout:
                self._breaker.record(False)
                reason = f"features/scoring slower than {self.cfg.score_timeout_ms} ms"
            except Exception as exc:  # Feast/SQLite/Redis/LightGBM: degrade, never 500
                self._breaker.record(False)
                reason = f"features/scoring failed: {type(exc).__name__}"
                log.warning("falling back to popularity: %s: %s", type(exc).__name__, exc)
        if matrix is not None:
            clicks = np.nan_to_num(matrix[:, _CLICKS], nan=0.0)
            return np.log1p(np.maximum(clicks, 0.0)), reason
        table = self._static_popularity(version or self._routing_now()[1])
        return np.array([table.get(item, 0.0) for item in items]), reason

    def rank(self, user_id: str, session_id: str, candidates: list[str], k: int,
             event_ms: int | None = None, request_id: str | None = None) -> Slate:
        """Serve one slate and log it. `event_ms` (default: now) is the logged event time; a
        simulator replaying past days passes its own clock, and may name the request
        (`request_id`, default: a random UUID) so replays of a seed are reproducible."""
        event_ms = int(time.time() * 1000) if event_ms is None else event_ms
        state, latest = self._routing_now()
        if state is not None:
            arm = state.assign(user_id)
            version: str | None = arm.version
            arm_label = state.arm_label(arm)
        else:
            version, arm_label = latest, DEFAULT_ARM
        scores, reason = self._scores(user_id, candidates, version)
        with self._rng_lock:
            chosen = self.policy.sample(scores, k, self._rng)
        slate = self._slate(candidates, scores, chosen, reason, version, arm_label,
                            request_id or str(uuid.uuid4()))
        self._log(slate, user_id, session_id, event_ms)
        return slate

    def rank_pinned(self, version: str | None, user_id: str, candidates: list[str], k: int,
                    rng: np.random.Generator) -> Slate:
        """The slate `version` (None: no model, popularity) would serve this user, without
        routing, logging or counting: a shadow for ground truth and replays. Exploration
        draws from `rng`, so shadows never shift the live requests' draws. No time budget:
        a shadow is not on anyone's request path."""
        scores, reason = self._scores(user_id, candidates, version, budget=False)
        chosen = self.policy.sample(scores, k, rng)
        return self._slate(candidates, scores, chosen, reason, version, SHADOW_ARM, "")

    def _slate(self, candidates: list[str], scores: np.ndarray, chosen: np.ndarray,
               reason: str | None, version: str | None, arm_label: str,
               request_id: str) -> Slate:
        propensities = self.policy.propensities(scores, chosen)
        fallback = reason is not None
        items = tuple(SlateItem(candidates[i], j, float(scores[i]), float(p))
                      for j, (i, p) in enumerate(zip(chosen, propensities, strict=True)))
        return Slate(request_id, POPULARITY if fallback else str(version), arm_label,
                     self.policy.name, fallback, reason, items)

    def _log(self, slate: Slate, user_id: str, session_id: str, event_ms: int) -> None:
        with self._lock:
            self.counts["requests"] += 1
            if slate.fallback:
                self.counts["fallback"] += 1
                key = slate.fallback_reason or "unknown"
                self.fallback_reasons[key] = self.fallback_reasons.get(key, 0) + 1
        if self.sink is None:
            return
        event = serving_event(
            slate.request_id, event_ms, user_id, session_id, slate.model_version, slate.arm,
            slate.policy, slate.fallback,
            [{"item_id": i.item_id, "position": i.position, "score": i.score,
              "propensity": i.propensity} for i in slate.items],
        )
        try:
            self.sink(event)
        except Exception as exc:  # a logging failure must not fail the request
            with self._lock:
                self.counts["sink_errors"] += 1
            log.error("could not log ServingEvent %s: %s", slate.request_id, exc)

    def health(self) -> dict[str, Any]:
        state, latest = self._routing_now()
        with self._lock:
            counts = dict(self.counts)
            reasons = dict(self.fallback_reasons)
        sink_stats = getattr(self.sink, "stats", None)
        return {
            "status": "ok",
            "rollout": ({"experiment": state.experiment,
                         "arms": [vars(a) for a in state.arms]} if state else None),
            "latest_version": latest,
            "feature_store": "absent" if self.store is None else (
                "ok" if self._breaker.allow() else "circuit open"),
            "counts": counts,
            "fallback_reasons": reasons,
            "events": sink_stats() if callable(sink_stats) else None,
        }

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        closer = getattr(self.sink, "close", None)
        if callable(closer):
            closer()
