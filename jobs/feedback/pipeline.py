"""Wire the feedback job into Flink: Kafka source table → JVM operators → Kafka sink.

The per-record path runs in the JVM (jobs/feedback/jvm, io.loopline.feedback): decode and
validate (Avro's Java library), per-partition lateness, the label join, window features and
the partition buffers. This module strings those typed steps together over py4j and names
every operator with a stable name and uid (so savepoints map back onto them). The one Python
operator is the partition writer, which sees one element per released chunk of a partition.

    source ─ end-of-input-watermark ─ keyBy(topic|partition) ─ decode-validate
      ├─ dead letters, late
      ─ keyBy(request) ─ label-join ─┬─ labelled, unmatched, duplicates (Kafka rows)
                                     ├─ slice rows ─┐
                                     └─ accepted ─ feature-deltas ─ keyBy(entity) ─ window-features
                                                      ├─ online updates (Kafka rows)
                                                      └─ feature-log chunks ─┐
      slice rows ─ keyBy(dataset|hour) ─ slice-buffer ─ partition-writer (Python) ─ lineage
    all Kafka rows ─ kafka-sink (Flink's KafkaSink, each row to its own topic)
"""

from __future__ import annotations

from typing import Any

from pyflink.common import Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment

from jobs.feedback.context import RunContext
from jobs.feedback.jvm_settings import settings_json
from jobs.feedback.partition_writer import PartitionWriter
from loopline.kafka import KafkaConfig
from schemas.registry import SchemaRegistry
from schemas.store import SchemaStore

SOURCE_TABLE = "loopline_inputs"

SINK_ROW = Types.ROW_NAMED(
    ["k", "v", "topic", "ts"],
    [
        Types.PRIMITIVE_ARRAY(Types.BYTE()),
        Types.PRIMITIVE_ARRAY(Types.BYTE()),
        Types.STRING(),
        Types.INSTANT(),
    ],
)


def _options(options: dict[str, str]) -> str:
    """SQL string literals: a quote inside a value (a password, say) is doubled, not a syntax
    error or an injected option."""

    def quoted(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    return ",\n  ".join(f"{quoted(k)} = {quoted(v)}" for k, v in options.items())


def _interval(ms: int) -> str:
    """A SQL interval literal of `ms` milliseconds, as DAY TO SECOND (any size, ms precision)."""
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return (
        f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' DAY TO SECOND(3)"
    )


def source_ddl(run: RunContext, kafka: KafkaConfig) -> str:
    job = run.job
    options = {
        "connector": "kafka",
        "topic": ";".join(job.input_topics),
        "value.format": "raw",
        "properties.group.id": job.group_id,
        "properties.auto.offset.reset": "earliest",
        "scan.startup.mode": job.startup,
        **kafka.flink_properties(),
    }
    if job.bounded:
        options["scan.bounded.mode"] = "latest-offset"
    if job.watermark_alignment_ms:
        # A replay must not race one topic far ahead of the other: readers whose watermark
        # is more than the drift ahead of the group's minimum pause (FLIP-182/217).
        options["scan.watermark.alignment.group"] = f"loopline-{job.group_id}"
        options["scan.watermark.alignment.max-drift"] = f"{job.watermark_alignment_ms} ms"
    # rowtime is the Kafka record timestamp (= event time by contract). A record stamped more
    # than max_future_ms ahead of the clock gets epoch 0 here, so it cannot drag the
    # partition's watermark into the future; decoding then dead-letters it.
    return f"""
CREATE TEMPORARY TABLE {SOURCE_TABLE} (
  `value` BYTES,
  `topic` STRING METADATA VIRTUAL,
  `partition` INT METADATA VIRTUAL,
  `offset` BIGINT METADATA VIRTUAL,
  `kafka_ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  `rowtime` AS CASE
      WHEN `kafka_ts` > CURRENT_TIMESTAMP + {_interval(job.max_future_ms)}
      THEN TO_TIMESTAMP_LTZ(0, 3) ELSE `kafka_ts` END,
  WATERMARK FOR `rowtime` AS `rowtime` - {_interval(job.out_of_orderness_ms)}
) WITH (
  {_options(options)}
)"""


def published_schemas(run: RunContext) -> list[dict[str, Any]]:
    """Writer schemas on the schemas topic now (newer ones are fetched by the JVM on sight)."""
    if not run.job.schema_registry or run.kafka is None:
        return []
    return SchemaRegistry(run.kafka, run.job.schemas_topic).read_all()


def _named(stream: DataStream, name: str) -> DataStream:
    return stream.name(name).uid(name)


def build(
    env: StreamExecutionEnvironment,
    t_env: StreamTableEnvironment,
    run: RunContext,
    kafka: KafkaConfig,
) -> None:
    """Add the whole feedback job to `env` (executed by the caller)."""
    topology = get_gateway().jvm.io.loopline.feedback.Topology
    settings = topology.settings(
        settings_json(run.job, run.run_id, kafka, SchemaStore.from_directory(),
                      published_schemas(run))
    )
    t_env.execute_sql(source_ddl(run, kafka))
    source = t_env.to_data_stream(
        t_env.sql_query(
            # rowtime stays in: it becomes each record's timestamp (end-of-input-watermark).
            f"SELECT `value`, `topic`, `partition`, `offset`, `kafka_ts`, `rowtime` "
            f"FROM {SOURCE_TABLE}"
        )
    )

    def step(j_stream: Any, name: str) -> Any:
        """Name and uid a JVM step; return its Java stream for the next one."""
        _named(DataStream(j_stream), name)
        return j_stream

    src = step(topology.endOfInput(source._j_data_stream, settings), "end-of-input-watermark")
    decoded = step(topology.decode(src, settings), "decode-validate")
    joined = step(topology.join(decoded, settings), "label-join")
    deltas = step(topology.featureDeltas(topology.accepted(joined)), "feature-deltas")
    features = step(topology.features(deltas, settings), "window-features")
    slices = step(topology.partitions(joined, settings), "slice-buffer")
    lineage_rows = _named(
        DataStream(topology.unionAll([slices, features])).map(PartitionWriter(run),
                                                                  output_type=SINK_ROW),
        "partition-writer",
    )
    kafka_rows = topology.unionAll([
        topology.decodeDeadLetters(decoded),
        topology.late(decoded),
        topology.joinKafka(joined),
        topology.onlineUpdates(features),
        lineage_rows._j_data_stream,
    ])
    topology.kafkaSink(kafka_rows, settings, "kafka-sink")
