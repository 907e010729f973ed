"""A TaskManager killed mid-stream, again and again: the procedure behind the reliability test
(tests/integration/reliability/test_taskmanager_failure.py, CI size) and `loopline bench soak`
(long, beside the same stream undisturbed).

The feedback job runs detached on the standalone cluster with checkpoints every 2 s. A known
stream (workload.py: what an undisturbed run yields is computed in advance) is produced in
parts at a steady pace; in the middle of every part but the last the TaskManager JVM and its
Python workers are SIGKILLed. A standby TaskManager, started by the harness (a supervisor)
at the beginning of that part, takes over and becomes the next one killed.

Why a standby: a standalone cluster cannot start TaskManagers itself, and Flink's default
scheduler fails a restarted job at once with NoResourceAvailableException while no slot is
registered (FLINK-31457). A replacement started only after the kill needs ~4 s to register
here, so each kill cost 3-5 restarts on a busy machine and three kills exhausted the restart
budget. Production standalone setups keep a spare TaskManager for exactly this. After
the last part the job must catch up and is stopped with --drain; then everything it left is
compared with the expectation: reconciliation counts, one slice row per impression with the
right labels, Feast's online values.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.reliability import harness as h
from bench.reliability.workload import (
    MIN,
    Workload,
    build,
    expected_label_rows,
    hour_aligned_past,
    labelled_row_labels,
)
from feature_repo.store import FeastConfig, feature_store
from infra.flink_cluster import FlinkCluster
from infra.flink_jobs import failure_report
from jobs.config import JobConfig
from jobs.reconcile import reconcile
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig


@dataclass(frozen=True)
class KillPlan:
    kills: int = 3
    requests: int = 1_200
    # Event time H+45 min .. H+65 min by default: the hour-H slice partition becomes final
    # (watermark past H+60 min + maturity) mid-stream, across kills; H+1 is written at the
    # drain. A longer soak keeps the span (the workload must stay under the 1 h feature window)
    # and only grows the density.
    span_ms: int = 20 * MIN
    part_s: float = 6.0  # wall time to produce one part
    kill_after_s: float = 3.0  # into a part: records are in flight in every operator
    parts: int | None = None  # default kills + 1; a baseline run uses the same pacing, 0 kills

    @property
    def part_count(self) -> int:
        return self.parts or self.kills + 1


@dataclass
class KillRun:
    """What a run left behind, next to what an undisturbed run yields."""

    job: JobConfig
    paths: PathsConfig
    workload: Workload
    figures: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    duplicates: int = 0
    label_mismatches: int = 0
    feature_mismatches: list[Any] = field(default_factory=list)
    missing: str = ""

    @property
    def expected_counts(self) -> dict[str, Any]:
        return self.workload.expected_counts()

    @property
    def lost_requests(self) -> int:
        return int(self.expected_counts["joined_serving"] - self.counts["joined_serving"])

    @property
    def exact(self) -> bool:
        return (self.counts == self.expected_counts and self.duplicates == 0
                and self.label_mismatches == 0 and not self.feature_mismatches)


def kill_job() -> JobConfig:
    """The job under test: unbounded, checkpoints every 2 s, a 2 min maturity window."""
    return h.drainable(replace(h.unique_job("soak"), bounded=False, startup="earliest-offset",
                               checkpoint_interval_ms=2_000,
                               restart_delay_ms=1_000, maturity_window_ms=2 * MIN))


def run(kafka: KafkaConfig, cluster: FlinkCluster, home: Path, plan: KillPlan,
        say: Callable[[str], None] = print) -> KillRun:
    # A kill can cost two failovers (the soak saw 12 for 10 kills): budget for that; callers
    # check the restarts themselves.
    job = replace(kill_job(), restart_attempts=2 * plan.kills + 3)
    workload = build(plan.requests, hour_aligned_past(3) + 45 * MIN, span_ms=plan.span_ms,
                     maturity_ms=job.maturity_window_ms)
    events = h.merged(workload)
    n = plan.part_count
    parts = [events[i * len(events) // n:(i + 1) * len(events) // n] for i in range(n)]
    h.create_topics(kafka, job)
    kills: list[dict[str, Any]] = []
    figures: dict[str, Any] = {"events": len(events), "requests": plan.requests, "kills": kills}
    cluster.up()  # a TaskManager killed earlier is repaired here
    try:
        with h.environ({"LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}), \
                h.running_job(cluster, job, home) as job_id:
            h.wait_until(lambda: h.all_tasks_running(cluster, job_id), 180, "job running")
            h.next_checkpoint(cluster, job_id, 60)
            started = time.monotonic()
            for k, part in enumerate(parts):
                producer = threading.Thread(target=h.produce, args=(kafka, job, part, plan.part_s))
                producer.start()
                if k < plan.kills:
                    [victim] = cluster.taskmanager_pids()  # the one running the job
                    cluster.start_taskmanager()  # the standby
                    time.sleep(plan.kill_after_s)
                    kills.append(_kill_and_recover(cluster, job_id, k + 1, victim))
                    say(f"taskmanager kill {k + 1}: {json.dumps(kills[-1])}")
                producer.join()
            h.wait_until(lambda: h.caught_up(kafka, job), 300, "job caught up with its inputs")
            figures["caught_up_s"] = round(time.monotonic() - started, 1)
            figures["restarts"] = h.restarts(cluster, job_id)
            history = h.exception_entries(cluster, job_id)
            figures["failovers"] = len(history)
            figures["failure_causes"] = dict(Counter(
                str(e.get("exceptionName", "?")).rsplit(".", 1)[-1] for e in history))
            figures["failure_report"] = failure_report(job_id, cluster)
            figures["checkpoints"] = h.checkpoints(cluster, job_id)["counts"]
            figures["end_state"] = h.stop_with_drain(cluster, job_id, home / "savepoints")
    finally:
        cluster.up()  # leave a healthy cluster behind
    return _verify(kafka, job, workload, PathsConfig(home=home).resolved(), figures)


def _kill_and_recover(cluster: FlinkCluster, job_id: str, n: int, victim: int) -> dict[str, Any]:
    h.wait_until(lambda: (cluster.overview() or {}).get("taskmanagers", 0) >= 2, 120,
                 f"the standby TaskManager registered before kill {n}")
    # Counted from here: a kill can leave more than one entry in the failure history.
    failures = h.failure_count(cluster, job_id)
    kill = h.kill_tree(victim)

    def state() -> dict[str, Any]:
        return h.job_snapshot(cluster, job_id)

    h.wait_until(lambda: h.failure_count(cluster, job_id) > failures, 120,
                 f"failover after kill {n}", context=state)
    detected = time.monotonic() - kill.at
    h.wait_until(lambda: h.all_tasks_running(cluster, job_id), 180, "tasks running again",
                 context=state)
    running = time.monotonic() - kill.at
    # The next kill must restore from a checkpoint taken after this recovery.
    h.next_checkpoint(cluster, job_id, 120)
    restored = h.checkpoints(cluster, job_id)["latest"].get("restored") or {}
    return {
        "killed_pids": 1 + kill.children,
        "restart_detected_s": round(detected, 1),
        "tasks_running_s": round(running, 1),
        "first_checkpoint_s": round(time.monotonic() - kill.at, 1),
        "restored_checkpoint": restored.get("id"),
    }


def _verify(kafka: KafkaConfig, job: JobConfig, workload: Workload, paths: PathsConfig,
            figures: dict[str, Any]) -> KillRun:
    out = KillRun(job, paths, workload, figures)
    out.counts = reconcile(kafka, job).as_dict()
    figures["reconcile"] = out.counts
    if out.counts != out.expected_counts:
        out.missing = h.explain_missing(kafka, job, workload, paths)
    rows = h.labelled_slice_rows(paths)
    keys = [(r["request_id"], r["item_id"]) for r in rows]
    out.duplicates = len(keys) - len(set(keys))
    got = {k: labelled_row_labels(r) for k, r in zip(keys, rows, strict=True)}
    want = expected_label_rows(workload)
    out.label_mismatches = sum(got.get(k) != v for k, v in want.items()) + len(got.keys() - want)
    h.write_features(kafka, job, paths)
    store = feature_store(FeastConfig(), paths)
    online = h.online_snapshot(store, workload.users, workload.items)
    out.feature_mismatches = h.feature_mismatches(online, workload.expected_features(job))
    return out
