"""The Flink execution environment for Loopline jobs: jars, checkpoints, restarts, Python."""

from __future__ import annotations

import os
import sys

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from infra import jars, java
from infra.metrics import MetricsConfig, flink_reporter_config, load_metrics
from jobs.config import JobConfig
from loopline.paths import PathsConfig


def flink_configuration(
    job: JobConfig, paths: PathsConfig, embedded: bool, metrics: MetricsConfig | None = None
) -> Configuration:
    """Job configuration; `embedded` (mini-cluster) also ships the connector jar and names this
    interpreter for the Python workers — on a cluster, `flink run -pyexec` and the cluster's
    classpath provide those, and a second copy of the connector would clash with it."""
    conf = Configuration()
    if embedded:
        conf.set_string("pipeline.jars", jars.kafka_connector_jar(paths).as_uri())
        conf.set_string("python.executable", sys.executable)
        conf.set_string("python.client.executable", sys.executable)
        # The mini-cluster's REST answers with metrics at most this old (Flink: 10 s): progress
        # shown or measured from it (the throughput bench's decoder timeline) needs seconds.
        conf.set_string("metrics.fetcher.update-interval", "1000")
    # Bundle time bounds how long a released chunk may wait inside the partition writer.
    conf.set_string("python.fn-execution.bundle.time", str(job.python_bundle_time_ms))
    conf.set_string("python.fn-execution.bundle.size", str(job.python_bundle_size))
    # Process mode: the partition writer runs in its own Python worker (thread mode, PEMJA,
    # is not supported: it never imported here).
    conf.set_string("python.execution-mode", "process")
    conf.set_string("execution.buffer-timeout.interval", f"{job.buffer_timeout_ms} ms")
    conf.set_string("execution.checkpointing.interval", f"{job.checkpoint_interval_ms} ms")
    conf.set_string("state.backend.type", job.state_backend)
    # RocksDB uploads only the files written since the last checkpoint; the heap backend
    # always writes everything (it has no incremental mode).
    incremental = "true" if job.state_backend == "rocksdb" else "false"
    conf.set_string("execution.checkpointing.incremental", incremental)
    conf.set_string("execution.checkpointing.dir", paths.checkpoints.resolve().as_uri())
    conf.set_string(
        "execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION"
    )
    # Bounded restarts per window: a poison pill or a dead sink fails the job cleanly, never
    # loops forever. Flink restarts after up to max-failures-per-interval failures within the
    # interval; the next one inside it fails the job (so N restarts, then FAILED).
    if job.restart_attempts == 0:  # failure-rate needs at least one
        conf.set_string("restart-strategy.type", "none")
    else:
        conf.set_string("restart-strategy.type", "failure-rate")
        conf.set_string(
            "restart-strategy.failure-rate.max-failures-per-interval", str(job.restart_attempts)
        )
        conf.set_string(
            "restart-strategy.failure-rate.failure-rate-interval", f"{job.restart_window_ms} ms"
        )
        conf.set_string("restart-strategy.failure-rate.delay", f"{job.restart_delay_ms} ms")
    conf.set_string("pipeline.name", job.job_name)
    # Chained operators hand records on without a deep copy. Safe for this job: its Java
    # operators never change an object after emitting it (they build new ones), and the
    # records they keep in state came over the network, deserialized afresh.
    conf.set_string("pipeline.object-reuse", "true")
    # Prometheus endpoint of the mini-cluster when [metrics] is on (a cluster's JVMs get theirs
    # from the cluster config, infra/flink_cluster.py).
    for key, value in flink_reporter_config(metrics or load_metrics()).items():
        conf.set_string(key, value)
    return conf


def create(
    job: JobConfig, paths: PathsConfig, embedded: bool = True
) -> tuple[StreamExecutionEnvironment, StreamTableEnvironment]:
    metrics = load_metrics()
    if embedded:
        # Before anything touches the gateway: pyflink's Configuration() already starts the
        # JVM, which then keeps the options it started with.
        java.gateway_jvm_args(job.jit_options)
        # PyFlink's default for a local mini-cluster ("loopback") runs the Python workers as
        # threads of this process: one GIL shared with the caller (the demo's serving, a
        # test), and each worker start overwrites os.environ with the gateway JVM's
        # environment. Separate worker processes, as on a cluster, use every core and leave
        # the caller alone. (PyFlink reads this switch when the environment is created.)
        os.environ.setdefault("_python_worker_execution_mode", "process")
    conf = flink_configuration(job, paths, embedded, metrics)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    # The job's JVM operators, shipped with the job in every mode. add_jars appends to
    # pipeline.jars (`flink run` put flink-python there) and loads the jar into this client,
    # where py4j builds the operators while the job graph is built.
    env.add_jars(jars.feedback_job_jar(paths).resolve().as_uri())
    if embedded and metrics.enabled:
        # The mini-cluster finds reporter factories through this client's class loader.
        env.add_jars(jars.prometheus_reporter_jar(paths).resolve().as_uri())
    env.set_parallelism(job.parallelism)
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("table.exec.source.idle-timeout", f"{job.idle_timeout_ms} ms")
    t_env.get_config().set("table.local-time-zone", "UTC")
    return env, t_env
