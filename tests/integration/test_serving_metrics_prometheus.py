"""Serving's /metrics the ecosystem's way: `loopline serve --workers 2` with metrics on, behind
its bearer token, scraped by a real Prometheus; the scraped counters equal what serving's
/healthz counted and what the clients saw (answered, popularity fallbacks, 503s, ServingEvents
delivered). A wrong token leaves the target down and nothing scraped.

Fallbacks and shedding are made to happen: a canary arm whose model file is unreadable is
served by popularity (each such slate counted with its reason), and admission takes one
request per worker with no waiting, so concurrent clients are refused with 503.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import loadgen
from bench.suites.serving import settled
from infra import process
from infra.prometheus_server import PrometheusServer
from infra.topics import TopicSpec, create_topics, delete_topics
from loopline.kafka import KafkaConfig
from loopline.net import free_port
from models.registry import Registry
from models.rollout import Rollout
from models.slices import SliceRange
from models.training import TrainingConfig, train
from tests.integration.serving_case import broken_version
from tests.unit.models.conftest import SLICE, build_shop, loopline_home

pytestmark = pytest.mark.integration

TOKEN = "metrics-test-token-" + uuid.uuid4().hex[:12]
WORKERS = 2
REPO_ROOT = Path(__file__).resolve().parents[2]
SETTLE_S = 120  # generous: two cores shared with other tests' JVMs


@dataclass
class Serving:
    url: str
    target: str  # host:port, as Prometheus scrapes it
    items: list[str]


@pytest.fixture(scope="module")
def serving(kafka: KafkaConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    """`loopline serve --workers 2` on a home with a trained version (control) and a broken
    canary, its own ServingEvent topic, metrics on, admission of one request per worker."""
    home = tmp_path_factory.mktemp("serving-metrics")
    with loopline_home(home) as paths:
        shop = build_shop(paths)
        version = train(paths, SliceRange.parse(SLICE), shop.store,
                        TrainingConfig(num_boost_round=20)).version
        registry = Registry.from_paths(paths)
        rollout = Rollout(registry)
        rollout.full(version)
        rollout.canary(broken_version(registry), 30)
    topic = f"loopline.test.serving-metrics.{uuid.uuid4().hex[:8]}"
    create_topics(kafka, [TopicSpec(topic, 1, {"message.timestamp.type": "CreateTime"})])
    port = free_port(18300)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_SERVING_")}
    env.update({
        "LOOPLINE_PATHS_HOME": str(home), "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS":
        kafka.bootstrap_servers, "LOOPLINE_SERVING_PORT": str(port),
        "LOOPLINE_SERVING_AUTH_TOKEN": TOKEN, "LOOPLINE_SERVING_METRICS_ENABLED": "true",
        "LOOPLINE_SERVING_EVENT_TOPIC": topic, "LOOPLINE_SERVING_MAX_IN_FLIGHT": "1",
        "LOOPLINE_SERVING_MAX_WAITING": "0",
        # A lookup that overran the default 100 ms budget on a busy machine would fall back
        # too; fallbacks here should be the broken canary's (all are counted either way).
        "LOOPLINE_SERVING_SCORE_TIMEOUT_MS": "10000",
    })
    log = home / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--workers",
                                 str(WORKERS)], cwd=REPO_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return len(httpx.get(f"{url}/healthz", timeout=5).json().get("workers", [])) \
                == WORKERS
        except httpx.HTTPError:
            return False

    try:
        assert process.wait_until(ready, 300, lambda: proc.poll() is None, 0.5), \
            log.read_text(errors="replace")[-2000:]
        yield Serving(url, f"127.0.0.1:{port}", [str(i) for i in shop.world.items[:60]])
    finally:
        process.stop_group(proc)
        delete_topics(kafka, [topic])


def _sum(prometheus: PrometheusServer, expr: str) -> dict[str, float]:
    """`expr`'s result as {label values joined by ',': value} (one label set per series)."""
    out = {}
    for row in prometheus.query(expr):
        labels = {k: v for k, v in row["metric"].items() if k != "__name__"}
        out[",".join(f"{k}={labels[k]}" for k in sorted(labels))] = float(row["value"][1])
    return out


def _scraped(prometheus: PrometheusServer, group: str) -> dict[str, dict[str, float]]:
    """Serving's counters as Prometheus holds them for targets of `group`."""
    def of(name: str, by: str = "") -> dict[str, float]:
        grouping = f" by ({by})" if by else ""
        return _sum(prometheus, f'sum{grouping} (loopline_serving_{name}_total{{group="{group}"}})')

    return {"requests": of("requests", "arm, version, fallback"),
            "fallbacks": of("fallbacks", "reason"), "shed": of("shed"),
            "events": of("events", "outcome")}


