"""The Flink session cluster: idempotent up, job submission with `flink run -py`, REST
list/cancel, and the TaskManager helpers the reliability tests build on."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from kafka import KafkaProducer

from infra import flink_probe, jars, process
from infra.flink_cluster import FlinkCluster
from infra.flink_jobs import cancel_job, flink_run, list_jobs, wait_for_job
from infra.metrics import REPORTER_FACTORY, MetricsConfig
from infra.topics import TopicSpec, consume_records, create_topics, delete_topics
from loopline.kafka import KafkaConfig

pytestmark = pytest.mark.integration


def _taskmanagers_registered(cluster: FlinkCluster) -> int | None:
    return (cluster.overview() or {}).get("taskmanagers")


@pytest.fixture
def one_taskmanager(flink_cluster: FlinkCluster) -> FlinkCluster:
    """The session cluster with exactly one live, registered TaskManager, whatever an earlier
    test (here or in another module) left: `up` repairs a missing one, extras are stopped."""
    flink_cluster.up()
    extras = flink_cluster.taskmanager_pids()[1:]
    if extras:
        process.terminate(extras, 30, "leftover taskmanagers")
    assert process.wait_until(lambda: _taskmanagers_registered(flink_cluster) == 1, 120)
    assert len(flink_cluster.taskmanager_pids()) == 1
    return flink_cluster


def test_up_again_is_a_noop_and_status_reports(one_taskmanager: FlinkCluster) -> None:
    flink_cluster = one_taskmanager
    before = flink_cluster.status()
    after = flink_cluster.up()
    assert after.running and after.pids == before.pids
    overview = flink_cluster.overview()
    assert overview is not None
    assert overview["taskmanagers"] == 1
    assert overview["slots-total"] == flink_cluster.cfg.flink_slots
    assert process.listen_addresses(flink_cluster.cfg.flink_rest_port) == {"127.0.0.1"}


def test_cluster_config_uses_this_python_and_our_dirs(flink_cluster: FlinkCluster) -> None:
    conf = yaml.safe_load((flink_cluster.conf_dir / "config.yaml").read_text())
    assert conf["python"]["executable"] == sys.executable
    assert conf["env"]["log"]["dir"] == str(flink_cluster.log_dir)
    connector = jars.kafka_connector_jar(flink_cluster.paths)
    assert (flink_cluster.lib_dir / connector.name).resolve() == connector.resolve()


def test_taskmanager_pid_is_the_taskmanager_jvm(one_taskmanager: FlinkCluster) -> None:
    flink_cluster = one_taskmanager
    [pid] = flink_cluster.taskmanager_pids()
    assert "TaskManagerRunner" in process.cmdline(pid)
    [jm] = flink_cluster.jobmanager_pids()
    assert "StandaloneSessionClusterEntrypoint" in process.cmdline(jm)


def test_flink_run_copies_kafka_records_on_the_cluster(
    flink_cluster: FlinkCluster, kafka: KafkaConfig
) -> None:
    run = uuid.uuid4().hex[:8]
    source, sink = f"test.cluster.{run}.in", f"test.cluster.{run}.out"
    create_topics(kafka, [TopicSpec(source, 2), TopicSpec(sink, 1)])
    producer = KafkaProducer(**kafka.producer_kwargs())
    for i in range(4):
        producer.send(source, f"v{i}".encode(), partition=i % 2, timestamp_ms=1_000 + i).get(30)
    producer.close()
    # The connector is on the cluster classpath already; listing it in pipeline.jars too
    # must still work (parent-first class loading for Kafka classes).
    job = flink_run(
        Path(flink_probe.__file__),
        ["--bootstrap", kafka.bootstrap_servers, "--source", source, "--sink", sink],
        jars=[jars.kafka_connector_jar(flink_cluster.paths)],
        cluster=flink_cluster,
    )
    assert job.job_id, job.output
    assert wait_for_job(job.job_id, timeout_s=240, cluster=flink_cluster) == "FINISHED"
    assert job.job_id in {j["jid"] for j in list_jobs(flink_cluster)}
    got = sorted((r.key.decode(), r.value, r.timestamp) for r in consume_records(kafka, sink, 4))
    delete_topics(kafka, [source, sink])
    assert got == [("0:0", b"v0", 1000), ("0:1", b"v2", 1002), ("1:0", b"v1", 1001),
                   ("1:1", b"v3", 1003)]  # fmt: skip


def test_cancel_a_running_job(flink_cluster: FlinkCluster, tmp_path: Path) -> None:
    job_file = tmp_path / "endless.py"
    job_file.write_text(textwrap.dedent("""
        from pyflink.table import EnvironmentSettings, TableEnvironment
        t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
        t_env.execute_sql("CREATE TABLE gen (x INT) WITH ('connector'='datagen', "
                          "'rows-per-second'='1')")
        t_env.execute_sql("CREATE TABLE sink (x INT) WITH ('connector'='blackhole')")
        t_env.execute_sql("INSERT INTO sink SELECT x FROM gen")
    """))
    job = flink_run(job_file, cluster=flink_cluster)
    assert job.job_id, job.output
    assert wait_for_job(job.job_id, {"RUNNING"}, timeout_s=120, cluster=flink_cluster)
    cancel_job(job.job_id, flink_cluster)
    assert wait_for_job(job.job_id, timeout_s=120, cluster=flink_cluster) == "CANCELED"


def test_start_and_stop_an_extra_taskmanager(one_taskmanager: FlinkCluster) -> None:
    cluster = one_taskmanager
    [first] = cluster.taskmanager_pids()
    extra = cluster.start_taskmanager()
    try:
        assert extra != first
        assert "TaskManagerRunner" in process.cmdline(extra)  # the JVM, not the forked shell
        assert set(cluster.taskmanager_pids()) == {first, extra}
        assert process.wait_until(lambda: _taskmanagers_registered(cluster) == 2, 120)
        # A SIGTERM'd TaskManager deregisters on the way out, leaving the cluster as it was.
        process.terminate([extra], 30, "extra taskmanager")
        assert cluster.taskmanager_pids() == [first]
        assert process.wait_until(lambda: _taskmanagers_registered(cluster) == 1, 120)
        assert cluster.status().running
    finally:
        process.terminate([extra], 30, "extra taskmanager")  # no-op when already stopped


def test_up_repairs_a_killed_taskmanager(one_taskmanager: FlinkCluster) -> None:
    """Kill -9 the TaskManager as the reliability tests will; `up` starts a new one."""
    flink_cluster = one_taskmanager
    [tm] = flink_cluster.taskmanager_pids()
    os.kill(tm, signal.SIGKILL)
    assert process.wait_until(lambda: not process.is_alive(tm), 30)
    assert flink_cluster.taskmanager_pids() == []
    assert flink_cluster.status().state == "unhealthy"
    repaired = flink_cluster.up()
    assert repaired.running
    [new_tm] = flink_cluster.taskmanager_pids()
    assert new_tm != tm
    # Later tests need a clean cluster: wait until the JobManager has dropped the dead one.
    assert process.wait_until(
        lambda: (flink_cluster.overview() or {}).get("taskmanagers") == 1, 120
    )


def test_metrics_on_adds_the_reporter_plugin_and_config(
    flink_cluster: FlinkCluster, tmp_path: Path
) -> None:
    """With [metrics] on, `up` would start every JVM with our Prometheus reporter (checked on
    the written config; the session cluster itself runs with metrics off)."""
    cluster = FlinkCluster(
        flink_cluster.cfg,
        replace(flink_cluster.paths, home=tmp_path),
        MetricsConfig(enabled=True, flink_ports="29249-29251"),
    )
    cluster.prepare()
    conf = yaml.safe_load((cluster.conf_dir / "config.yaml").read_text())
    reporter = conf["metrics"]["reporter"]["prom"]
    assert reporter == {"factory": {"class": REPORTER_FACTORY}, "host": "127.0.0.1",
                        "port": "29249-29251"}
    [jar] = (cluster.plugins_dir / "loopline-metrics-prometheus").iterdir()
    assert jar.resolve() == jars.prometheus_reporter_jar(cluster.paths).resolve()
    assert (cluster.plugins_dir / "metrics-prometheus").is_dir()  # the wheel's plugins too
    assert cluster.script_env()["FLINK_PLUGINS_DIR"] == str(cluster.plugins_dir)
