"""Metrics the ecosystem's way: the feedback job with Flink's Prometheus reporter on, a real
Prometheus scraping it, and the `loopline.*` counters read back through Prometheus' HTTP API
equal to the job's reconciliation from its durable outputs (jobs/reconcile.py).

The job runs unbounded in the mini-cluster (a bounded one ends, and its endpoint with it,
before a scrape is guaranteed) and is cancelled once outputs and metrics have settled.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bench.reliability.harness import unique_job
from feature_repo.store import FeastConfig
from infra import process
from infra.metrics import MetricsConfig
from infra.prometheus_server import PrometheusQueryError, PrometheusServer
from jobs.feedback.run import run
from jobs.reconcile import Reconciliation, reconcile
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from schemas.producer import EventProducer
from tests.integration.feedback_case import (
    EXPECTED_COUNTS,
    MIN,
    T,
    _act,
    _serving,
    produce_case,
)

pytestmark = pytest.mark.integration

COUNTERS = ("input", "joined", "unmatched", "late", "dead_lettered")
# Inputs of the case (feedback_case) plus the two watermark ticks below.
INPUTS = EXPECTED_COUNTS["input"] + 2
DASHBOARD = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "loopline.json"
SETTLE_S = 300  # generous: two cores shared with JVM start-ups and other engineers' tests


def counters_in_prometheus(prometheus: PrometheusServer, job_id: str) -> dict[str, float]:
    """Each `loopline.<name>` counter summed over operators and subtasks of the job (whatever
    the scope prefix: the operator group may move, the metric group 'loopline' stays)."""
    sums = {}
    for name in COUNTERS:
        result = prometheus.query(
            f'sum({{__name__=~"flink_.*_loopline_{name}", job_id="{job_id}"}})'
        )
        sums[name] = float(result[0]["value"][1]) if result else float("nan")
    return sums


def figures(rec: Reconciliation) -> dict[str, float]:
    return {name: float(getattr(rec, name)) for name in COUNTERS}


def _settled(read: Any, timeout_s: float, interval_s: float = 2.0) -> Any:
    """The value of read() once two consecutive reads `interval_s` apart agree."""
    deadline = time.monotonic() + timeout_s
    last = read()
    while time.monotonic() < deadline:
        time.sleep(interval_s)
        current = read()
        if current == last:
            return current
        last = current
    return last


@pytest.fixture(scope="module")
def scraped_run(
    kafka: KafkaConfig,
    prometheus: PrometheusServer,
    metrics_config: MetricsConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """Run the case unbounded with the reporter on; the settled reconciliation, what
    Prometheus holds for the job, and the reporter's listen addresses."""
    job = unique_job("t", bounded=False, startup="earliest-offset")
    produce_case(kafka, job)
    with EventProducer(kafka) as producer:
        # Later events on both topics move the watermark past every window of the case, so
        # every slate closes in an unbounded run too (the ticks' own windows stay open).
        producer.serving(_serving("r-tick", T + 90 * MIN, "u9", "z"), topic=job.serving_topic)
        producer.interaction(_act("tick", T + 90 * MIN, "u9", "z"), topic=job.interactions_topic)
    paths = PathsConfig(home=tmp_path_factory.mktemp("home"), jars=PathsConfig().jars).resolved()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOOPLINE_METRICS_ENABLED", "true")
        started = run(job, kafka, FeastConfig(), paths, wait=False)
    job_id = str(started.job_id)
    try:
        # Every input consumed and every case slate closed, then nothing changes any more.
        assert process.wait_until(
            lambda: (lambda r: r.input == INPUTS and r.joined_serving >= 4)(reconcile(kafka, job)),
            SETTLE_S, interval_s=2,
        ), reconcile(kafka, job).as_dict()
        expected = figures(_settled(lambda: reconcile(kafka, job), 60, interval_s=5))
        first, last = metrics_config.flink_port_range
        listening = {p: process.listen_addresses(p) for p in range(first, last + 1)}
        # Scraped every second: wait until Prometheus has caught up with the outputs, or has
        # stopped changing (a counter that never catches up is what the tests report).
        process.wait_until(lambda: counters_in_prometheus(prometheus, job_id) == expected, 60)
        scraped = _settled(lambda: counters_in_prometheus(prometheus, job_id), 30, interval_s=3)
        dashboard = dashboard_results(prometheus)
    finally:
        started.cancel()
    return {"expected": expected, "scraped": scraped, "listening": listening,
            "dashboard": dashboard}


def dashboard_results(prometheus: PrometheusServer) -> dict[str, int | str]:
    """Every query of the optional Grafana dashboard, run against the live job: the number of
    series it returns, or Prometheus' error."""
    results: dict[str, int | str] = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$job", ".*").replace("$__rate_interval", "1m")
            try:
                results[expr] = len(prometheus.query(expr))
            except PrometheusQueryError as exc:
                results[expr] = str(exc)
    return results


def test_the_reporter_listens_on_loopback_and_prometheus_has_every_counter(
    scraped_run: dict[str, Any],
) -> None:
    bound = {port: addrs for port, addrs in scraped_run["listening"].items() if addrs}
    assert bound and all(addrs == {"127.0.0.1"} for addrs in bound.values()), bound
    assert all(value > 0 for value in scraped_run["scraped"].values()), scraped_run["scraped"]
    assert all(value > 0 for value in scraped_run["expected"].values()), scraped_run["expected"]
    assert scraped_run["expected"]["input"] == INPUTS


def test_every_dashboard_query_returns_series_for_the_job(scraped_run: dict[str, Any]) -> None:
    dashboard = scraped_run["dashboard"]
    assert dashboard and all(isinstance(n, int) and n > 0 for n in dashboard.values()), dashboard


# Every counter, those incremented in event-time timers too (the label join closes slates
# and expires waiting interactions in timers). Before the JVM operators, PyFlink 2.2.1 dropped
# Counter.inc() made in a Python on_timer (Prometheus showed joined 5 vs 9, unmatched 4 vs 5).
@pytest.mark.parametrize("counter", ["input", "joined", "unmatched", "late", "dead_lettered"])
def test_counters_equal_the_reconciliation(scraped_run: dict[str, Any], counter: str) -> None:
    assert scraped_run["scraped"][counter] == scraped_run["expected"][counter], scraped_run