def _expected(health: dict[str, Any]) -> dict[str, dict[str, float]]:
    """What Prometheus should hold, from /healthz's counts (zeros are absent series)."""
    requests = {}
    for row in health["arms"]:
        for fallback, n in (("false", row["requests"] - row["fallback"]),
                            ("true", row["fallback"])):
            if n:
                requests[f"arm={row['arm']},fallback={fallback},version={row['version']}"] = n
    events = health["events"]
    return {
        "requests": {k: float(v) for k, v in requests.items()},
        "fallbacks": {f"reason={r}": float(n) for r, n in health["fallback_reasons"].items()},
        "shed": {"": float(health["counts"]["shed"])} if health["counts"]["shed"] else {},
        "events": {f"outcome={o}": float(events[o])
                   for o in ("accepted", "delivered", "dropped", "failed") if events[o]},
    }


def _final_health(url: str, since: float) -> dict[str, Any]:
    deadline = time.monotonic() + SETTLE_S
    while True:
        health: dict[str, Any] = httpx.get(f"{url}/healthz", timeout=30).json()
        if settled(health, since) or time.monotonic() > deadline:
            return health
        time.sleep(0.25)


def _load(serving: Serving, rounds: int = 6) -> dict[str, int]:
    """Closed-loop clients in rounds of 3 s until slates were both model-served and served by
    popularity and a request was shed (a very busy machine may answer few per round); the
    clients' totals."""
    bodies = [{"user_id": f"u{i}", "session_id": "metrics", "candidates": serving.items,
               "k": 10} for i in range(200)]
    port = int(serving.target.rsplit(":", 1)[1])
    seen = {"answered": 0, "fallback": 0, "shed": 0, "error_count": 0}
    for _ in range(rounds):
        out = loadgen.run({"host": "127.0.0.1", "port": port, "token": TOKEN,
                           "bodies": bodies, "concurrency": 8, "duration_s": 3.0,
                           "retry_wait_s": 0.0})
        assert out["error_count"] == 0, out["errors"]
        seen = {k: seen[k] + out[k] for k in seen}
        if seen["shed"] and 0 < seen["fallback"] < seen["answered"]:
            break
    return seen


def test_scraped_counters_equal_healthz_and_the_clients(
        serving: Serving, prometheus: PrometheusServer) -> None:
    clients = _load(serving)
    ended = time.time()  # every answer has arrived: serving counted each before sending it
    assert clients["shed"] > 0 and 0 < clients["fallback"] < clients["answered"], clients

    health = _final_health(serving.url, ended)
    assert settled(health, ended), health
    assert health["counts"]["requests"] == clients["answered"]
    assert health["counts"]["fallback"] == clients["fallback"]
    assert health["counts"]["shed"] == clients["shed"]
    assert health["events"]["delivered"] == clients["answered"]
    expected = _expected(health)
    assert {k.split(",")[0] for k in expected["requests"]} == {"arm=canary", "arm=control"}

    prometheus.add_targets("serving-metrics", [serving.target], bearer_token=TOKEN)
    try:
        # Scraped every second: wait until Prometheus has caught up (a counter that never
        # does is what the assertion below reports).
        process.wait_until(lambda: _scraped(prometheus, "serving-metrics") == expected,
                           SETTLE_S, interval_s=1)
        scraped = _scraped(prometheus, "serving-metrics")
        up = _sum(prometheus, 'up{job="loopline-serving-metrics"}')
    finally:
        prometheus.remove_targets("serving-metrics")
    assert list(up.values()) == [1.0], up
    assert scraped == expected, (scraped, expected, clients)


def test_a_wrong_token_leaves_the_target_down_and_nothing_scraped(
        serving: Serving, prometheus: PrometheusServer) -> None:
    # The endpoint answers with the right token (so what follows is about the token alone).
    metrics = httpx.get(f"{serving.url}/metrics", timeout=30,
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert metrics.status_code == 200 and "loopline_serving_requests" in metrics.text

    prometheus.add_targets("serving-wrong-token", [serving.target],
                           bearer_token="not-the-serving-token-" + uuid.uuid4().hex[:8])
    try:
        assert process.wait_until(
            lambda: bool(prometheus.query('up{job="loopline-serving-wrong-token"} == 0')),
            SETTLE_S, interval_s=1,
        ), prometheus.active_targets()
        [target] = [t for t in prometheus.active_targets()
                    if t["labels"].get("job") == "loopline-serving-wrong-token"]
        scraped = prometheus.query('{group="serving-wrong-token", __name__=~"loopline_.*"}')
    finally:
        prometheus.remove_targets("serving-wrong-token")
    assert target["health"] == "down" and "401" in target["lastError"], target
    assert scraped == []
