"""The serving app against a real SQLite Feast store (online features written with
write_to_online_store); ServingEvents are captured by an injected sink."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from feature_repo.store import FeastConfig, feature_store
from loopline.paths import PathsConfig
from models import features, slices
from models.policy import SoftmaxPolicy
from models.registry import LINEAGE_FILE, POPULARITY_FILE, Registry
from models.rollout import Rollout
from models.serving.app import create_app
from models.serving.config import ServingConfig
from models.serving.service import SlateService
from models.training import TrainingConfig, train
from schemas.codec import SERVING_EVENT, default_codec
from tests.unit.models.conftest import SLICE, Shop

# A generous lookup budget: the shared test machine is slow at times, and only the timeout
# test is about the budget (it sets 1 ms).
CFG = ServingConfig(seed=5, temperature=0.5, max_candidates=150, max_k=20, score_timeout_ms=10_000)


@dataclass
class Served:
    shop: Shop
    registry: Registry
    versions: list[str]
    candidates: list[str]


@pytest.fixture(scope="module")
def served(shop: Shop) -> Served:
    rng = slices.SliceRange.parse(SLICE)
    versions = [train(shop.paths, rng, shop.store, TrainingConfig(num_boost_round=40)).version
                for _ in range(2)]
    registry = Registry.from_paths(shop.paths)
    Rollout(registry).full(versions[0])
    return Served(shop, registry, versions, list(shop.world.items[:50]))


Client = tuple[TestClient, list[dict[str, Any]], SlateService]


def client_for(served: Served, cfg: ServingConfig = CFG, store: Any = "real",
               registry: Registry | None = None) -> Client:
    events: list[dict[str, Any]] = []
    service = SlateService(cfg, registry or served.registry,
                           served.shop.store if store == "real" else store, events.append)
    service.warm()  # as `loopline serve` does: models loaded, Feast registry read
    return TestClient(create_app(service)), events, service


def request(served: Served, user: str = "u3", k: int = 5, **extra: Any) -> dict[str, Any]:
    return {"user_id": user, "session_id": "s-1", "candidates": served.candidates, "k": k} | extra


def test_a_slate_is_scored_explored_and_logged(served: Served) -> None:
    client, events, service = client_for(served)
    response = client.post("/rank", json=request(served, k=8))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == served.versions[0], service.health()["fallback_reasons"]
    assert not body["fallback"]
    assert body["arm"] == "control" and body["policy"] == "softmax(t=0.5)"
    slate = body["slate"]
    assert [s["position"] for s in slate] == list(range(8))
    shown = [served.candidates.index(s["item_id"]) for s in slate]
    assert len(set(shown)) == 8

    # the scores are the model's on the online features, and each propensity is the exact
    # Plackett-Luce probability of that item at that position given all candidates' scores
    ranker = served.registry.ranker(served.versions[0])
    scores = ranker.score(features.online(served.shop.store, "u3", served.candidates))
    np.testing.assert_allclose([s["score"] for s in slate], scores[shown], rtol=1e-9)
    expected = SoftmaxPolicy(0.5).propensities(scores, np.array(shown))
    np.testing.assert_allclose([s["propensity"] for s in slate], expected, rtol=1e-9)

    [event] = events
    assert event["request_id"] == body["request_id"] and event["user_id"] == "u3"
    assert event["slate"] == slate and event["arm"] == body["arm"]
    codec = default_codec()
    assert codec.decode(codec.encode(SERVING_EVENT, event), SERVING_EVENT)[1] == event


def test_canary_users_get_the_canary_model(served: Served) -> None:
    rollout = Rollout(served.registry)
    state = rollout.canary(served.versions[1], 50)
    try:
        client, events, _ = client_for(served, replace(CFG, rollout_refresh_s=0.0))
        for i in range(60):
            assert client.post("/rank", json=request(served, user=f"u{i}", k=2)).status_code == 200
        by_arm = {e["arm"]: e["model_version"] for e in events}
        assert by_arm == {"control": served.versions[0], "canary": served.versions[1]}
        for e in events:
            assert e["arm"] == state.arm_label(state.assign(e["user_id"]))
    finally:
        rollout.rollback()


@pytest.mark.parametrize(("change", "message"), [
    ({"candidates": ["i1", "i2", "i1"]}, "distinct, got duplicates ['i1']"),
    ({"k": 60}, "k=60 exceeds the 50 candidates"),
    ({"k": 0}, "k: Input should be greater than or equal to 1"),
    ({"candidates": []}, "candidates: List should have at least 1 item"),
    ({"user_id": "  "}, "user_id: String should have at least 1 character"),
    ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"candidates": [f"c{i}" for i in range(151)]}, "151 exceed the limit of 150"),
    ({"k": 25}, "k: 25 exceeds the limit of 20"),
])
def test_malformed_requests_get_a_clear_4xx(served: Served, change: dict[str, Any],
                                            message: str) -> None:
    client, events, _ = client_for(served)
    response = client.post("/rank", json=request(served) | change)
    assert response.status_code == 422
    assert message in response.json()["error"] and "\n" not in response.json()["error"]
    assert events == []


def test_validation_details_and_the_schema_are_fastapis(served: Served) -> None:
    """POST /rank is answered below FastAPI's routing (app.RankEndpoint): the 422 details keep
    FastAPI's locations, broken JSON is a 422 too, and the OpenAPI schema still has /rank."""
    client, events, _ = client_for(served)
    response = client.post("/rank", json=request(served) | {"k": 0})
    assert response.status_code == 422
    assert response.json()["details"] == [{"loc": ["body", "k"], "type": "greater_than_equal",
                                           "msg": "Input should be greater than or equal to 1"}]
    broken = client.post("/rank", content=b'{"user_id": "u1", ',
                         headers={"content-type": "application/json"})
    assert broken.status_code == 422 and "JSON" in broken.json()["error"]
    assert events == []
    schema = client.get("/openapi.json").json()
    assert schema["paths"]["/rank"]["post"]["requestBody"]["content"]["application/json"][
        "schema"] == {"$ref": "#/components/schemas/RankRequest"}


