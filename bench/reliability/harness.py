"""Shared steps of the reliability tests and the soak benchmark: topics, producing,
submitting to the standalone cluster, reading its REST API (restarts, checkpoints,
exceptions), stopping with --drain, killing processes, and reading back what the job left
(Feast online values, Parquet slices)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
from feast import FeatureStore
from kafka.admin import KafkaAdminClient, NewTopic

from bench.errors import BenchRunError
from bench.reliability.workload import Workload
from feature_repo import names
from infra.errors import FlinkJobError
from infra.flink_cluster import FlinkCluster
from infra.flink_jobs import TERMINAL_STATES, cancel_job, flink_run, job_state
from jobs.config import JobConfig
from jobs.feedback import run as job_run
from jobs.transforms import slices
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from schemas.producer import EventProducer


def unique_job(prefix: str = "t", **overrides: Any) -> JobConfig:
    """A job config on fresh, uniquely named topics (and group and run id)."""
    suffix = uuid.uuid4().hex[:8]
    fields: dict[str, Any] = dict(
        serving_topic=f"{prefix}.serving.{suffix}",
        interactions_topic=f"{prefix}.interactions.{suffix}",
        feature_log_topic=f"{prefix}.features.logged.{suffix}",
        labelled_topic=f"{prefix}.labelled.{suffix}",
        unmatched_topic=f"{prefix}.unmatched.{suffix}",
        late_topic=f"{prefix}.late.{suffix}", dead_letter_topic=f"{prefix}.dlq.{suffix}",
        lineage_topic=f"{prefix}.lineage.{suffix}",
        feature_updates_topic=f"{prefix}.features.{suffix}", group_id=f"g-{suffix}",
        run_id=f"{prefix}-{suffix}",
    )
    return JobConfig(**{**fields, **overrides})  # an override may replace a topic


def create_topics(kafka: KafkaConfig, job: JobConfig) -> None:
    """The job's input and output topics, one partition each (partition order is known)."""
    admin = KafkaAdminClient(**kafka.client_kwargs())
    try:
        admin.create_topics([NewTopic(t, 1, 1) for t in (job.serving_topic,
                                                          job.interactions_topic,
                                                          *job.output_topics)])
    finally:
        admin.close()


def merged(workload: Workload) -> list[tuple[str, dict[str, Any]]]:
    """Serving events and interactions interleaved in event-time order, as a shop emits them."""
    tagged = [(e["event_time"], 0, "serving", e) for e in workload.serving]
    tagged += [(e["event_time"], 1, "interaction", e) for e in workload.interactions]
    tagged.sort(key=lambda t: (t[0], t[1]))
    return [(kind, event) for _, _, kind, event in tagged]


