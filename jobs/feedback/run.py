"""Run the feedback job: in the local mini-cluster, or as the entry point of `flink run`.

`python -m jobs.feedback.run` (or `flink run -py jobs/feedback/run.py`) builds the pipeline,
announces the run on the lineage topic (START), executes, and on a bounded run reports the
outcome (COMPLETE/FAIL); a bounded COMPLETE carries the reconciled totals of its topics.

The job writes online feature updates to Kafka; the Feast writer (jobs/writer) applies them.
A bounded run drains the writer after the job; an embedded unbounded run starts it as a
child process beside the job (RunResult.writer; stop it after the job). On a cluster, an
unbounded job's writer is a deployment of its own: `loopline job write-features`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from feature_repo.store import FeastConfig, feature_store, load_feast
from jobs.config import JobConfig, load_job
from jobs.errors import JobError
from jobs.feedback import environment, pipeline
from jobs.feedback.context import RunContext, lineage_to_sink
from jobs.feedback.inputs import ensure_topic
from jobs.reconcile import reconcile
from jobs.transforms import lineage
from jobs.writer import FeatureWriter, WriterConfig, WriterProcess, WriterStats, load_writer
from loopline.kafka import KafkaConfig, load_kafka
from loopline.paths import PathsConfig, load_paths
from loopline.privacy import load_privacy, pseudonymiser
from loopline.version import code_version as shared_code_version

COUNTERS = ("input", "joined", "unmatched", "late", "dead_lettered")


def code_version() -> str:
    """The commit of the job's code (+ '-dirty' with local edits to what the job runs)."""
    return shared_code_version(("jobs", "schemas", "feature_repo", "loopline"))


@dataclass(frozen=True)
class RunResult:
    run_id: str
    job_id: str | None
    seconds: float
    counters: dict[str, int]
    client: Any = None  # the JobClient of a run started with wait=False (cancel() stops it)
    writer: WriterProcess | None = None  # the Feast writer beside a wait=False embedded run
    writer_stats: WriterStats | None = None  # what a bounded run's writer drain wrote

    def cancel(self) -> None:
        """Cancel a wait=False run: the job, then the Feast writer beside it (after the batch
        in hand). Cancelling only the client left the writer polling until its parent exited."""
        try:
            if self.client is not None:
                self.client.cancel().result()
        finally:
            if self.writer is not None and self.writer.alive:
                self.writer.stop(drain=False)


def writer_config(job: JobConfig, feast: FeastConfig, run_id: str) -> WriterConfig:
    """The Feast writer of this job: its updates topic, one consumer group per store."""
    return load_writer(topic=job.feature_updates_topic,
                       group_id=f"{job.group_id}-feast-{feast.online_store}",
                       dead_letter_topic=job.dead_letter_topic,
                       lineage_topic=job.lineage_topic, run_id=run_id)


def stop_with_drain(client: Any, savepoint_dir: str) -> str:
    """Stop a job started with wait=False the way a drain does: sources stop, the MAX
    watermark closes every open window, a savepoint is taken; returns its path. (PyFlink
    2.2's JobClient.stop_with_savepoint calls a Java overload that no longer exists.)"""
    from pyflink.java_gateway import get_gateway

    formats = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType
    future = client._j_job_client.stopWithSavepoint(True, savepoint_dir, formats.CANONICAL)
    return str(future.get())


def _send_lineage(kafka: KafkaConfig, run: RunContext, event: dict[str, Any]) -> None:
    from kafka import KafkaProducer

    record = lineage_to_sink(event, run.job.lineage_topic, run.paths.lineage, run.pseudonymiser)
    producer = KafkaProducer(**kafka.producer_kwargs())
    try:
        producer.send(
            record.topic, key=record.key, value=record.value, timestamp_ms=record.timestamp_ms
        ).get(timeout=30)
    finally:
        producer.close()