def test_not_json_is_a_4xx(served: Served) -> None:
    client, _, _ = client_for(served)
    response = client.post("/rank", content=b"user=u1", headers={"content-type": "text/plain"})
    assert 400 <= response.status_code < 500 and response.json()["error"]


def _assert_popularity(body: dict[str, Any], events: list[dict[str, Any]]) -> None:
    assert body["fallback"] and body["model_version"] == "popularity"
    assert events[-1]["fallback"] and events[-1]["model_version"] == "popularity"
    assert events[-1]["arm"] == body["arm"]  # exposure is logged whatever happened


def test_feast_down_falls_back_to_the_static_popularity(served: Served, tmp_path: Path) -> None:
    broken = feature_store(FeastConfig(), PathsConfig(home=tmp_path / "no-registry"))
    client, events, service = client_for(served, store=broken)
    body = client.post("/rank", json=request(served)).json()
    _assert_popularity(body, events)
    table = served.registry.popularity(served.versions[0])
    assert [s["score"] for s in body["slate"]] == [table.get(s["item_id"], 0.0)
                                                  for s in body["slate"]]
    assert "features/scoring failed" in next(iter(service.health()["fallback_reasons"]))


def _slow(service: SlateService, monkeypatch: pytest.MonkeyPatch, delay_s: float = 0.2) -> None:
    """The real store read, `delay_s` slower (no reliance on how fast the machine is)."""
    assert service.online is not None
    read = service.online.reader.read_timed

    def slow_read(*args: Any) -> Any:
        time.sleep(delay_s)
        return read(*args)

    monkeypatch.setattr(service.online.reader, "read_timed", slow_read)


