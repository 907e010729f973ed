"""A bounded Kafka → Kafka copy job: the smallest real check that Flink, the Kafka SQL
connector and the broker work together.

Reads every record now in `source` (raw bytes plus the partition / offset / timestamp
metadata columns; `scan.bounded.mode = latest-offset` makes the job finish), and writes to
`sink`: value = the same bytes, key = "<partition>:<offset>" of the source record, record
timestamp = the source record's timestamp (the event time the real job relies on).

Runs in-process on the local mini-cluster (`run_local`, with the connector as pipeline.jars)
or on the session cluster (`flink run -py infra/flink_probe.py --bootstrap ... --source ...`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from loopline.kafka import KafkaConfig


def _options(opts: dict[str, str]) -> str:
    return ",\n".join(f"  '{k}' = '{v}'" for k, v in opts.items())


def source_ddl(kafka: KafkaConfig, topic: str, table: str = "probe_source") -> str:
    opts = {
        "connector": "kafka",
        "topic": topic,
        **kafka.flink_properties(),
        "properties.group.id": "loopline-probe",
        "scan.startup.mode": "earliest-offset",
        "scan.bounded.mode": "latest-offset",
        "format": "raw",
    }
    return f"""CREATE TEMPORARY TABLE {table} (
  payload BYTES,
  `partition` INT METADATA VIRTUAL,
  `offset` BIGINT METADATA VIRTUAL,
  `ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL
) WITH (
{_options(opts)}
)"""


def sink_ddl(kafka: KafkaConfig, topic: str, table: str = "probe_sink") -> str:
    opts = {
        "connector": "kafka",
        "topic": topic,
        **kafka.flink_properties(),
        "key.format": "raw",
        "key.fields": "origin",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
    }
    return f"""CREATE TEMPORARY TABLE {table} (
  origin STRING,
  payload BYTES,
  `ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'
) WITH (
{_options(opts)}
)"""


COPY_SQL = """INSERT INTO probe_sink
SELECT CONCAT(CAST(`partition` AS STRING), ':', CAST(`offset` AS STRING)), payload, `ts`
FROM probe_source"""


def build(t_env: Any, kafka: KafkaConfig, source: str, sink: str) -> Any:
    """Register both tables on `t_env` and return the (not yet executed) insert."""
    t_env.execute_sql(source_ddl(kafka, source))
    t_env.execute_sql(sink_ddl(kafka, sink))
    statements = t_env.create_statement_set()
    statements.add_insert_sql(COPY_SQL)
    return statements


def new_table_env(pipeline_jars: str | None = None, parallelism: int = 1) -> Any:
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("parallelism.default", str(parallelism))
    conf.set("pipeline.name", "loopline-flink-probe")
    if pipeline_jars:
        conf.set("pipeline.jars", pipeline_jars)
    return t_env


def run_local(kafka: KafkaConfig, source: str, sink: str, pipeline_jars: str) -> None:
    """Run the copy on the in-process mini-cluster and wait until it finishes."""
    build(new_table_env(pipeline_jars), kafka, source, sink).execute().wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--source", required=True, help="topic to read (bounded)")
    parser.add_argument("--sink", required=True, help="topic to write")
    parser.add_argument("--wait", action="store_true", help="block until the job finishes")
    args = parser.parse_args(argv)
    result = build(
        new_table_env(), KafkaConfig(bootstrap_servers=args.bootstrap), args.source, args.sink
    ).execute()
    if args.wait:
        result.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
