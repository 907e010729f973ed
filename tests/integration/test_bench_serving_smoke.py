"""`loopline bench serving --smoke` end to end against the session's Kafka and Redis: the sweep
runs, the result is well formed, and its accounting closes (every answered request counted by
serving and delivered to Kafka, every 503 counted). Times are not asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from infra.redis_server import RedisEndpoint
from loopline.kafka import KafkaConfig

pytestmark = pytest.mark.integration


def test_serving_bench_smoke(kafka: KafkaConfig, redis: RedisEndpoint, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "serving", "--json", "--smoke", "--results-dir", str(tmp_path),
                 "--store", "redis", "--concurrency", "1,8", "--level-seconds", "2",
                 "--serving-workers", "2", "--kafka", kafka.bootstrap_servers,
                 "--redis", redis.connection_string])
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads(out)
    assert len(list(tmp_path.glob("serving-*.json"))) == 1
    detail = doc["details"]["redis"]
    assert detail["workers"] == 2 and detail["raw"]["per_s"] > 0
    assert [lv["concurrency"] for lv in detail["levels"]] == [1, 8]
    answered = sum(lv["answered"] for lv in detail["levels"])
    shed = sum(lv["shed"] for lv in detail["levels"])
    assert answered > 0 and all(lv["error_count"] == 0 for lv in detail["levels"])
    health = detail["health"]
    # Final counts: every worker's taken after the sweep's last answer (bench.suites.serving)
    assert len(health["workers"]) == 2 and health["settled"], health
    assert health["counts"]["requests"] == answered and health["counts"]["shed"] == shed, health
    assert health["events"]["delivered"] == answered and health["events"]["pending"] == 0
    for level in detail["levels"]:
        assert level["loadgen_cpu_s"] >= 0 and level["server_cpu_ms_per_request"] > 0
        assert len(level["load_average_before"]) == 3
    names = {f["name"] for f in doc["figures"]}
    assert "serving answered p99 at concurrency 8, redis" in names
