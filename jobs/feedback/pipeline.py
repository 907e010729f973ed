"""Wire the feedback job into Flink: Kafka source table → named operators → Kafka sink table.

Every operator has a stable name and uid (so savepoints map back onto it). Decoding, joining,
aggregating and the Python sinks run as keyed PyFlink functions; Kafka I/O stays on the Java
side through the Kafka SQL connector (raw bytes + topic/partition/offset/timestamp metadata).
"""

from __future__ import annotations

from typing import Any

from pyflink.common import Row, Types
from pyflink.common.time import Instant
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from jobs.feedback import functions as fn
from jobs.transforms import slices
from jobs.transforms.features import feature_events
from jobs.transforms.records import SinkRecord
from loopline.kafka import KafkaConfig

SOURCE_TABLE = "loopline_inputs"
SINK_TABLE = "loopline_outputs"

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


def source_ddl(run: fn.RunContext, kafka: KafkaConfig) -> str:
    job = run.job
    options = {
        "connector": "kafka",
        "topic": f"{job.serving_topic};{job.interactions_topic}",
        "value.format": "raw",
        "properties.group.id": job.group_id,
        "properties.auto.offset.reset": "earliest",
        "scan.startup.mode": job.startup,
        **kafka.flink_properties(),
    }
    if job.bounded:
        options["scan.bounded.mode"] = "latest-offset"
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


def sink_ddl(run: fn.RunContext, kafka: KafkaConfig) -> str:
    options = {
        "connector": "kafka",
        "topic": ";".join(run.job.output_topics),
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        "sink.delivery-guarantee": "at-least-once",
        **kafka.flink_properties(),
    }
    return f"""
CREATE TEMPORARY TABLE {SINK_TABLE} (
  `k` BYTES,
  `v` BYTES,
  `topic` STRING METADATA,
  `ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'
) WITH (
  {_options(options)}
)"""


def _to_row(record: SinkRecord) -> Row:
    ts = None if record.timestamp_ms is None else Instant.of_epoch_milli(record.timestamp_ms)
    return Row(k=record.key, v=record.value, topic=record.topic, ts=ts)


def _named(stream: DataStream, name: str) -> DataStream:
    return stream.name(name).uid(name)


def build(
    env: StreamExecutionEnvironment,
    t_env: StreamTableEnvironment,
    run: fn.RunContext,
    kafka: KafkaConfig,
) -> None:
    """Add the whole feedback job to `env` (executed by the caller)."""
    job, pickled = run.job, fn.PICKLED
    t_env.execute_sql(source_ddl(run, kafka))
    t_env.execute_sql(sink_ddl(run, kafka))
    source = t_env.to_data_stream(t_env.from_path(SOURCE_TABLE))

    decoded = _named(
        source.key_by(lambda r: f"{r['topic']}|{r['partition']}", key_type=Types.STRING()).process(
            fn.DecodeValidate(run), output_type=pickled
        ),
        "decode-validate",
    )
    joined = _named(
        decoded.key_by(lambda e: e.join_key, key_type=Types.STRING()).process(
            fn.JoinLabels(run), output_type=pickled
        ),
        "label-join",
    )
    eta = job.position_bias_eta
    features = _named(
        _named(
            joined.get_side_output(fn.ACCEPTED).flat_map(
                lambda e: feature_events(e, eta), output_type=pickled
            ),
            "feature-events",
        )
        .key_by(lambda f: f.key, key_type=Types.STRING())
        .process(fn.WindowFeatures(run), output_type=pickled),
        "window-features",
    )
    shards = job.feast_shards
    feast_lineage = _named(
        features.key_by(lambda r: fn.shard_of(r, shards), key_type=Types.INT()).process(
            fn.FeastOnlineSink(run), output_type=pickled
        ),
        "feast-online-sink",
    )
    unmatched = joined.get_side_output(fn.UNMATCHED)
    partition_ms = job.slice_partition_ms
    labelled_slices = _named(
        joined.key_by(
            lambda r: slices.partition_of(r["served_at"], partition_ms)[0], key_type=Types.STRING()
        ).process(fn.SliceLog(run, slices.LABELLED_DATASET), output_type=pickled),
        "slice-log-labelled",
    )
    unmatched_rows = _named(unmatched.map(lambda p: p[0], output_type=pickled), "unmatched-rows")
    unmatched_slices = _named(
        unmatched_rows.key_by(
            lambda r: slices.partition_of(r["event_time"], partition_ms)[0], key_type=Types.STRING()
        ).process(fn.SliceLog(run, slices.UNMATCHED_DATASET), output_type=pickled),
        "slice-log-unmatched",
    )
    mirror, lineage_topic, hide = run.paths.lineage, job.lineage_topic, run.pseudonymiser
    labelled_topic, unmatched_topic = job.labelled_topic, job.unmatched_topic
    lineage = _named(
        feast_lineage.union(labelled_slices, unmatched_slices).map(
            lambda rec: fn.lineage_to_sink(rec, lineage_topic, mirror, hide),
            output_type=pickled,
        ),
        "lineage-encode",
    )
    outputs: list[Any] = [
        decoded.get_side_output(fn.DEAD_LETTERS),
        decoded.get_side_output(fn.LATE),
        joined.get_side_output(fn.DEAD_LETTERS),
        _named(
            joined.map(lambda r: fn.labelled_to_sink(r, labelled_topic), output_type=pickled),
            "labelled-encode",
        ),
        _named(
            unmatched.map(lambda p: fn.unmatched_to_sink(p, unmatched_topic), output_type=pickled),
            "unmatched-encode",
        ),
        lineage,
    ]
    rows = _named(
        outputs[0].union(*outputs[1:]).map(_to_row, output_type=SINK_ROW), "to-kafka-rows"
    )
    statements = t_env.create_statement_set()
    statements.add_insert(SINK_TABLE, t_env.from_data_stream(rows))
    statements.attach_as_datastream()
