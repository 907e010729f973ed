"""The demo's services: a reachable Kafka broker (the local one started if need be), topics of
its own, and the streaming job in the embedded Flink mini-cluster, stopped with a drain.

Each run gets fresh topics named `loopline.demo.<run>.<kind>`, so counts reconcile exactly
and a broker shared with other work is never touched; the previous run's topics are deleted.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.errors import DemoStackError
from feature_repo.store import FeastConfig
from infra.config import ServicesConfig
from infra.kafka_broker import KafkaBroker
from infra.process import port_open
from infra.topics import TopicSpec, create_topics, default_specs, delete_topics
from jobs.config import JobConfig, load_job
from loopline.errors import LooplineError
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from schemas import topics

JOB_TIMEOUT_S = 600.0
# Every input partition of the demo receives events from the first minutes on, so none has to
# be declared idle to let the watermark advance. A short idle timeout hurts here: when the
# job lags behind a day's burst of events for longer than the timeout, Flink marks the
# source partitions idle before it emits their last watermark, and the final hours of the
# day would only close when the next day's events arrive.
IDLE_TIMEOUT_MS = 30 * 60_000
# Simulated events are days old; a broker with time-based retention would delete them.
_KEEP = {"retention.ms": "-1"}


def _endpoints(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise DemoStackError(f"kafka.bootstrap_servers: expected host:port[,...], got "
                                 f"{bootstrap!r}")
        out.append((host.strip("[]"), int(port)))
    return out


def ensure_kafka(kafka: KafkaConfig, services: ServicesConfig, base: PathsConfig) -> str:
    """'reachable' when a broker answers at the configured bootstrap; else start the local
    broker (`loopline infra up kafka`) if that is what the configuration points at."""
    endpoints = _endpoints(kafka.bootstrap_servers)
    if any(port_open(host, port, timeout_s=1.0) for host, port in endpoints):
        return "reachable"
    broker = KafkaBroker(services, base)
    if kafka.bootstrap_servers.strip() != broker.bootstrap_servers:
        raise DemoStackError(
            f"no Kafka broker answers at {kafka.bootstrap_servers} and it is not the local "
            f"broker's address ({broker.bootstrap_servers}) the demo could start; start that "
            "broker or point LOOPLINE_KAFKA_BOOTSTRAP_SERVERS at a running one")
    try:
        broker.up()
    except LooplineError as exc:
        raise DemoStackError(f"could not start the local Kafka broker: {exc}") from exc
    return "started"


def job_config(run_tag: str) -> JobConfig:
    """The feedback job on this run's own topics, read from the start, unbounded."""
    prefix = f"loopline.demo.{run_tag}"
    return load_job(
        serving_topic=f"{prefix}.serving", interactions_topic=f"{prefix}.interactions",
        labelled_topic=f"{prefix}.labelled", unmatched_topic=f"{prefix}.unmatched",
        late_topic=f"{prefix}.late", dead_letter_topic=f"{prefix}.dlq",
        lineage_topic=f"{prefix}.lineage", feature_updates_topic=f"{prefix}.features",
        group_id=f"loopline-demo-{run_tag}",
        startup="earliest-offset", bounded=False, run_id=f"demo-{run_tag}",
        job_name="loopline-feedback-demo",
        idle_timeout_ms=IDLE_TIMEOUT_MS,
        # Off: the demo reconciles the job's inputs against what the simulator published, and
        # its consistency phase reads the log topic itself. (Not the shared default topic.)
        feature_log_topic="",
    )


def feature_log_topic(job: JobConfig) -> str:
    """This run's FeatureLog topic (serving's logged feature vectors; not a job input)."""
    return job.serving_topic.rsplit(".", 1)[0] + ".features.logged"


def demo_topics(job: JobConfig) -> list[str]:
    return [job.serving_topic, job.interactions_topic, *job.output_topics,
            feature_log_topic(job)]


def create_demo_topics(kafka: KafkaConfig, job: JobConfig, input_partitions: int) -> None:
    """This run's topics (inputs partitioned like the real ones) plus the shared schemas topic."""
    inputs = (job.serving_topic, job.interactions_topic)
    specs = [TopicSpec(name, input_partitions if name in inputs else 1,
                       {"message.timestamp.type": "CreateTime", **_KEEP})
             for name in demo_topics(job)]
    specs += [s for s in default_specs(input_partitions) if s.name == topics.SCHEMAS]
    try:
        create_topics(kafka, specs)
    except LooplineError as exc:
        raise DemoStackError(f"could not create the demo topics: {exc}") from exc