def run(
    job: JobConfig,
    kafka: KafkaConfig,
    feast: FeastConfig,
    paths: PathsConfig,
    wait: bool = True,
    embedded: bool = True,
) -> RunResult:
    """Build and execute the job. With wait=False, submit it and return (unbounded runs)."""
    run_id = job.run_id or str(uuid.uuid4())
    context = RunContext(
        replace(job, run_id=run_id), feast, paths, run_id, code_version(), kafka,
        pseudonymiser(load_privacy(), paths),
    )
    feature_store(feast, paths, apply=True)  # the job writes into these views: register them
    if job.feature_log_topic:
        ensure_topic(kafka, job.feature_log_topic)  # serving may not have logged yet
    env, t_env = environment.create(job, paths, embedded)
    pipeline.build(env, t_env, context, kafka)
    inputs = [lineage.dataset("kafka", t) for t in job.input_topics]
    _send_lineage(
        kafka,
        context,
        lineage.run_event(
            "START",
            run_id,
            job.job_name,
            context.code_version,
            int(time.time() * 1000),
            inputs=inputs,
            bounded=job.bounded,
            parallelism=job.parallelism,
        ),
    )
    started = time.time()
    writer = writer_config(job, feast, run_id)
    # An unbounded embedded job writes Feast through a writer beside it for as long as it
    # runs; a bounded one drains the writer once its updates are all in Kafka.
    background = (WriterProcess.start(writer, kafka, feast, paths)
                  if embedded and not job.bounded else None)
    if not wait:
        client = env.execute_async(job.job_name)
        return RunResult(run_id, str(client.get_job_id()), 0.0, {}, client, background)
    try:
        result = env.execute(job.job_name)
    except BaseException as exc:
        if background is not None:
            background.stop(drain=False)
        if not isinstance(exc, Exception):
            raise  # Ctrl-C: the writer committed what it wrote; nothing failed

        _send_lineage(
            kafka,
            context,
            lineage.run_event(
                "FAIL",
                run_id,
                job.job_name,
                context.code_version,
                int(time.time() * 1000),
                error=f"{type(exc).__name__}: {exc}"[:2000],
            ),
        )
        raise JobError(f"feedback job {run_id} failed: {exc}") from exc
    # The job's online updates are all in Kafka now: write them into Feast before COMPLETE.
    if background is not None:
        writer_stats = background.stop(drain=True)
    else:
        with FeatureWriter(writer, kafka, feast, paths) as feast_writer:
            writer_stats = feast_writer.drain()
    seconds = time.time() - started
    # Totals over the run's topics, recounted from the durable outputs (exact for topics a
    # bounded run owns; live per-operator counts are the Flink metrics loopline.*).
    counters = reconcile(kafka, job).as_dict() if job.bounded else {}
    _send_lineage(
        kafka,
        context,
        lineage.run_event(
            "COMPLETE",
            run_id,
            job.job_name,
            context.code_version,
            int(time.time() * 1000),
            inputs=inputs,
            seconds=round(seconds, 3),
            topic_totals=counters,
            feast_rows_written=writer_stats.rows_total,
        ),
    )
    return RunResult(run_id, str(result.get_job_id()), seconds, counters,
                     writer_stats=writer_stats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Loopline feedback job.")
    parser.add_argument(
        "--bounded",
        action="store_true",
        help="stop at the offsets present at start (replay/backfill)",
    )
    parser.add_argument("--run-id", help="identity of this run in lineage (default: random)")
    parser.add_argument("--detached", action="store_true",
                        help="under `flink run` only: submit and return (use `loopline submit`)")
    parser.add_argument("--parallelism", type=int, help="operator parallelism")
    parser.add_argument("--startup", help="group-offsets, earliest-offset or latest-offset")
    parser.add_argument("--embedded", action="store_true",
                        help="run in a local mini-cluster (default when not under `flink run`)")
    args = parser.parse_args(argv)
    job = load_job(bounded=args.bounded or None, run_id=args.run_id,
                   parallelism=args.parallelism, startup=args.startup)
    # `flink run` starts this script with FLINK_CONF_DIR set to the cluster's configuration.
    embedded = args.embedded or "FLINK_CONF_DIR" not in os.environ
    if args.detached and embedded:
        parser.error("--detached needs a Flink cluster (the embedded mini-cluster would end "
                     "with this process): use `loopline submit`")
    result = run(job, load_kafka(), load_feast(), load_paths(), wait=not args.detached,
                 embedded=embedded)
    print(
        f"run {result.run_id} job {result.job_id} finished in {result.seconds:.1f}s "
        f"{result.counters}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
