"""The models side of the loop on the real broker, the Flink mini-cluster and real Feast:
serving logs ServingEvents to Kafka, the feedback job turns them (and the clicks they caused)
into slices, `loopline train` learns from the slice with lineage naming its offsets, and the
new version is served over HTTP with features from Feast, its slate read back from Kafka."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic

from bench import synthetic
from cli.main import main as loopline
from feature_repo.store import FeastConfig, feature_store
from jobs.config import JobConfig
from jobs.feedback.run import run as run_job
from loopline.kafka import KafkaConfig
from loopline.net import free_port
from loopline.paths import PathsConfig
from models import consistency, feature_logs
from models.registry import Registry
from models.serving.app import create_app
from models.serving.config import ServingConfig
from models.serving.events import KafkaSink
from models.serving.feature_log import FeatureLogger
from models.serving.service import SlateService
from schemas import topics
from schemas.codec import FEATURE_LOG, LINEAGE_RECORD, SERVING_EVENT, default_codec
from schemas.producer import EventProducer
from tests.unit.models.conftest import SLICE, build_shop, loopline_home

pytestmark = pytest.mark.integration

CFG = ServingConfig(seed=3, temperature=0.5, score_timeout_ms=10_000)


@contextmanager
def http_server(service: SlateService) -> Iterator[str]:
    """`loopline serve`'s app on uvicorn in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True  # the lifespan closes the service: queued events are flushed
        thread.join(30)


def read_until(kafka: KafkaConfig, topic: str, found: Callable[[Any], bool],
               timeout_s: float = 60) -> Any:
    """The first record of `topic` (from the beginning) for which `found` is true."""
    consumer = KafkaConsumer(topic, **kafka.client_kwargs(), auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=1000)
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline:
            for record in consumer:
                if found(record):
                    return record
    finally:
        consumer.close()
    raise AssertionError(f"no matching record on {topic} within {timeout_s}s")


def serve_and_read_back(kafka: KafkaConfig, service: SlateService, payload: dict[str, Any],
                        topic: str = topics.SERVING) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    with http_server(service) as url:
        response = httpx.post(f"{url}/rank", json=payload, timeout=30)
        assert response.status_code == 200, response.text
        assert httpx.get(f"{url}/healthz", timeout=30).json()["status"] == "ok"
    body = response.json()
    record = read_until(kafka, topic, lambda r: r.key == body["request_id"].encode())
    _, event = default_codec().decode(record.value, SERVING_EVENT)
    return body, record, event


@pytest.fixture
def home(tmp_path: Any) -> Iterator[PathsConfig]:
    with loopline_home(tmp_path) as paths:
        yield paths


