"""Smoke variants of the benchmark suites: each runs end to end on tiny inputs against the
session's Kafka/Redis and must produce a well-formed result (figures with both sides, machine
facts, a JSON file). Times are not asserted: they depend on the machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from infra.redis_server import RedisEndpoint
from loopline.kafka import KafkaConfig

pytestmark = pytest.mark.integration


def _bench(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> dict[str, Any]:
    code = main(["bench", *args, "--json", "--smoke", "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    doc: dict[str, Any] = json.loads(out)
    written = list(tmp_path.glob(f"{doc['suite']}-*.json"))
    assert len(written) == 1
    assert json.loads(written[0].read_text())["figures"] == doc["figures"]
    machine = doc["machine"]
    assert machine["cpu_count"] >= 1 and len(machine["load_average_before"]) == 3
    assert machine["load_average_after"] and machine["packages"]["apache-flink"]
    assert doc["parameters"]["smoke"] is True
    return doc


def _check_figures(doc: dict[str, Any], names: list[str], baseline: bool = True) -> None:
    by_name = {f["name"]: f for f in doc["figures"]}
    for name in names:
        assert name in by_name, sorted(by_name)
        figure = by_name[name]
        assert isinstance(figure["ours"], float | int) and figure["ours"] >= 0
        if baseline:
            assert isinstance(figure["baseline"], float | int) and figure["baseline"] >= 0
            assert figure["ratio"] is not None


def _endpoints(kafka: KafkaConfig, redis: RedisEndpoint) -> list[str]:
    return ["--kafka", kafka.bootstrap_servers, "--redis", redis.connection_string]


def test_throughput_smoke(kafka: KafkaConfig, redis: RedisEndpoint, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    doc = _bench(capsys, tmp_path, "throughput", "--events", "400", "--store", "sqlite",
                 *_endpoints(kafka, redis))
    _check_figures(doc, ["sustained events/s, sqlite", "end-to-end events/s, sqlite",
                         "stack memory peak, sqlite"])
    detail = doc["details"]["sqlite"]
    assert detail["job"]["status"] == "FINISHED"
    assert detail["baseline"]["consumed"] == doc["details"]["input"]["total"] == 400
    assert detail["job"]["memory"]["peak_by_component_mib"]["job"] > 0
    check = detail["feature_check"]
    for view in ("user_activity", "item_performance"):
        assert check[view]["identical"] == check[view]["same_event_time"]  # same features


def test_freshness_smoke(kafka: KafkaConfig, redis: RedisEndpoint, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    doc = _bench(capsys, tmp_path, "freshness", "--rates", "100", "--store", "redis",
                 "--warmup", "2", "--duration", "5", "--drain", "30",
                 *_endpoints(kafka, redis))
    detail = doc["details"]["redis@100"]
    for side in ("job", "baseline"):
        assert detail[side]["produced"] > 0
        assert detail[side]["delay"]["probes"] > 0
    split = detail["job"]["delay"]["split"]  # the tap on the job's update topic saw probes
    assert split["tap_error"] is None and split["probes"] > 0 and split["tap_records"] > 0
    assert 0 <= split["job"]["p50_s"] <= detail["job"]["delay"]["max_s"]
    _check_figures(doc, ["delay p50 at 100/s target "
                         f"({detail['job']['produced_rate']:,.0f}/s produced), redis"])


def test_lookup_smoke(kafka: KafkaConfig, redis: RedisEndpoint, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    doc = _bench(capsys, tmp_path, "lookup", "--entities", "500", "--requests", "20",
                 "--serving-requests", "20", *_endpoints(kafka, redis))
    _check_figures(doc, [f"lookup {n}x20 {p}, {s}" for n in (1, 100) for p in ("p50", "p99")
                         for s in ("sqlite", "redis")])
    for store in ("sqlite", "redis"):
        assert doc["details"][store]["100x20"]["values_not_present_in_check"] == 0
        serving = doc["details"][f"serving_{store}"]
        assert serving["counts"]["fallback"] == 0, serving["fallback_reasons"]
    _check_figures(doc, ["serving request p99 (100 candidates), sqlite",
                         "serving request p99 with feature logging (100 candidates), sqlite"])
    logged = doc["details"]["feature_log_sqlite"]
    assert logged["feature_log"]["logged"] > 0 and logged["fallbacks"] == 0
    assert logged["bytes"]["feature_log"] > logged["bytes"]["serving_event"] > 0


def test_attribution_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _bench(capsys, tmp_path, "attribution", "--users", "2000", "--no-refuters")
    _check_figures(doc, ["attribution runtime, 2,000 users"])
    detail = doc["details"]["2000"]
    assert set(detail["estimated_uplift"]) == set(detail["planted_uplift"])


def test_soak_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Starts its own Kafka and Flink cluster (as the CLI does), one kill, a short stream."""
    doc = _bench(capsys, tmp_path, "soak", "--kills", "1", "--slates", "300")
    by_name = {f["name"]: f for f in doc["figures"]}
    assert by_name["labelled requests lost"]["ours"] == 0
    assert by_name["labelled requests lost"]["baseline"] == 0
    assert by_name["labelled impressions doubled in the slice log"]["ours"] == 0
    _check_figures(doc, ["time until caught up with the input"])
    kills, baseline = doc["details"]["kills"], doc["details"]["baseline"]
    assert kills["exact"] and baseline["exact"], doc["details"]
    assert 1 <= kills["restarts"] <= 2 and baseline["restarts"] == 0
    assert len(kills["kills"]) == 1 and kills["kills"][0]["killed_pids"] >= 2


def test_writer_smoke(kafka: KafkaConfig, redis: RedisEndpoint, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    doc = _bench(capsys, tmp_path, "writer", "--events", "400", "--writer-entities", "100",
                 *_endpoints(kafka, redis))
    _check_figures(doc, [f"writer updates/s, {s}" for s in ("sqlite", "redis")])
    for store in ("sqlite", "redis"):
        detail = doc["details"][store]
        assert detail["writer"]["records_in"] == detail["baseline"]["records_in"] == 400
        # 400 updates drawn over 100 entities: one row per entity per batch (one batch
        # unless polls split it), where the baseline writes every update.
        ours, distinct = detail["writer"], doc["details"]["input"]["distinct_entities"]
        assert distinct <= ours["rows_total"] <= distinct * ours["batches"]
        assert distinct < 400 == detail["baseline"]["rows_total"]
