"""Resource faults: the job's Python worker dies (SIGKILL, as the OOM killer does) on every
attempt. The job restarts a bounded number of times (job.restart_attempts), then fails cleanly:
it ends FAILED instead of looping, every failure names the operator (task) that lost its
worker, and the final error says that recovery was suppressed after the configured attempts.
"""

from __future__ import annotations

import json
import re
import threading
import time
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from bench.reliability import harness as h
from bench.reliability.workload import hour_aligned_past
from infra.errors import FlinkJobError
from infra.flink_cluster import FlinkCluster
from infra.flink_jobs import TERMINAL_STATES, failure_report, job_state
from loopline.kafka import KafkaConfig
from schemas.producer import EventProducer
from tests.integration.feedback_case import _serving, case_job, produce_case

pytestmark = pytest.mark.integration

ATTEMPTS = 2


# The stable operator names of jobs/feedback/pipeline.py (and its source table) that a task
# running Python code can carry.
OPERATORS = ("end-of-input-watermark", "decode-validate", "label-join", "feature-deltas",
             "window-features", "slice-buffer", "partition-writer")


def test_python_worker_killed_on_every_attempt_fails_cleanly_naming_the_operator(
    kafka: KafkaConfig, flink_cluster: FlinkCluster, tmp_path: Path
) -> None:
    base = case_job()
    job = replace(base, bounded=False, checkpoint_interval_ms=2_000, restart_attempts=ATTEMPTS,
                  restart_delay_ms=1_000, job_name=f"loopline-feedback-{base.group_id}")
    produce_case(kafka, job)
    flink_cluster.up()
    stop = threading.Event()

    def trickle() -> None:  # a live stream: the operators keep calling their worker
        t = hour_aligned_past(2)
        with EventProducer(kafka) as producer:
            n = 0
            while not stop.is_set():
                producer.serving(_serving(f"tick-{n}", t + n * 1000, "u9", "ab"),
                                 topic=job.serving_topic)
                producer.flush()
                n += 1
                stop.wait(0.5)

    outcome: dict[str, object] = {}

    def submit_attached() -> None:  # `loopline submit --attached`: waits for the job's end
        try:
            h.submit(flink_cluster, job, tmp_path / "home", attached=True)
            outcome["error"] = None
        except FlinkJobError as exc:
            outcome["error"] = str(exc)

    feeder = threading.Thread(target=trickle, daemon=True)
    client = threading.Thread(target=submit_attached, daemon=True)
    kills: list[dict[str, object]] = []
    client.start()
    feeder.start()
    started = time.monotonic()
    job_id = None
    try:
        job_id = h.wait_until(lambda: h.job_id_by_name(flink_cluster, job.job_name), 180,
                              "the job submitted")
        deadline = time.monotonic() + 300
        while (state := job_state(job_id, flink_cluster)) not in TERMINAL_STATES:
            assert time.monotonic() < deadline, f"job still {state} after {len(kills)} kills"
            assert len(kills) <= ATTEMPTS + 1, f"restarts were not bounded: {len(kills)} kills"
            workers = h.python_workers(flink_cluster)
            if workers and h.all_tasks_running(flink_cluster, job_id):
                seen = len(h.exception_entries(flink_cluster, job_id))
                for proc in workers:
                    with suppress(psutil.NoSuchProcess):
                        proc.kill()
                kills.append({"at_s": round(time.monotonic() - started, 1),
                              "pids": [p.pid for p in workers]})

                def handled(n: int = seen) -> bool:  # this failure is recorded (or the end)
                    return (len(h.exception_entries(flink_cluster, job_id)) > n
                            or job_state(job_id, flink_cluster) in TERMINAL_STATES)

                h.wait_until(handled, 60, "the job to notice its dead Python worker")
            time.sleep(0.5)
        ended = time.monotonic() - started
        client.join(timeout=120)
    finally:
        stop.set()
        feeder.join(timeout=10)
        if job_id is not None and job_state(job_id, flink_cluster) not in TERMINAL_STATES:
            h.cancel_and_wait(flink_cluster, job_id)
        flink_cluster.up()

    entries = h.exception_entries(flink_cluster, job_id)
    error = str(outcome.get("error"))
    figures = {
        "state": state, "kills": kills, "failures_recorded": len(entries),
        "seconds_to_end": round(ended, 1), "report": failure_report(job_id, flink_cluster),
        "client_error": error[:2000],
    }
    print("resource-fault figures:", json.dumps(figures, indent=1))
    assert state == "FAILED"
    # attempts + 1 failures: the first, then one per restart; the last one is final.
    assert len(kills) == ATTEMPTS + 1 and len(entries) == ATTEMPTS + 1, figures
    # What `loopline submit --attached` prints: the operator, why, and that restarts ran out.
    assert f"maxFailuresPerInterval={ATTEMPTS}" in error, error
    assert "its Python worker died" in error, error
    failed_operators = re.findall(r"operator '([^']+)' failed", error)
    assert len(failed_operators) == ATTEMPTS + 1, error
    assert all(any(op in chain for op in OPERATORS) for chain in failed_operators), error