def test_slow_features_fall_back_within_the_budget(served: Served,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    client, events, service = client_for(served, replace(CFG, score_timeout_ms=20))
    _slow(service, monkeypatch)
    _assert_popularity(client.post("/rank", json=request(served)).json(), events)
    assert "slower than 20 ms" in next(iter(service.health()["fallback_reasons"]))
    # a store that overran the budget while working on it counts towards the breaker
    assert service._breaker.streak == 1


def test_every_fallback_is_counted_per_arm_and_assigned_version(
        served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    rollout = Rollout(served.registry)
    rollout.canary(served.versions[1], 50)
    try:
        client, events, service = client_for(
            served, replace(CFG, rollout_refresh_s=0.0, score_timeout_ms=20,
                            breaker_failures=1000))
        for i in range(10):
            client.post("/rank", json=request(served, user=f"u{i}", k=2))
        _slow(service, monkeypatch)
        for i in range(10, 30):
            client.post("/rank", json=request(served, user=f"u{i}", k=2))
    finally:
        rollout.rollback()
    health = client.get("/healthz").json()
    expected: dict[tuple[str, str], list[int]] = {}
    for e in events:  # what the log says, per arm and the version the arm was assigned
        version = served.versions[0] if e["arm"] == "control" else served.versions[1]
        row = expected.setdefault((e["arm"], version), [0, 0])
        row[0] += 1
        row[1] += int(e["fallback"])
    got = {(a["arm"], a["version"]): [a["requests"], a["fallback"]] for a in health["arms"]}
    assert got == expected and len(got) == 2
    assert sum(f for _, f in got.values()) == 20 == health["counts"]["fallback"]
    for arm in health["arms"]:
        assert arm["fallback_share"] == round(arm["fallback"] / arm["requests"], 4)
        # the reasons add up (slower than the budget, or queued behind the slow lookups)
        reasons = {k: v for k, v in arm.items() if k.startswith("features/scoring")}
        assert sum(reasons.values()) == arm["fallback"], arm


def test_repeated_failures_open_the_circuit(served: Served, tmp_path: Path) -> None:
    broken = feature_store(FeastConfig(), PathsConfig(home=tmp_path / "no-registry"))
    client, _, service = client_for(served, replace(CFG, breaker_failures=2), store=broken)
    for _ in range(4):
        client.post("/rank", json=request(served))
    reasons = service.health()["fallback_reasons"]
    assert reasons["feature store circuit open"] == 2
    assert service.health()["feature_store"] == "circuit open"


def test_a_broken_model_ranks_by_item_popularity_features(served: Served) -> None:
    registry = Registry(served.registry.root.parent / "models-broken")

    def write(directory: Path, version: str) -> None:
        (directory / "model.txt").write_text("not a model")
        (directory / "features.json").write_text("{}")
        (directory / POPULARITY_FILE).write_text("{}")
        (directory / LINEAGE_FILE).write_text(json.dumps({"model_version": version}))

    version = registry.register(write)
    Rollout(registry).full(version)
    client, events, _ = client_for(served, registry=registry)
    body = client.post("/rank", json=request(served)).json()
    _assert_popularity(body, events)
    online = features.online(served.shop.store, "u3", [s["item_id"] for s in body["slate"]])
    clicks = online[:, features.COLUMNS.index("item_clicks_24h")]
    np.testing.assert_allclose([s["score"] for s in body["slate"]], np.log1p(clicks))


def test_no_model_at_all_still_serves(served: Served, tmp_path: Path) -> None:
    client, events, service = client_for(served, registry=Registry(tmp_path / "empty"))
    body = client.post("/rank", json=request(served)).json()
    _assert_popularity(body, events)
    assert body["arm"] == "default"
    assert service.health()["fallback_reasons"] == {"no model registered": 1}


def test_a_failing_event_sink_does_not_fail_the_request(served: Served) -> None:
    def broken_sink(_: dict[str, Any]) -> None:
        raise RuntimeError("kafka is on fire")

    service = SlateService(CFG, served.registry, served.shop.store, broken_sink)
    client = TestClient(create_app(service))
    assert client.post("/rank", json=request(served)).status_code == 200
    assert service.health()["counts"]["sink_errors"] == 1



def test_a_replay_names_its_requests_and_stamps_its_own_clock(served: Served) -> None:
    _, events, service = client_for(served)
    slate = service.rank("u3", "s-1", served.candidates, 4, event_ms=1_767_261_600_000,
                         request_id="sim-0-r000001")
    [event] = events
    assert slate.request_id == event["request_id"] == "sim-0-r000001"
    assert event["event_time"] == 1_767_261_600_000


def test_a_pinned_shadow_ranks_as_that_version_without_logging(served: Served) -> None:
    _, events, service = client_for(served)  # rollout: versions[0] for everyone
    pinned = service.rank_pinned(served.versions[1], "u3", served.candidates, 5,
                                 np.random.default_rng(1))
    assert events == [] and service.health()["counts"]["requests"] == 0
    assert pinned.model_version == served.versions[1] and not pinned.fallback
    assert pinned.arm == "shadow"
    ranker = served.registry.ranker(served.versions[1])
    scores = ranker.score(features.online(served.shop.store, "u3", served.candidates))
    shown = np.array([served.candidates.index(i.item_id) for i in pinned.items])
    np.testing.assert_allclose([i.score for i in pinned.items], scores[shown], rtol=1e-9)
    np.testing.assert_allclose([i.propensity for i in pinned.items],
                               SoftmaxPolicy(0.5).propensities(scores, shown), rtol=1e-9)
    # the shadow's draws come from its own generator: same seed, same slate
    again = service.rank_pinned(served.versions[1], "u3", served.candidates, 5,
                                np.random.default_rng(1))
    assert again.items == pinned.items


@pytest.fixture
def guarded(served: Served) -> Iterator[TestClient]:
    client, _, _ = client_for(served, replace(CFG, auth_token="t" * 24))
    yield client


def test_the_reserved_auth_token_is_enforced_when_set(served: Served, guarded: TestClient) -> None:
    assert guarded.post("/rank", json=request(served)).status_code == 401
    ok = guarded.post("/rank", json=request(served),
                      headers={"Authorization": "Bearer " + "t" * 24})
    assert ok.status_code == 200


def test_healthz(served: Served) -> None:
    client, _, _ = client_for(served)
    client.post("/rank", json=request(served))
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["counts"]["requests"] == 1
    assert health["rollout"]["arms"][0]["version"] == served.versions[0]
    assert "salt" not in health["rollout"]


def test_metrics_follow_the_auth_rule_and_count_what_was_served(served: Served) -> None:
    token = {"Authorization": "Bearer " + "t" * 24}
    client, _, _ = client_for(served, replace(CFG, auth_token="t" * 24, metrics_enabled=True))
    assert client.post("/rank", json=request(served), headers=token).status_code == 200
    assert client.get("/metrics").status_code == 401
    text = client.get("/metrics", headers=token).text
    labels = f'arm="control",fallback="false",version="{served.versions[0]}"'
    assert f"loopline_serving_requests_total{{{labels}}} 1.0" in text
    assert "loopline_serving_feature_lookup_seconds_count 1.0" in text
    off, _, _ = client_for(served, replace(CFG, auth_token="t" * 24))
    assert off.get("/metrics", headers=token).status_code == 404  # off unless configured


def test_healthz_is_503_while_the_event_log_is_at_risk(served: Served) -> None:
    class StuckSink:
        def __call__(self, event: dict[str, Any]) -> None:
            pass

        def stats(self) -> dict[str, Any]:
            return {"accepted": 3, "delivered": 0, "dropped": 0, "failed": 0, "pending": 3,
                    "oldest_pending_s": 42.0, "last_loss_s_ago": None, "connected": False,
                    "last_error": "NoBrokersAvailable"}

    service = SlateService(CFG, served.registry, served.shop.store, StuckSink())
    response = TestClient(create_app(service)).get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded" and body["events"]["pending"] == 3
    assert any("42.0 s old" in r for r in body["reasons"])


def test_lookups_queued_behind_slow_ones_never_count_towards_the_breaker(
        served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    cfg = replace(CFG, score_timeout_ms=50, max_in_flight=1, breaker_failures=100)
    _, _, service = client_for(served, cfg)  # a lookup pool of max_in_flight + 2 = 3 threads
    _slow(service, monkeypatch, delay_s=1.0)  # far beyond the budget, even on a busy machine
    with ThreadPoolExecutor(6) as callers:
        slates = list(callers.map(
            lambda i: service.rank(f"u{i}", "s", served.candidates, 3), range(6)))
    reasons = Counter(s.fallback_reason for s in slates)
    slow = reasons["features/scoring slower than 50 ms"]
    # the 4th-6th lookups waited for a thread for longer than the budget: load, not the store
    assert reasons["features/scoring queued past 50 ms"] >= 3, reasons
    assert service._breaker.streak == slow <= 3
