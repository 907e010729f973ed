"""Locate the Maven-resolved jars (kept out of git, fetched by `make jars`)."""

from __future__ import annotations

from pathlib import Path

from infra.errors import MissingJarsError
from loopline.paths import PathsConfig


def jar_dir(paths: PathsConfig, group: str) -> Path:
    """The folder of one jar group (kafka, flink, patches, metrics), holding at least one jar."""
    folder = paths.jars / group
    if not any(folder.glob("*.jar")):
        raise MissingJarsError(
            f"expected the {group} jars in {folder}, found none; run `make jars` "
            "(or set LOOPLINE_PATHS_JARS to the folder that holds kafka/ and flink/)"
        )
    return folder


def find_jar(paths: PathsConfig, group: str, prefix: str) -> Path:
    """The one jar in group `group` whose file name starts with `prefix`."""
    matches = sorted(jar_dir(paths, group).glob(f"{prefix}*.jar"))
    if len(matches) != 1:
        raise MissingJarsError(
            f"expected exactly one {prefix}*.jar in {paths.jars / group}, found "
            f"{[m.name for m in matches] or 'none'}; run `make jars`"
        )
    return matches[0]


def kafka_classpath(paths: PathsConfig) -> str:
    """The broker classpath: a wildcard the JVM expands, so no 50-jar argument list."""
    return str(jar_dir(paths, "kafka") / "*")


def flink_connector_jars(paths: PathsConfig) -> list[Path]:
    """Connector/format jars PyFlink jobs load (the Kafka SQL connector, ...)."""
    return sorted(jar_dir(paths, "flink").glob("*.jar"))


def kafka_connector_jar(paths: PathsConfig) -> Path:
    return find_jar(paths, "flink", "flink-sql-connector-kafka")


def feedback_job_jar(paths: PathsConfig) -> Path:
    """The feedback job's JVM operators (jobs/feedback/jvm) with Avro and kafka-clients,
    compiled by `make jars` against the installed PyFlink's own Flink jars. A job jar."""
    return find_jar(paths, "jobs", "loopline-feedback-jvm")


def file_urls(jars: list[Path]) -> str:
    """`pipeline.jars` value: file URLs joined by ';' as Flink expects."""
    return ";".join(jar.resolve().as_uri() for jar in jars)


def prometheus_reporter_jar(paths: PathsConfig) -> Path:
    """Flink's Prometheus reporter behind our loopback-binding factory (infra/metrics.py),
    built by `make jars`. A job jar in the mini-cluster; a plugin folder on the cluster."""
    return find_jar(paths, "metrics", "loopline-flink-metrics-prometheus")
