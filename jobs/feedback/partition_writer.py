"""The one Python operator of the feedback job: writes released partitions to files.

The JVM buffers each event-time partition (feedback slices, the offline feature log) in Flink
state and releases it once final, in key-ordered chunks: one element per chunk, so Python
sees batches, never single records. Here a chunk becomes a Parquet file (+ manifest for
slices) and one lineage record for the Kafka sink.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pyflink.common import Row
from pyflink.common.time import Instant
from pyflink.datastream import MapFunction, RuntimeContext

from jobs.errors import SinkError
from jobs.feedback.context import RunContext, lineage_record
from jobs.sinks import feature_log
from jobs.sinks.slice_log import write_chunk
from jobs.transforms import lineage, slices

FEATURE_LOG_PREFIX = "feature_log/"


class PartitionWriter(MapFunction):
    def __init__(self, run: RunContext) -> None:
        self.run = run

    def open(self, runtime_context: RuntimeContext) -> None:
        group = runtime_context.get_metrics_group().add_group("loopline")
        self.files = group.counter("partition_files")

    def map(self, value: Any) -> Row:
        dataset, partition, chunk, summary, data = value[0], value[1], value[2], value[4], value[5]
        if dataset.startswith(FEATURE_LOG_PREFIX):
            event = self._feature_log(dataset.removeprefix(FEATURE_LOG_PREFIX), partition,
                                      chunk, bytes(data))
        else:
            event = self._slice(dataset, partition, chunk, json.loads(summary), bytes(data))
        self.files.inc()
        record = lineage_record(self.run, event)
        ts = None if record.timestamp_ms is None else Instant.of_epoch_milli(record.timestamp_ms)
        return Row(k=record.key, v=record.value, topic=record.topic, ts=ts)

    def _slice(self, dataset: str, partition: str, chunk: int, summary: dict[str, Any],
               data: bytes) -> dict[str, Any]:
        try:
            table = slices.read_chunk(dataset, data)
        except ValueError as exc:
            raise SinkError(f"slice log: chunk {chunk} of {dataset}/{partition}: {exc}") from exc
        if table.num_rows != summary["rows"]:
            raise SinkError(f"slice log: chunk {chunk} of {dataset}/{partition} has "
                            f"{table.num_rows} rows, its summary says {summary['rows']}")
        fp = slices.table_fingerprint(table)
        manifest = write_chunk(self.run.paths.slices, dataset, partition, table, fp, summary,
                               self.run.job_facet())
        output = lineage.dataset(
            f"file://{self.run.paths.slices}",
            f"{dataset}/{partition}",
            row_count=manifest["row_count"],
            fingerprint=manifest["fingerprint"],
            event_time_min=manifest["event_time_min"],
            event_time_max=manifest["event_time_max"],
            files=manifest["files"],
        )
        inputs = [lineage.dataset("kafka", topic, offsets=ranges)
                  for topic, ranges in summary["sources"].items()]
        return self._event(inputs, [output])

    def _feature_log(self, view: str, partition: str, chunk: int, data: bytes
                     ) -> dict[str, Any]:
        stats = feature_log.write_chunk(self.run.paths.features_offline, view, partition, chunk,
                                        data)
        output = lineage.dataset(f"file://{self.run.paths.features_offline}", view,
                                 partition=partition, **stats)
        return self._event([], [output])

    def _event(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
        return lineage.run_event("RUNNING", self.run.run_id, self.run.job.job_name,
                                 self.run.code_version, int(time.time() * 1000),
                                 inputs=inputs, outputs=outputs)
