"""Serving under faults and overload, against a real broker, a real SQLite Feast store and a
trained LightGBM version (tests/unit/models/conftest.py builds the shop).

* A missing ServingEvent topic stops `loopline serve` at start-up: one clear line, exit 2.
* Kafka stopped mid-run: /healthz turns degraded (503) within the age bound; after Kafka
  returns every ServingEvent is delivered or counted as lost: nothing silently missing.
* More clients than capacity (real HTTP, uvicorn): the excess is refused with 503 (counted),
  answered latency stays bounded, and every fallback is counted per arm and version exactly
  as the events on the topic say.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from bench import loadgen
from cli.main import EXIT_ERROR
from infra import process
from infra.kafka_broker import KafkaBroker
from infra.topics import TopicSpec, consume_records, create_topics
from loopline.kafka import KafkaConfig
from loopline.net import free_port
from models.registry import Registry
from models.rollout import Rollout
from models.serving.app import create_app
from models.serving.config import ServingConfig
from models.serving.errors import EventLogError
from models.serving.events import KafkaSink, check_topic
from models.serving.service import SlateService
from models.slices import SliceRange
from models.training import TrainingConfig, train
from schemas.codec import SERVING_EVENT, default_codec
from tests.integration.serving_case import broken_version
from tests.unit.models.conftest import SLICE, Shop, build_shop, loopline_home

pytestmark = pytest.mark.integration

TOKEN = "load-test-token-" + "x" * 10


@dataclass
class Served:
    shop: Shop
    registry: Registry
    version: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with loopline_home(tmp_path_factory.mktemp("serving-load")) as paths:
        shop = build_shop(paths)
        version = train(paths, SliceRange.parse(SLICE), shop.store,
                        TrainingConfig(num_boost_round=20)).version
        registry = Registry.from_paths(paths)
        Rollout(registry).full(version)
        yield Served(shop, registry, version)


def _topic(kafka: KafkaConfig) -> str:
    name = f"loopline.test.serving.{uuid.uuid4().hex[:8]}"
    create_topics(kafka, [TopicSpec(name, 1, {"message.timestamp.type": "CreateTime"})])
    return name


def _request_ids(kafka: KafkaConfig, topic: str, expected: int) -> Counter[str]:
    codec = default_codec()
    records = consume_records(kafka, topic, expected, idle_timeout_s=20)
    return Counter(codec.decode(r.value, SERVING_EVENT)[1]["request_id"] for r in records)


def _events(kafka: KafkaConfig, topic: str, expected: int) -> list[dict[str, Any]]:
    codec = default_codec()
    return [codec.decode(r.value, SERVING_EVENT)[1]
            for r in consume_records(kafka, topic, expected, idle_timeout_s=20)]


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


# ---- start-up ------------------------------------------------------------------------------
def test_the_topic_check_passes_for_an_existing_topic_and_names_a_missing_one(
        kafka: KafkaConfig) -> None:
    check_topic(kafka, _topic(kafka))
    with pytest.raises(EventLogError, match="does not exist"):
        check_topic(kafka, "loopline.test.never-created")


def test_serve_refuses_to_start_without_its_topic(kafka: KafkaConfig, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_SERVING_")}
    missing = f"loopline.test.absent-{uuid.uuid4().hex[:6]}"
    env.update(LOOPLINE_PATHS_HOME=str(tmp_path), LOOPLINE_SERVING_PORT=str(free_port(18100)),
               LOOPLINE_SERVING_EVENT_TOPIC=missing,
               LOOPLINE_KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers)
    done = subprocess.run([sys.executable, "-m", "cli.main", "serve"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_ERROR != 0, (done.stdout, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("loopline: error:")]
    assert len(errors) == 1 and missing in errors[0] and "does not exist" in errors[0], \
        done.stderr
    assert "serving on" not in done.stdout  # it never listened


# ---- Kafka stopped mid-run -----------------------------------------------------------------
def test_kafka_stopped_mid_run_degrades_healthz_and_loses_nothing_silently(
        served: Served, kafka: KafkaConfig, kafka_broker: KafkaBroker) -> None:
    topic = _topic(kafka)
    cfg = ServingConfig(seed=3, score_timeout_ms=10_000, event_max_age_s=3.0,
                        event_topic=topic, auth_token=TOKEN)
    sink = KafkaSink(kafka, cfg.event_queue_size, topic=topic, retry_s=1.0)
    service = SlateService(cfg, served.registry, served.shop.store, sink)
    service.warm()
    app = TestClient(create_app(service))
    items = list(served.shop.world.items[:40])
    served_ids: list[str] = []

    def rank(n: int, tag: str) -> None:
        for i in range(n):
            body = {"user_id": f"u{i}", "session_id": tag, "candidates": items, "k": 5}
            response = app.post("/rank", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 200, response.text
            served_ids.append(response.json()["request_id"])

    try:
        rank(20, "before")
        _wait(lambda: sink.stats()["delivered"] == 20, 60, "the first 20 events delivered")
        assert app.get("/healthz").status_code == 200

        kafka_broker.down()
        rank(30, "during")  # requests are still answered: the broker is off the request path
        started = time.monotonic()
        _wait(lambda: app.get("/healthz").status_code == 503, 60, "healthz to degrade")
        degraded_after = time.monotonic() - started
        body = app.get("/healthz").json()
        assert body["status"] == "degraded" and body["events"]["pending"] == 30
        assert any("oldest undelivered ServingEvent" in r for r in body["reasons"]), body
        # the bound is 3 s; generous slack for a busy machine, but not "never"
        assert degraded_after < 30, degraded_after
    finally:
        kafka_broker.up()

    _wait(lambda: sink.stats()["pending"] == 0, 240, "the backlog to drain after Kafka returned")
    stats = sink.stats()
    service.close()
    on_topic = _request_ids(kafka, topic, len(served_ids))
    # Every served request is either on the topic or counted as lost; none on it twice.
    assert stats["accepted"] == len(served_ids) == 50
    assert stats["delivered"] + stats["failed"] + stats["dropped"] == 50
    assert set(on_topic) <= set(served_ids) and max(on_topic.values()) == 1
    assert len(on_topic) == stats["delivered"], (len(on_topic), stats)
    if stats["failed"] == 0:
        assert set(on_topic) == set(served_ids)
    else:  # refused after the producer's retries: counted, and /healthz still says so
        assert app.get("/healthz").json()["status"] == "degraded"


# ---- overload -------------------------------------------------------------------------------
@pytest.fixture
def http_service(served: Served, kafka: KafkaConfig) -> Iterator[tuple[SlateService, int, str]]:
    """The app on a real uvicorn (own thread), a canary arm whose model is broken."""
    topic = _topic(kafka)
    broken = broken_version(served.registry)
    rollout = Rollout(served.registry)  # the module's version serves everyone; add a canary
    rollout.canary(broken, 30)
    cfg = ServingConfig(seed=4, score_timeout_ms=10_000, auth_token=TOKEN, max_in_flight=1,
                        max_waiting=0, event_topic=topic)
    service = SlateService(cfg, served.registry, served.shop.store,
                           KafkaSink(kafka, cfg.event_queue_size, topic=topic))
    service.warm()
    port = free_port(18200)
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert process.wait_until(lambda: server.started, 60, lambda: thread.is_alive())
        yield service, port, topic
    finally:
        server.should_exit = True
        thread.join(30)
        rollout.rollback()  # drops the canary


def test_overload_is_shed_with_503_and_every_fallback_is_counted_per_arm(
        served: Served, kafka: KafkaConfig,
        http_service: tuple[SlateService, int, str]) -> None:
    service, port, topic = http_service
    items = list(served.shop.world.items[:60])
    bodies = [{"user_id": f"u{i}", "session_id": "load", "candidates": items, "k": 10}
              for i in range(200)]
    result = loadgen.run({"host": "127.0.0.1", "port": port, "token": TOKEN, "bodies": bodies,
                          "concurrency": 48, "duration_s": 4.0, "retry_wait_s": 0.0})
    assert result["error_count"] == 0, result["errors"]
    assert set(result["status"]) <= {"200", "503"}, result["status"]
    assert result["shed"] > 0 and result["answered"] > 0, result
    # answered requests stay bounded (generous: the machine may be busy), not queued for ever
    assert result["p99_ms"] < 3_000, result

    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json()
    assert health["counts"]["shed"] == result["shed"]
    assert health["counts"]["requests"] == result["answered"]

    # Retry-After and the body of a refusal, seen directly while the server is saturated
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        saturate = threading.Thread(target=loadgen.run, args=({
            "host": "127.0.0.1", "port": port, "token": TOKEN, "bodies": bodies,
            "concurrency": 16, "duration_s": 2.0, "retry_wait_s": 0.0},), daemon=True)
        saturate.start()
        refusals = []
        while saturate.is_alive() and not refusals:
            response = client.post("/rank", json=bodies[0],
                                   headers={"Authorization": f"Bearer {TOKEN}"})
            if response.status_code == 503:
                refusals.append(response)
        saturate.join(30)
    if refusals:  # nearly always; a refusal seen must carry the retry hint and a reason
        assert refusals[0].headers["retry-after"] == "1"
        assert refusals[0].json()["error"].startswith("overloaded:")

    _wait(lambda: (service.event_stats() or {}).get("pending") == 0, 120, "events delivered")
    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json()
    answered = health["counts"]["requests"]
    events = _events(kafka, topic, answered)
    assert len(events) == answered
    from_log = Counter((e["arm"], e["fallback"]) for e in events)
    counted = {(a["arm"], a["version"]): (a["requests"], a["fallback"]) for a in health["arms"]}
    assert {arm for arm, _ in counted} == {"control", "canary"}
    for (arm, version), (requests, fallbacks) in counted.items():
        assert requests == from_log[(arm, True)] + from_log[(arm, False)]
        assert fallbacks == from_log[(arm, True)]
        if arm == "canary":  # its model is broken: every slate fell back, each one counted
            assert fallbacks == requests > 0 and version != served.version
        else:
            assert fallbacks == 0  # load alone never sends the model arm to popularity
