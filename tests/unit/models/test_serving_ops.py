"""Serving's operational parts without services: admission, health rules, metrics, the event
sink's accounting against an unreachable broker, the topic check's verdicts, and the raw
online reads against Feast's own lookup on a real SQLite store."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loopline.kafka import KafkaConfig
from loopline.net import free_port
from models import features
from models.serving import health
from models.serving.admission import Admission
from models.serving.events import KafkaSink, serving_event, topic_problem
from models.serving.metrics import ServingMetrics
from models.serving.online import OnlineFeatures
from tests.unit.models.conftest import Shop


# ---- admission ------------------------------------------------------------------------------
class _Gate:
    """An ASGI app that answers 200 once released (so requests overlap deterministically)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _call(app: Any, path: str = "/rank") -> tuple[int, dict[bytes, bytes]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    await app({"type": "http", "path": path, "headers": []}, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"])


def test_admission_sheds_beyond_the_limit_with_503_and_retry_after() -> None:
    async def scenario() -> tuple[list[Any], int, int]:
        gate, shed = _Gate(), []
        app = Admission(gate, limit=2, max_waiting=0, wait_s=0.0, retry_after_s=3,
                        on_shed=lambda: shed.append(1))
        calls = [asyncio.create_task(_call(app)) for _ in range(5)]
        while gate.entered < 2:
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        gate.release.set()
        return list(await asyncio.gather(*calls)), len(shed), app.in_flight

    results, shed, in_flight = asyncio.run(scenario())
    codes = sorted(code for code, _ in results)
    assert codes == [200, 200, 503, 503, 503] and shed == 3 and in_flight == 0
    refused = [headers for code, headers in results if code == 503]
    assert all(h[b"retry-after"] == b"3" for h in refused)


def test_admission_lets_a_bounded_number_wait_for_a_slot() -> None:
    async def scenario() -> tuple[list[int], int]:
        gate, shed = _Gate(), []
        app = Admission(gate, limit=1, max_waiting=1, wait_s=30.0, retry_after_s=1,
                        on_shed=lambda: shed.append(1))
        calls = [asyncio.create_task(_call(app)) for _ in range(3)]
        while gate.entered < 1 or app.waiting < 1:
            await asyncio.sleep(0)
        gate.release.set()  # the first finishes and hands its slot to the waiter
        return sorted(code for code, _ in await asyncio.gather(*calls)), app.in_flight

    codes, in_flight = asyncio.run(scenario())
    assert codes == [200, 200, 503] and in_flight == 0


def test_a_waiter_that_times_out_is_shed_and_other_paths_are_not_limited() -> None:
    async def scenario() -> tuple[int, int, int]:
        gate = _Gate()
        app = Admission(gate, limit=1, max_waiting=4, wait_s=0.05, retry_after_s=1,
                        on_shed=lambda: None)
        first = asyncio.create_task(_call(app))
        while gate.entered < 1:
            await asyncio.sleep(0)
        waited, _ = await _call(app)  # times out after 50 ms
        other = asyncio.create_task(_call(app, "/healthz"))  # not guarded: enters the gate
        while gate.entered < 2:
            await asyncio.sleep(0)
        gate.release.set()
        await first
        return waited, (await other)[0], len(app._waiters)

    assert asyncio.run(scenario()) == (503, 200, 0)


# ---- health rules ---------------------------------------------------------------------------
BOUNDS = health.LogBounds(max_pending=100, max_age_s=5.0, loss_hold_s=60.0)
QUIET = {"accepted": 10, "delivered": 10, "dropped": 0, "failed": 0, "pending": 0,
         "oldest_pending_s": 0.0, "last_loss_s_ago": None, "last_error": None}


@pytest.mark.parametrize(("change", "needle"), [
    ({"pending": 101}, "101 ServingEvents undelivered"),
    ({"pending": 3, "oldest_pending_s": 5.5}, "oldest undelivered ServingEvent is 5.5 s"),
    ({"dropped": 2, "last_loss_s_ago": 1.0}, "dropped 2"),
    ({"failed": 1, "last_loss_s_ago": 59.0, "last_error": "KafkaTimeoutError: x"},
     "last Kafka error: KafkaTimeoutError"),
])
def test_the_log_at_risk_is_degraded(change: dict[str, Any], needle: str) -> None:
    reasons = health.log_problems(QUIET | change, BOUNDS)
    assert any(needle in r for r in reasons), reasons
    assert health.status(reasons, "ok") == "degraded" and health.HTTP_CODE["degraded"] == 503


def test_a_quiet_log_old_losses_and_no_log_are_not_degraded() -> None:
    assert health.log_problems(QUIET, BOUNDS) == []
    assert health.log_problems(QUIET | {"failed": 3, "last_loss_s_ago": 61.0}, BOUNDS) == []
    assert health.log_problems(None, BOUNDS) == []
    assert health.status([], "ok") == "ok"
    assert health.status([], "circuit open") == "fallback" and health.HTTP_CODE["fallback"] == 200


# ---- metrics --------------------------------------------------------------------------------
def _samples(metrics: ServingMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_fallbacks_shedding_and_the_log() -> None:
    metrics = ServingMetrics()
    metrics.served("control", "v1", None)
    metrics.served("control", "v1", None)
    metrics.served("canary", "v2", "model v2 unavailable")
    metrics.shed.inc()
    metrics.latency.labels("false").observe(0.012)
    metrics.lookup.observe(0.001)
    metrics.sink_stats({"accepted": 3, "delivered": 2, "dropped": 0, "failed": 0,
                        "pending": 1, "oldest_pending_s": 0.4})
    metrics.sink_stats({"accepted": 5, "delivered": 5, "dropped": 1, "failed": 0,
                        "pending": 0, "oldest_pending_s": 0.0})
    s = _samples(metrics)
    p = "loopline_serving"
    assert s[(f"{p}_requests_total", (("arm", "control"), ("fallback", "false"),
                                      ("version", "v1")))] == 2
    assert s[(f"{p}_requests_total", (("arm", "canary"), ("fallback", "true"),
                                      ("version", "v2")))] == 1
    assert s[(f"{p}_fallbacks_total", (("arm", "canary"), ("reason", "model v2 unavailable"),
                                       ("version", "v2")))] == 1
    assert s[(f"{p}_shed_total", ())] == 1
    assert s[(f"{p}_request_seconds_count", (("fallback", "false"),))] == 1
    assert s[(f"{p}_request_seconds_bucket", (("fallback", "false"), ("le", "0.02")))] == 1
    assert s[(f"{p}_feature_lookup_seconds_count", ())] == 1
    # cumulative sink counts become counter increments, never counted twice
    assert s[(f"{p}_events_total", (("outcome", "accepted"),))] == 5
    assert s[(f"{p}_events_total", (("outcome", "delivered"),))] == 5
    assert s[(f"{p}_events_total", (("outcome", "dropped"),))] == 1
    assert s[(f"{p}_event_queue_depth", ())] == 0
    # two services never share counts
    assert (f"{p}_shed_total", ()) in _samples(ServingMetrics())
    assert _samples(ServingMetrics())[(f"{p}_shed_total", ())] == 0


# ---- the event sink's accounting, broker unreachable -----------------------------------------
def _event(i: int) -> dict[str, Any]:
    return serving_event(f"r{i}", 1_767_261_600_000, "u1", "s1", "v1", "control",
                         "softmax(t=1)", False, [])


def test_an_unreachable_broker_keeps_every_event_accounted_for() -> None:
    dead = KafkaConfig(bootstrap_servers=f"127.0.0.1:{free_port(19500)}",
                       request_timeout_ms=2000)
    sink = KafkaSink(dead, queue_size=5, retry_s=0.2)
    try:
        for i in range(8):
            sink(_event(i))
        deadline = time.monotonic() + 60
        while sink.stats()["last_error"] is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the producer's first connection attempt gives up
        stats = sink.stats()
        # drop-and-count when the queue is full; nothing else leaves
        assert stats["accepted"] == 5 and stats["dropped"] == 3 and stats["pending"] == 5
        assert stats["delivered"] == stats["failed"] == 0 and not stats["connected"]
        assert stats["oldest_pending_s"] >= 0.3 and stats["last_loss_s_ago"] is not None
        reasons = health.log_problems(stats, health.LogBounds(100, 0.2, 60))
        assert any("oldest undelivered" in r for r in reasons)
        assert any("dropped 3" in r for r in reasons)
        assert any("cannot connect to Kafka" in r for r in reasons), reasons
    finally:
        sink.close(timeout_s=1)
    after = sink.stats()
    assert after["pending"] == 5  # still counted after shutdown, and logged
    sink(_event(99))
    assert sink.stats()["dropped"] == 4  # a closed sink drops and counts


# ---- the topic check's verdicts --------------------------------------------------------------
def _described(**change: Any) -> dict[str, Any]:
    return {"error_code": 0, "name": "t", "partitions": [
        {"partition_index": 0, "leader_id": 1}, {"partition_index": 1, "leader_id": 2}],
        "authorized_operations": None} | change


@pytest.mark.parametrize(("described", "needle"), [
    (_described(error_code=3), "does not exist"),
    (_described(error_code=29), "not authorized"),
    (_described(partitions=[]), "no partitions"),
    (_described(partitions=[{"partition_index": 0, "leader_id": -1}]), "no leader"),
    (_described(authorized_operations={"READ", "DESCRIBE"}), "may not write"),
])
def test_unusable_topics_are_named(described: dict[str, Any], needle: str) -> None:
    problem = topic_problem(described)
    assert problem is not None and needle in problem


def test_usable_topics_pass() -> None:
    assert topic_problem(_described()) is None
    assert topic_problem(_described(authorized_operations={"WRITE", "READ"})) is None
    assert topic_problem(_described(authorized_operations=set())) is None


# ---- raw online reads vs Feast ---------------------------------------------------------------
def test_raw_reads_and_the_item_cache_equal_feasts_lookup(shop: Shop) -> None:
    users = [*shop.world.users[:5], "never-seen-user"]
    items = [*shop.world.items[:50], "never-seen-item"]
    for cache in (False, True):
        online = OnlineFeatures(shop.store, refresh_ms=50, max_age_ms=200, cache=cache)
        try:
            for _ in range(2):  # the second round is served from the cache
                for user in users:
                    expected = features.online(shop.store, user, items)
                    got = online.matrix(user, items)
                    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
                    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)
        finally:
            online.close()
    assert np.isnan(expected[-1, [features.COLUMNS.index(c) for c in features.COLUMNS
                                  if c.startswith("item_")]]).all()


def test_cached_item_features_are_never_older_than_the_bound(shop: Shop) -> None:
    import pandas as pd

    from feature_repo import names

    item = shop.world.items[0]
    column = features.COLUMNS.index("item_clicks_24h")
    online = OnlineFeatures(shop.store, refresh_ms=60_000, max_age_ms=60_000, cache=True)
    fast = OnlineFeatures(shop.store, refresh_ms=100, max_age_ms=300, cache=True)
    try:
        before = online.matrix("u1", [item])[0, column]
        fast.matrix("u1", [item])
        frame = shop.frames[names.ITEM_PERFORMANCE]
        row = frame[frame[names.ITEM_KEY] == item].sort_values(names.TIMESTAMP_FIELD).tail(1)
        row = row.assign(**{"item_clicks_24h": before + 1000,
                            names.TIMESTAMP_FIELD: pd.Timestamp.now(tz="UTC")})
        shop.store.write_to_online_store(names.ITEM_PERFORMANCE, row)
        # a long refresh period serves the cached value (by design, within its bound) ...
        assert online.matrix("u1", [item])[0, column] == before
        # ... a short bound sees the new value within it: refreshed, or re-read on the request
        time.sleep(0.35)
        assert fast.matrix("u1", [item])[0, column] == before + 1000
        assert fast.max_item_age_s <= 0.3 + 1e-9
    finally:
        online.close()
        fast.close()


# ---- several workers: one /healthz --------------------------------------------------------
def _snapshot(pid: int, at: float, status: str = "ok", pending: int = 0,
              reasons: list[str] | None = None, fallback: int = 0) -> dict[str, Any]:
    return {"pid": pid, "at": at, "status": status, "reasons": reasons or [],
            "rollout": None, "latest_version": "v1", "feature_store": "ok",
            "counts": {"requests": 10, "fallback": fallback, "shed": 1, "sink_errors": 0},
            "fallback_reasons": {"x": fallback} if fallback else {},
            "arms": [{"arm": "control", "version": "v1", "requests": 10, "fallback": fallback,
                      "fallback_share": fallback / 10, **({"x": fallback} if fallback else {})}],
            "events": {"accepted": 10, "delivered": 10 - pending, "dropped": 0, "failed": 0,
                       "pending": pending, "oldest_pending_s": 0.5 * pending,
                       "last_loss_s_ago": None, "connected": True, "last_error": None},
            "item_features": None}


def test_workers_are_summed_and_one_stuck_log_degrades_them_all() -> None:
    from models.serving.workers import merge

    now = 1000.0
    ok = merge([_snapshot(1, now), _snapshot(2, now - 0.4, fallback=3)], now, 10, 60,
               lambda pid: True)
    assert ok["status"] == "ok" and ok["counts"] == {"requests": 20, "fallback": 3, "shed": 2,
                                                    "sink_errors": 0}
    assert ok["arms"] == [{"arm": "control", "version": "v1", "requests": 20, "fallback": 3,
                           "x": 3, "fallback_share": 0.15}]
    assert ok["events"]["accepted"] == 20 and ok["fallback_reasons"] == {"x": 3}

    stuck = merge([_snapshot(1, now), _snapshot(2, now, "degraded", pending=7,
                                                reasons=["oldest undelivered ..."])],
                  now, 10, 60, lambda pid: True)
    assert stuck["status"] == "degraded" and stuck["events"]["pending"] == 7
    assert stuck["reasons"] == ["worker 2: oldest undelivered ..."]

    silent = merge([_snapshot(1, now), _snapshot(2, now - 30)], now, 10, 60, lambda pid: True)
    assert silent["status"] == "degraded" and "worker 2 has not reported" in silent["reasons"][0]

    exited = merge([_snapshot(1, now), _snapshot(2, now - 5, pending=4)], now, 10, 60,
                   lambda pid: pid == 1)
    assert exited["status"] == "degraded" and "exited with 4" in exited["reasons"][0]
    assert exited["counts"]["requests"] == 20  # what it served stays counted
    long_gone = merge([_snapshot(1, now), _snapshot(2, now - 100, pending=4)], now, 10, 60,
                      lambda pid: pid == 1)
    assert long_gone["status"] == "ok"