def test_train_emits_lineage_and_serve_logs_to_kafka(kafka: KafkaConfig, home: PathsConfig,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    shop = build_shop(home)
    rc = loopline(["train", "--slice", SLICE, "--emit-lineage", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    trained = json.loads(out)
    version = trained["version"]
    record = read_until(kafka, topics.LINEAGE, lambda r: r.key == trained["run_id"].encode())
    _, lineage = default_codec().decode(record.value, LINEAGE_RECORD)
    assert lineage["event_type"] == "COMPLETE" and lineage["job_name"] == "loopline-train"
    assert lineage["outputs"][0]["name"] == version
    assert record.timestamp == lineage["event_time"]
    assert json.loads(lineage["outputs"][0]["facets_json"])["lineage"] == trained["lineage"]

    assert loopline(["models", "rollout", version, "--full"]) == 0
    service = SlateService(CFG, Registry.from_paths(home), shop.store, KafkaSink(kafka))
    service.warm()
    payload = {"user_id": "u7", "session_id": "s-7", "candidates": list(shop.world.items[:40]),
               "k": 6}
    body, record, event = serve_and_read_back(kafka, service, payload)
    assert record.timestamp == event["event_time"]  # the job's event time
    assert event["model_version"] == version and not event["fallback"]
    assert event["slate"] == body["slate"] and event["arm"] == body["arm"]
    assert event["user_id"] == "u7" and event["session_id"] == "s-7"


def _interactions(world: synthetic.World, event: dict[str, Any],
                  rng: np.random.Generator) -> list[dict[str, Any]]:
    """What the synthetic shoppers do with a served slate (clicks, some purchases)."""
    user = world.users.index(event["user_id"])
    out = []
    for item in event["slate"]:
        idx = world.items.index(item["item_id"])
        p = synthetic.click_probability(world, user, np.array([idx]), np.array([item["position"]]))
        if rng.random() < 3 * p[0]:  # a keen crowd: enough clicks in a small test
            base = {"user_id": event["user_id"], "session_id": event["session_id"],
                    "request_id": event["request_id"], "item_id": item["item_id"],
                    "dwell_ms": None, "position": item["position"]}
            t = event["event_time"] + 2_000 + 100 * item["position"]
            out.append(base | {"event_id": str(uuid.uuid4()), "event_time": t, "type": "click",
                               "revenue": 0.0})
            if rng.random() < 0.3:
                out.append(base | {"event_id": str(uuid.uuid4()), "event_time": t + 5_000,
                                   "type": "purchase", "revenue": float(world.price[idx])})
    return out


def _hour(ms: int, up: bool = False) -> str:
    hour = (ms // 3_600_000 + (1 if up else 0)) * 3_600_000
    return datetime.fromtimestamp(hour / 1000, UTC).strftime("%Y-%m-%dT%H")


def _job_topics(suffix: str) -> JobConfig:
    return JobConfig(serving_topic=f"m.serving.{suffix}", interactions_topic=f"m.inter.{suffix}",
                     feature_log_topic=f"m.logged.{suffix}",
                     labelled_topic=f"m.labelled.{suffix}", unmatched_topic=f"m.unmatched.{suffix}",
                     late_topic=f"m.late.{suffix}", dead_letter_topic=f"m.dlq.{suffix}",
                     lineage_topic=f"m.lineage.{suffix}",
                     feature_updates_topic=f"m.features.{suffix}", group_id=f"g-{suffix}",
                     bounded=True,
                     startup="earliest-offset", run_id=f"models-{suffix}")


def _traffic_through_the_job(kafka: KafkaConfig, home: PathsConfig, world: synthetic.World,
                             hour_ms: int, seed: int) -> tuple[JobConfig, list[dict[str, Any]]]:
    """Serve 160 requests (no model yet: popularity, uniform exploration) stamped across one
    past hour into fresh topics, add the shoppers' clicks, run the feedback job over them."""
    job = _job_topics(uuid.uuid4().hex[:8])
    admin = KafkaAdminClient(**kafka.client_kwargs())
    admin.create_topics([NewTopic(t, 1, 1) for t in (job.serving_topic, job.interactions_topic,
                                                      *job.output_topics)])
    admin.close()
    logged: list[dict[str, Any]] = []
    sink = KafkaSink(kafka, topic=job.serving_topic)

    def tee(event: dict[str, Any]) -> None:
        logged.append(event)
        sink(event)

    store = feature_store(FeastConfig(), home, apply=True)
    service = SlateService(replace(CFG, seed=seed), Registry.from_paths(home), store, tee)
    rng = np.random.default_rng(seed)
    for r in range(160):
        user = world.users[r % len(world.users)]
        cands = list(rng.choice(world.items, 20, replace=False))
        service.rank(user, f"s-{user}", cands, 5, event_ms=hour_ms + r * 15_000)
    sink.close()
    assert sink.stats()["sent"] == 160 and all(e["fallback"] for e in logged)
    with EventProducer(kafka) as producer:
        for event in logged:
            for interaction in _interactions(world, event, rng):
                producer.interaction(interaction, topic=job.interactions_topic)
    run_job(job, kafka, FeastConfig(), home)
    return job, logged


def test_the_loop_closes(kafka: KafkaConfig, home: PathsConfig,
                         capsys: pytest.CaptureFixture[str]) -> None:
    # 1. Two past hours of served slates and clicks go through the feedback job. (Two runs:
    #    the job logs the newest feature row per entity per flush, so a replay squeezed into
    #    one flush leaves no history before the hour it replays; the first hour provides it.)
    world = synthetic.make_world(n_users=30, n_items=40, seed=4)
    hour = (int(time.time() * 1000) // 3_600_000 - 3) * 3_600_000
    _traffic_through_the_job(kafka, home, world, hour, seed=11)
    job, _ = _traffic_through_the_job(kafka, home, world, hour + 3_600_000, seed=12)

    # 2. Train on the second hour; lineage names its job run, row count and offsets, and the
    #    impressions got point-in-time features from the job's offline feature log.
    window = f"{_hour(hour + 3_600_000)}..{_hour(hour + 3_600_000, up=True)}"
    rc = loopline(["train", "--slice", window, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    trained = json.loads(out)
    slice_ = trained["lineage"]["slice"]
    assert slice_["row_count"] == 160 * 5
    assert slice_["sources"][job.serving_topic] == {"0": [0, 159]}
    assert slice_["job_run_ids"] == [job.run_id]
    assert trained["metrics"]["feature_coverage"] > 0.5
    version = trained["version"]

    # 3. Serve the new version with features from Feast; its slate is a ServingEvent on Kafka.
    assert loopline(["models", "rollout", version, "--full"]) == 0
    feature_logs_sent: list[dict[str, Any]] = []
    live = SlateService(CFG, Registry.from_paths(home), feature_store(FeastConfig(), home),
                        KafkaSink(kafka), feature_log=FeatureLogger(feature_logs_sent.append, 1.0))
    live.warm()
    payload = {"user_id": world.users[0], "session_id": "s-new",
               "candidates": list(world.items[:25]), "k": 5}
    body, _, event = serve_and_read_back(kafka, live, payload)
    assert event["model_version"] == version and not event["fallback"], live.health()
    assert event["slate"] == body["slate"]

    # 4. The job stopped at the end of its input (the last event at most `last_input` ms) and
    #    serving went on until now: every value it served is at least that pause old, and the
    #    logged staleness says so (the job's online rows carry their own event times).
    last_input = hour + 2 * 3_600_000 + 10_000  # last slate + 15 s steps, clicks +7.5 s
    logged = feature_logs.parse([default_codec().encode(FEATURE_LOG, r)
                                 for r in feature_logs_sent])
    assert logged.requests == 1 and logged.malformed == Counter()
    pause = event["event_time"] - last_input
    for view, stale in consistency.staleness(logged.frame).items():
        assert stale["count"] > 0, view
        assert stale["histogram"]["edges_ms"][0] >= pause > 0, (view, stale)  # the minimum
        assert stale["max_ms"] <= event["event_time"] - hour, (view, stale)