def produce(kafka: KafkaConfig, job: JobConfig, events: list[tuple[str, dict[str, Any]]],
            seconds: float = 0.0, producer: EventProducer | None = None) -> None:
    """Publish `events` (from merged()) spread evenly over `seconds` of wall time."""
    own = producer is None
    out = producer or EventProducer(kafka)
    try:
        start, batch = time.monotonic(), max(1, len(events) // max(1, int(seconds * 4)))
        for n, (kind, event) in enumerate(events):
            if kind == "serving":
                out.serving(event, topic=job.serving_topic)
            else:
                out.interaction(event, topic=job.interactions_topic)
            if seconds and n % batch == batch - 1:
                out.flush()
                delay = start + seconds * (n + 1) / len(events) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        out.flush()
    finally:
        if own:
            out.close()


def caught_up(kafka: KafkaConfig, job: JobConfig) -> bool:
    """The job's committed offsets (committed on checkpoints) reached the end of its inputs."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka.client_kwargs(), group_id=job.group_id,
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, 0) for t in (job.serving_topic, job.interactions_topic)]
        ends = consumer.end_offsets(tps)
        return all((consumer.committed(tp) or 0) >= ends[tp] for tp in tps)
    finally:
        consumer.close()


# -- the standalone cluster ----------------------------------------------------------------
def job_env(job: JobConfig, home: Path) -> dict[str, str]:
    """LOOPLINE_* variables that make `flink run -py jobs/feedback/run.py` use `job`."""
    env = {}
    for f in fields(job):
        value = getattr(job, f.name)
        if value is not None and isinstance(value, (str, int, float, bool)):
            env[f"LOOPLINE_JOB_{f.name.upper()}"] = str(value)
    env["LOOPLINE_PATHS_HOME"] = str(home)
    env["LOOPLINE_PATHS_JARS"] = str(PathsConfig().jars.resolve())
    return env


@contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def submit(cluster: FlinkCluster, job: JobConfig, home: Path, attached: bool = False) -> str:
    """Submit the feedback job with `job` as its config; the job id.

    Detached for unbounded jobs (the test drives and stops them); attached waits for the end.
    """
    args = [] if attached else ["--detached"]
    if job.bounded:
        args.append("--bounded")
    with environ(job_env(job, home)):
        submitted = flink_run(Path(job_run.__file__), args, detached=not attached,
                              cluster=cluster)
    if not submitted.job_id:
        raise BenchRunError(f"flink run printed no job id: {submitted.output[-2000:]}")
    return submitted.job_id


def drainable(job: JobConfig) -> JobConfig:
    """`job` with an idle timeout long enough that its source is never idle at `stop --drain`.

    Flink 2.2 drops the final MAX_WATERMARK of a drain when the source is idle (FLINK-40499),
    so no event-time timer fires: open slates, slice partitions and Feast buffers would stay
    in the savepoint instead of being written. Tests feed both topics until the end, so a
    long idle timeout costs nothing here.
    """
    return replace(job, idle_timeout_ms=max(job.idle_timeout_ms, 900_000))


@contextmanager
def running_job(cluster: FlinkCluster, job: JobConfig, home: Path) -> Iterator[str]:
    """A detached job that is cancelled on the way out unless it already ended."""
    job_id = submit(cluster, job, home)
    try:
        yield job_id
    finally:
        with suppress(Exception):
            if job_state(job_id, cluster) not in TERMINAL_STATES:
                cancel_and_wait(cluster, job_id)


def cancel_and_wait(cluster: FlinkCluster, job_id: str) -> None:
    cancel_job(job_id, cluster)
    wait_until(lambda: job_state(job_id, cluster) in TERMINAL_STATES, 60, "job cancelled")


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str,
               interval_s: float = 0.5, context: Callable[[], Any] | None = None) -> Any:
    """Poll `predicate` until truthy; on timeout raise BenchRunError naming `what` and
    `context()` (the state seen last)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = ""
            if context is not None:
                try:
                    seen = f"; state: {context()}"
                except Exception as exc:  # the context is a diagnosis aid, never the failure
                    seen = f"; state unavailable: {exc}"
            raise BenchRunError(f"timed out after {timeout_s:.0f}s waiting for: {what}{seen}")
        time.sleep(interval_s)


def job_snapshot(cluster: FlinkCluster, job_id: str) -> dict[str, Any]:
    """What a timed-out wait on a cluster job should report: states, restarts, failures."""
    details = cluster.rest("GET", f"/jobs/{job_id}")
    return {
        "state": details["state"],
        "vertices": {v["name"][:40]: v["status"] for v in details["vertices"]},
        "restarts_metric": restarts(cluster, job_id),
        "failures": failure_count(cluster, job_id),
        "taskmanagers": cluster.taskmanager_pids(),
        "overview": cluster.overview(),
        "checkpoints": checkpoints(cluster, job_id).get("counts"),
    }


def job_id_by_name(cluster: FlinkCluster, name: str) -> str | None:
    """The id of the newest job called `name` the cluster knows, if any."""
    jobs = [j for j in cluster.rest("GET", "/jobs/overview")["jobs"] if j["name"] == name]
    return max(jobs, key=lambda j: j["start-time"])["jid"] if jobs else None


def all_tasks_running(cluster: FlinkCluster, job_id: str) -> bool:
    details = cluster.rest("GET", f"/jobs/{job_id}")
    if details["state"] != "RUNNING":
        return False
    return all(v["status"] in ("RUNNING", "FINISHED") for v in details["vertices"])


def checkpoints(cluster: FlinkCluster, job_id: str) -> dict[str, Any]:
    """REST checkpoint statistics: counts and the latest completed / restored checkpoint."""
    return dict(cluster.rest("GET", f"/jobs/{job_id}/checkpoints"))


def completed_checkpoints(cluster: FlinkCluster, job_id: str) -> int:
    return int(checkpoints(cluster, job_id)["counts"]["completed"])


def next_checkpoint(cluster: FlinkCluster, job_id: str, timeout_s: float) -> int:
    """Wait until one more checkpoint than now has completed; the new count."""
    base = completed_checkpoints(cluster, job_id)

    def newer() -> int:
        count = completed_checkpoints(cluster, job_id)
        return count if count > base else 0

    return int(wait_until(newer, timeout_s, f"a checkpoint after #{base}"))


def restarts(cluster: FlinkCluster, job_id: str) -> int:
    """How often the job restarted: the `numRestarts` job metric (while the job is known)."""
    data = cluster.rest("GET", f"/jobs/{job_id}/metrics?get=numRestarts") or []
    return int(float(data[0]["value"])) if data else 0


def failure_count(cluster: FlinkCluster, job_id: str) -> int:
    """Failovers so far: the job's exception history (numRestarts can lag behind it)."""
    return len(exception_entries(cluster, job_id))


def exception_entries(cluster: FlinkCluster, job_id: str) -> list[dict[str, Any]]:
    """The job's failure history (one entry per failover), newest first."""
    data = cluster.rest("GET", f"/jobs/{job_id}/exceptions") or {}
    return list(data.get("exceptionHistory", {}).get("entries", []))


def stop_with_drain(cluster: FlinkCluster, job_id: str, savepoints: Path,
                    timeout_s: float = 180) -> str:
    """`flink stop --drain`: MAX_WATERMARK ends the stream like a bounded input (open slates
    close, slice partitions and Feast buffers flush), then a final savepoint; the end state."""
    body = f'{{"drain": true, "targetDirectory": "{savepoints.resolve().as_uri()}"}}'
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{cluster.rest_url}/jobs/{job_id}/stop", data=body.encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        trigger = json.loads(response.read())["request-id"]

    def done() -> dict[str, Any] | None:
        status = cluster.rest("GET", f"/jobs/{job_id}/savepoints/{trigger}")
        return status if status["status"]["id"] == "COMPLETED" else None

    status = wait_until(done, timeout_s, "stop --drain savepoint")
    failure = (status.get("operation") or {}).get("failure-cause")
    if failure:
        raise FlinkJobError(f"stop --drain of {job_id} failed: {failure}")
    return str(wait_until(lambda: (s := job_state(job_id, cluster)) in TERMINAL_STATES and s,
                          timeout_s, "job ended after stop --drain"))


# -- processes -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Kill:
    pid: int
    children: int
    at: float  # time.monotonic()


def kill_tree(pid: int) -> Kill:
    """SIGKILL a process and its descendants (a TaskManager and its Python workers: a lost
    node), as a supervisor or the OOM killer would."""
    proc = psutil.Process(pid)
    children = proc.children(recursive=True)
    at = time.monotonic()
    for p in [proc, *children]:
        with suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    psutil.wait_procs([proc, *children], timeout=10)
    return Kill(pid, len(children), at)


def python_workers(cluster: FlinkCluster) -> list[psutil.Process]:
    """The Python UDF worker processes of the cluster's live TaskManagers."""
    out = []
    for pid in cluster.taskmanager_pids():
        with suppress(psutil.NoSuchProcess):
            out += [c for c in psutil.Process(pid).children(recursive=True)
                    if "python" in os.path.basename(c.exe() or "").lower()]
    return out


# -- what the job left ---------------------------------------------------------------------
def write_features(kafka: KafkaConfig, job: JobConfig, paths: PathsConfig) -> Any:
    """Run the job's Feast writer up to the end of its updates topic, as the writer deployment
    beside a cluster job would have by now (a job on a cluster writes no Feast itself)."""
    from feature_repo.store import FeastConfig
    from jobs.feedback.run import writer_config
    from jobs.writer import FeatureWriter

    feast = FeastConfig()
    with FeatureWriter(writer_config(job, feast, job.run_id or "test"), kafka, feast,
                       paths) as writer:
        return writer.drain()


def online_snapshot(store: FeatureStore, users: list[str], items: list[str]
                    ) -> dict[str, dict[str, dict[str, Any]]]:
    """{view: {entity: {feature: value}}} as served now by the online store."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for view, key, entities in ((names.USER_ACTIVITY, names.USER_KEY, users),
                                (names.ITEM_PERFORMANCE, names.ITEM_KEY, items)):
        feats = names.FEATURES_BY_VIEW[view]
        got = store.get_online_features(
            features=[f"{view}:{f}" for f in feats],
            entity_rows=[{key: e} for e in entities],
        ).to_dict()
        out[view] = {e: {f: got[f][i] for f in feats} for i, e in enumerate(entities)}
    return out


def feature_mismatches(got: dict[str, dict[str, dict[str, Any]]],
                       want: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Entities whose online values differ from the expected ones (floats to 1e-9)."""
    bad = []
    for view, entities in want.items():
        for entity, values in entities.items():
            have = got.get(view, {}).get(entity, {})
            for name, value in values.items():
                other = have.get(name)
                same = (other is not None and abs(float(other) - float(value)) <= 1e-9
                        if isinstance(value, float) else other == value)
                if not same:
                    bad.append(f"{view}/{entity}/{name}: online {other!r}, expected {value!r}")
    return bad


def labelled_slice_rows(paths: PathsConfig) -> list[dict[str, Any]]:
    """Every row of every Parquet file listed by a labelled-impressions manifest."""
    import json

    rows: list[dict[str, Any]] = []
    root = paths.slices / slices.LABELLED_DATASET
    for manifest in sorted(root.glob("*/_manifest.json")):
        for entry in json.loads(manifest.read_text())["files"]:
            rows += pq.read_table(manifest.parent / entry["name"]).to_pylist()
    return rows


def explain_missing(kafka: KafkaConfig, job: JobConfig, workload: Workload,
                    paths: PathsConfig) -> str:
    """Which requests have no labelled output, where they sat in the stream, and whether the
    slice log has them: the first thing to look at when a reconciliation is short."""
    from jobs.reconcile import read_topic
    from schemas.codec import LABELLED_IMPRESSION, default_codec

    codec = default_codec()
    labelled = {codec.decode(r.value, LABELLED_IMPRESSION)[1]["request_id"]
                for r in read_topic(kafka, job.labelled_topic)}
    in_slices = {r["request_id"] for r in labelled_slice_rows(paths)}
    t0 = workload.serving[0]["event_time"]
    missing = [f"{e['request_id']}@{(e['event_time'] - t0) / 1000:.0f}s"
               f"{'' if e['request_id'] in in_slices else '(not in slices)'}"
               for e in workload.serving if e["request_id"] not in labelled]
    return f"{len(missing)} requests without labelled output: {missing[:40]}"
