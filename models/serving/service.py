"""The ranking path, framework-free: assign arm → features → score → explore → log.

Features come from models/serving/online.py (raw store reads + an item-feature cache with a
bounded staleness); Feast's get_online_features (features.online) is the fallback reader when
the raw one cannot be built.

Degradation: the lookup and scoring run under one time budget on a worker pool sized to the
admission limit; on timeout, error, a missing model, or an open circuit breaker (repeated
store *failures*, never queueing) the slate is ranked by popularity instead: item clicks from
the online features when those came back, else the static table saved with the model
version. The event then says fallback=true and model_version="popularity"; the arm stays the
user's assigned arm, so exposure per arm is logged whatever happened, and every fallback is
counted per arm, assigned version and reason (/healthz "arms", metrics).

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
from models.serving import health
from models.serving.config import ServingConfig
from models.serving.events import EventSink, serving_event
from models.serving.feature_log import FeatureLogger
from models.serving.metrics import ServingMetrics
from models.serving.online import OnlineFeatures

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
    """Open after N consecutive store failures; half-open again after the cooldown."""

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
                 sink: EventSink | None, metrics: ServingMetrics | None = None,
                 feature_log: FeatureLogger | None = None) -> None:
        """`feature_log`: log the served feature vectors of sampled requests (None: off)."""
        self.cfg = cfg
        self.feature_log = feature_log
        self.registry = registry
        self.rollout = Rollout(registry)
        self.store = store
        self.sink = sink
        self.metrics = metrics or ServingMetrics()
        self.online = self._online_reader(store)
        self.policy = SoftmaxPolicy(cfg.temperature)
        self._rng = np.random.default_rng(cfg.seed)
        self._rng_lock = threading.Lock()
        # As many threads as requests admitted at once (plus shadows' headroom): a lookup never
        # waits for a thread, so the time budget measures the store and the model, not a queue.
        self._pool = ThreadPoolExecutor(max_workers=cfg.max_in_flight + 2,
                                        thread_name_prefix="score")
        self._breaker = _Breaker(cfg.breaker_failures, cfg.breaker_cooldown_s)
        self._rankers: dict[str, Ranker | None] = {}
        self._popularity: dict[str, dict[str, float]] = {}
        self._routing: tuple[RolloutState | None, str | None] = (None, None)
        self._routing_checked = -1e9
        self._routing_mtime = -1.0
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {"requests": 0, "fallback": 0, "shed": 0,
                                       "sink_errors": 0}
        self.fallback_reasons: dict[str, int] = {}
        # (arm, assigned version) -> {"requests": n, "fallback": m, reason: count, ...}
        self.by_arm: dict[tuple[str, str], dict[str, int]] = {}
        self.log_bounds = health.LogBounds(cfg.event_max_pending, cfg.event_max_age_s,
                                           cfg.event_loss_hold_s)

    def _online_reader(self, store: FeatureStore | None) -> OnlineFeatures | None:
        """The raw-read path, or None (then Feast's get_online_features is used). Only for a
        real FeatureStore: a stand-in that wraps get_online_features (the demo's SharedLookup,
        which lets ground-truth shadows reuse the live request's lookup) keeps Feast's path,
        so what it shares stays shared and its values are never a cached item row."""
        if store is None or not self.cfg.fast_lookup or not isinstance(store, FeatureStore):
            return None
        try:
            return OnlineFeatures(store, self.cfg.item_refresh_ms, self.cfg.item_max_age_ms,
                                  self.cfg.item_cache_size, cache=self.cfg.item_cache)
        except Exception as exc:  # unknown store type, unreadable registry: Feast's path
            log.warning("raw online reads unavailable, using Feast's lookup: %s: %s",
                        type(exc).__name__, exc)
            return None

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
        # the propensity kernel is compiled (or loaded from numba's cache) on first use
        self.policy.propensities(np.zeros(2), np.array([1, 0]))
        if self.store is not None:
            try:  # the first lookup loads Feast's registry: not on a user's request
                features.online(self.store, "warm-up", ["warm-up"])
                if self.online is not None:
                    self.online.matrix("warm-up", ["warm-up"])
            except Exception as exc:  # serving still starts; requests will fall back
                log.warning("Feast warm-up failed: %s: %s", type(exc).__name__, exc)

    # ---- ranking ------------------------------------------------------------------------
    def lookup(self, user_id: str, items: list[str]) -> np.ndarray:
        """The feature matrix of one request (raw reads + item cache, else Feast)."""
        return self.lookup_rows(user_id, items).matrix

    def lookup_rows(self, user_id: str, items: list[str]) -> features.OnlineRows:
        """lookup's matrix with each row's online event time (what the feature log needs)."""
        assert self.store is not None
        started = time.perf_counter()
        if self.online is not None:
            rows = self.online.rows(user_id, items)
        else:
            rows = features.online_rows(self.store, user_id, items)
        self.metrics.lookup.observe(time.perf_counter() - started)
        return rows

    def _lookup_and_score(self, user_id: str, items: list[str], ranker: Ranker | None,
                          started: list[float]
                          ) -> tuple[features.OnlineRows, np.ndarray | None]:
        started.append(time.monotonic())
        rows = self.lookup_rows(user_id, items)
        return rows, (ranker.score(rows.matrix) if ranker is not None else None)

    def _scores(self, user_id: str, items: list[str], version: str | None, budget: bool = True
                ) -> tuple[np.ndarray, str | None, features.OnlineRows | None]:
        """Model scores, or popularity scores plus the reason for falling back, and the
        online rows they came from (None when the lookup did not answer). With
        budget=False (shadows: nobody waits on them) the work runs on the calling thread."""
        ranker = self._ranker(version) if version else None
        rows: features.OnlineRows | None = None
        reason: str | None = None
        if self.store is None:
            reason = "feature store unavailable"
        elif not self._breaker.allow():
            reason = "feature store circuit open"
        else:
            started: list[float] = []
            submitted = time.monotonic()
            try:
                if budget:
                    future: Future[Any] = self._pool.submit(self._lookup_and_score, user_id,
                                                            items, ranker, started)
                    rows, scores = future.result(timeout=self.cfg.score_timeout_ms / 1000)
                else:
                    rows, scores = self._lookup_and_score(user_id, items, ranker, started)
                self._breaker.record(True)
                if scores is not None and np.all(np.isfinite(scores)):
                    return scores, None, rows
                reason = ("no model registered" if version is None
                          else f"model {version} unavailable")
            except FutureTimeout:
                # Only a store that had (nearly) the whole budget and did not answer is
                # failing; a lookup that waited for a thread for half the budget or more is
                # load, which admission deals with, and must not open the breaker.
                budget_s = self.cfg.score_timeout_ms / 1000
                if started and started[0] - submitted < budget_s / 2:
                    self._breaker.record(False)
                    reason = f"features/scoring slower than {self.cfg.score_timeout_ms} ms"
                else:
                    reason = f"features/scoring queued past {self.cfg.score_timeout_ms} ms"
            except Exception as exc:  # Feast/SQLite/Redis/LightGBM: degrade, never 500
                self._breaker.record(False)
                reason = f"features/scoring failed: {type(exc).__name__}"
                log.warning("falling back to popularity: %s: %s", type(exc).__name__, exc)
        if rows is not None:
            clicks = np.nan_to_num(rows.matrix[:, _CLICKS], nan=0.0)
            return np.log1p(np.maximum(clicks, 0.0)), reason, rows
        table = self._static_popularity(version or self._routing_now()[1])
        return np.array([table.get(item, 0.0) for item in items]), reason, None

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
        scores, reason, rows = self._scores(user_id, candidates, version)
        with self._rng_lock:
            chosen = self.policy.sample(scores, k, self._rng)
        slate = self._slate(candidates, scores, chosen, reason, version, arm_label,
                            request_id or str(uuid.uuid4()))
        self._count(slate, version)
        self._log(slate, user_id, session_id, event_ms)
        if self.feature_log is not None:
            self.feature_log.log(slate.request_id, event_ms, user_id, slate.model_version,
                                 rows, [int(i) for i in chosen], candidates)
        return slate

    def _count(self, slate: Slate, version: str | None) -> None:
        """Every slate counted per (arm, assigned version), fallbacks with their reason."""
        assigned = version or "none"
        reason = slate.fallback_reason if slate.fallback else None
        with self._lock:
            self.counts["requests"] += 1
            row = self.by_arm.setdefault((slate.arm, assigned), {"requests": 0, "fallback": 0})
            row["requests"] += 1
            if reason is not None or slate.fallback:
                key = reason or "unknown"
                self.counts["fallback"] += 1
                self.fallback_reasons[key] = self.fallback_reasons.get(key, 0) + 1
                row["fallback"] += 1
                row[key] = row.get(key, 0) + 1
        self.metrics.served(slate.arm, assigned, (reason or "unknown") if slate.fallback
                            else None)

    def count_shed(self) -> None:
        """A /rank request refused by admission (503): counted, never silently dropped."""
        with self._lock:
            self.counts["shed"] += 1
        self.metrics.shed.inc()

    def rank_pinned(self, version: str | None, user_id: str, candidates: list[str], k: int,
                    rng: np.random.Generator) -> Slate:
        """The slate `version` (None: no model, popularity) would serve this user, without
        routing, logging or counting: a shadow for ground truth and replays. Exploration
        draws from `rng`, so shadows never shift the live requests' draws. No time budget:
        a shadow is not on anyone's request path."""
        scores, reason, _ = self._scores(user_id, candidates, version, budget=False)
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

    def event_stats(self) -> dict[str, Any] | None:
        """The ServingEvent log's accounting (None when logging is off or the sink is a
        plain callable), mirrored into the metrics."""
        sink_stats = getattr(self.sink, "stats", None)
        if not callable(sink_stats):
            return None
        stats: dict[str, Any] = sink_stats()
        self.metrics.sink_stats(stats)
        return stats

    def health(self) -> dict[str, Any]:
        """/healthz: status (ok / fallback / degraded, see health.py), its reasons, and the
        counts behind them: per arm and assigned version, fallbacks by reason, the log."""
        state, latest = self._routing_now()
        with self._lock:
            counts = dict(self.counts)
            reasons = dict(self.fallback_reasons)
            arms = [{"arm": arm, "version": version, **row,
                     "fallback_share": round(row["fallback"] / row["requests"], 4)}
                    for (arm, version), row in sorted(self.by_arm.items())]
        events = self.event_stats()
        feature_store = "absent" if self.store is None else (
            "ok" if self._breaker.allow() else "circuit open")
        problems = health.log_problems(events, self.log_bounds)
        word = health.status(problems, feature_store)
        if feature_store != "ok":
            problems = [*problems, f"feature store {feature_store}: slates served by popularity"]
        cache = None
        if self.online is not None and self.online.cache:
            cache = {"items": self.online.cached_items,
                     "max_age_s": round(self.online.max_item_age_s, 3),
                     "refresh_error": self.online.refresh_error}
            self.metrics.item_cache_age.set(self.online.max_item_age_s)
        return {
            "status": word,
            "reasons": problems,
            "rollout": ({"experiment": state.experiment,
                         "arms": [vars(a) for a in state.arms]} if state else None),
            "latest_version": latest,
            "feature_store": feature_store,
            "counts": counts,
            "fallback_reasons": reasons,
            "arms": arms,
            "events": events,
            "item_features": cache,
            "feature_log": self.feature_log.stats() if self.feature_log is not None else None,
        }

    def close(self) -> None:
        if self.online is not None:
            self.online.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        closer = getattr(self.sink, "close", None)
        if callable(closer):
            closer()
        if self.feature_log is not None:
            self.feature_log.close()