def drop_topics(kafka: KafkaConfig, names: list[str]) -> None:
    """Best effort: a previous run's topics (the broker may be gone or another one)."""
    with contextlib.suppress(LooplineError, Exception):
        delete_topics(kafka, [n for n in names if n.startswith("loopline.demo.")])


@dataclass
class StreamingJob:
    """The feedback job running in the background of this process."""

    job: JobConfig
    client: Any  # pyflink JobClient
    run_id: str
    code_version: str
    writer: Any = None  # the Feast writer process beside the job (jobs.writer.WriterProcess)

    def status(self) -> str:
        try:
            status = self.client.get_job_status().result()
        except Exception as exc:  # py4j: the per-job mini-cluster is gone once the job ends
            if "shut down" in str(exc):
                return "FINISHED"
            raise
        return str(getattr(status, "name", status))

    def check_running(self) -> None:
        status = self.status()
        if status not in ("RUNNING", "CREATED", "INITIALIZING", "RESTARTING"):
            raise DemoStackError(
                f"the feedback job {self.run_id} is {status}; see the Flink log under "
                ".venv/lib/python3.11/site-packages/pyflink/log")

    def drain(self, savepoints: Path, timeout_s: float = JOB_TIMEOUT_S) -> str:
        """Stop with a drain: the source injects the end of event time, so the last hours'
        windows close and every open slate is labelled, then the job stops (savepoint)."""
        from pyflink.common.completable_future import CompletableFuture
        from pyflink.java_gateway import get_gateway

        started = time.monotonic()
        # JobClient.stop_with_savepoint in PyFlink 2.2 calls a Java overload that Flink 2 no
        # longer has; call the current one (with the savepoint format) directly.
        fmt = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
        try:
            j_future = self.client._j_job_client.stopWithSavepoint(
                True, savepoints.resolve().as_uri(), fmt)
            path = str(CompletableFuture(j_future, str).result())
        except Exception as exc:  # py4j wraps the Java failure
            raise DemoStackError(f"could not drain the feedback job {self.run_id}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        while self.status() not in ("FINISHED", "CANCELED", "FAILED"):
            if time.monotonic() - started > timeout_s:
                raise DemoStackError(f"the feedback job {self.run_id} did not stop within "
                                     f"{timeout_s:.0f}s after the drain")
            time.sleep(0.5)
        if self.writer is not None:  # the drain's last updates, then the writer stops
            self.writer.stop(drain=True, timeout_s=timeout_s)
        return path

    def cancel(self) -> None:
        """Cancel the job and stop its writer (committed offsets say what Feast holds)."""
        try:
            self.client.cancel().result()
        finally:
            if self.writer is not None and self.writer.alive:
                self.writer.stop(drain=False)


def start_job(job: JobConfig, kafka: KafkaConfig, feast: FeastConfig,
              paths: PathsConfig) -> StreamingJob:
    from jobs.feedback import run as job_run

    try:
        result = job_run.run(job, kafka, feast, paths, wait=False)
    except LooplineError:
        raise
    except Exception as exc:  # py4j / Flink start-up failures
        raise DemoStackError(f"could not start the feedback job: {type(exc).__name__}: {exc}"
                             ) from exc
    return StreamingJob(job, result.client, result.run_id, job_run.code_version(),
                        result.writer)


def complete_lineage(kafka: KafkaConfig, paths: PathsConfig, running: StreamingJob,
                     seconds: float, totals: dict[str, Any]) -> None:
    """The COMPLETE run event a background run never sends itself (with reconciled totals)."""
    from jobs.feedback.context import lineage_to_sink
    from jobs.transforms import lineage
    from schemas.producer import EventProducer

    job = running.job
    inputs = [lineage.dataset("kafka", t) for t in (job.serving_topic, job.interactions_topic)]
    event = lineage.run_event("COMPLETE", running.run_id, job.job_name, running.code_version,
                              int(time.time() * 1000), inputs=inputs, seconds=round(seconds, 3),
                              topic_totals=totals, drained=True)
    record = lineage_to_sink(event, job.lineage_topic, paths.lineage)
    with EventProducer(kafka) as producer:
        producer.send_raw(record.topic, record.value, key=record.key,
                          timestamp_ms=record.timestamp_ms)
