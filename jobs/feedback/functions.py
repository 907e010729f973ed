"""Flink adapters: each KeyedProcessFunction keeps its state in Flink and delegates to a pure
transform in jobs/transforms. Nothing here decides business logic."""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from feature_repo.store import FeastConfig
from jobs.config import JobConfig
from jobs.sinks.feast_writer import FeastWriter
from jobs.sinks.slice_log import write_partition
from jobs.transforms import lineage, slices
from jobs.transforms.dead_letters import dead_letter, to_sink
from jobs.transforms.decode import Rejection, decode_record, is_late
from jobs.transforms.features import FeatureAggregator
from jobs.transforms.label_join import LabelJoin, RequestState
from jobs.transforms.records import Envelope, FeatureRow, SinkRecord, SourceRecord
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from loopline.privacy import Pseudonymiser
from schemas.codec import LABELLED_IMPRESSION, LINEAGE_RECORD, Codec, default_codec
from schemas.registry import SchemaRegistry
from schemas.store import SchemaStore

PICKLED = Types.PICKLED_BYTE_ARRAY()
MAX_WATERMARK = 2**63 - 1
END_OF_INPUT_TIMER = MAX_WATERMARK - 1  # fires only when a bounded input is exhausted

DEAD_LETTERS = OutputTag("dead-letters", PICKLED)
LATE = OutputTag("late", PICKLED)
UNMATCHED = OutputTag("unmatched", PICKLED)
ACCEPTED = OutputTag("accepted", PICKLED)


@dataclass(frozen=True)
class RunContext:
    """Everything an operator needs besides its input: configs and the run's identity."""

    job: JobConfig
    feast: FeastConfig
    paths: PathsConfig
    run_id: str
    code_version: str
    kafka: KafkaConfig | None = None
    # User ids in lineage records are replaced by keyed hashes (loopline/privacy.py).
    pseudonymiser: Pseudonymiser | None = None

    def job_facet(self) -> dict[str, str]:
        return {"name": self.job.job_name, "run_id": self.run_id, "code_version": self.code_version}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ms(instant: Any) -> int | None:
    """Epoch ms of a Flink Instant (a PyFlink object in process mode, a Java one in thread mode)."""
    if instant is None:
        return None
    if hasattr(instant, "to_epoch_milli"):
        return int(instant.to_epoch_milli())
    return int(instant.toEpochMilli())


def _end_of_input(ctx: Any) -> bool:
    return bool(ctx.timer_service().current_watermark() >= MAX_WATERMARK)


class _Counted(KeyedProcessFunction):
    """Registers the job's reconciliation counters (input = joined + unmatched + late + DLQ)."""

    def _counters(self, runtime_context: RuntimeContext, *names: str) -> None:
        group = runtime_context.get_metrics_group().add_group("loopline")
        self.counters = {name: group.counter(name) for name in names}


class DecodeValidate(_Counted):
    """Decode + validate every record; route bad ones to dead letters and late ones aside.

    Keyed by source topic/partition so that lateness is judged per partition, in order.
    """

    def __init__(self, run: RunContext) -> None:
        self.run = run

    def open(self, runtime_context: RuntimeContext) -> None:
        self.codec = default_codec()
        self.registry = None
        if self.run.job.schema_registry and self.run.kafka is not None:
            # Its own store: this one learns schemas from the topic, and the process-wide
            # default codec must not (in the local mini-cluster PyFlink runs the Python
            # workers inside the client process, whose producers would start writing them).
            self.codec = Codec(SchemaStore.from_directory())
            self.registry = SchemaRegistry(self.run.kafka, self.run.job.schemas_topic)
            self.registry.load_into(self.codec.store)
        self.max_ts = runtime_context.get_state(
            ValueStateDescriptor("partition_max_ts", Types.LONG())
        )
        self._counters(runtime_context, "input", "dead_lettered", "late")

    def process_element(self, row: Any, ctx: KeyedProcessFunction.Context):
        job = self.run.job
        record = SourceRecord(
            bytes(row["value"] or b""),
            row["topic"],
            row["partition"],
            row["offset"],
            _ms(row["kafka_ts"]),
        )
        self.counters["input"].inc()
        now = _now_ms()
        result = decode_record(
            record, self.codec, job.serving_topic, job.interactions_topic, now, job.max_future_ms
        )
        if (
            isinstance(result, Rejection)
            and result.error_type == "UnknownSchemaError"
            and self.registry is not None
            and self.registry.refresh(self.codec.store, bytes.fromhex(result.fingerprint or ""))
        ):
            # A producer published a newer (compatible) schema since we loaded: decode again.
            result = decode_record(
                record,
                self.codec,
                job.serving_topic,
                job.interactions_topic,
                now,
                job.max_future_ms,
            )
        if isinstance(result, Rejection):
            self.counters["dead_lettered"].inc()
            letter = dead_letter(
                *record,
                result.stage,
                result.error_type,
                result.reason,
                result.fingerprint,
                now,
                self.run.run_id,
            )
            yield DEAD_LETTERS, to_sink(letter, self.codec, self.run.job.dead_letter_topic)
            return
        partition_max = self.max_ts.value()
        if is_late(partition_max, result.event_time, job.out_of_orderness_ms):
            self.counters["late"].inc()
            reason = (
                f"event_time {result.event_time} is behind partition watermark "
                f"{partition_max - job.out_of_orderness_ms}"
            )
            letter = dead_letter(*record, "late", "LateEvent", reason, None, now, self.run.run_id)
            yield LATE, to_sink(letter, self.codec, job.late_topic)
            return
        if partition_max is None or result.event_time > partition_max:
            self.max_ts.update(result.event_time)
        yield result


class JoinLabels(_Counted):
    """The label join (jobs/transforms/label_join.py) over Flink keyed state and timers."""

    def __init__(self, run: RunContext) -> None:
        self.run = run

    def open(self, runtime_context: RuntimeContext) -> None:
        self.codec = default_codec()
        self.join = LabelJoin(self.run.job.maturity_window_ms, self.run.job.closed_request_ttl_ms)
        self.state = runtime_context.get_state(ValueStateDescriptor("request", PICKLED))
        self._counters(runtime_context, "joined", "unmatched", "dead_lettered")

    def process_element(self, env: Envelope, ctx: KeyedProcessFunction.Context):
        state = self.state.value() or RequestState()
        yield from self._emit(self.join.on_event(state, env), state, ctx)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        state = self.state.value()
        if state is None:
            return
        yield from self._emit(self.join.on_timer(state, timestamp, _end_of_input(ctx)), state, ctx)

    def _emit(self, out: Any, state: RequestState, ctx: Any):
        self.counters["joined"].inc(out.joined_serving + out.joined_interactions)
        for timer in out.timers:
            ctx.timer_service().register_event_time_timer(timer)
        for env in out.duplicates:
            self.counters["dead_lettered"].inc()
            letter = dead_letter(
                env.raw,
                env.topic,
                env.partition,
                env.offset,
                env.event_time,
                "duplicate",
                "DuplicateEvent",
                f"{env.kind} {env.join_key} was already received",
                None,
                _now_ms(),
                self.run.run_id,
            )
            yield DEAD_LETTERS, to_sink(letter, self.codec, self.run.job.dead_letter_topic)
        for env in out.accepted:
            yield ACCEPTED, env
        for env, reason in out.unmatched:
            self.counters["unmatched"].inc()
            row = slices.unmatched_row(env.event, reason, env.topic, env.partition, env.offset)
            yield UNMATCHED, (row, env.raw)
        for row in out.labelled:
            yield row
        if out.clear or state.empty:
            self.state.clear()
        else:
            self.state.update(state)


class WindowFeatures(KeyedProcessFunction):
    """Per-entity sliding-window counters; emits the entity's features on every change."""

    def __init__(self, run: RunContext) -> None:
        self.run = run

    def open(self, runtime_context: RuntimeContext) -> None:
        self.agg = FeatureAggregator(self.run.job.last_clicked_n)
        self.state = runtime_context.get_state(ValueStateDescriptor("entity", PICKLED))

    def process_element(self, event: Any, ctx: KeyedProcessFunction.Context):
        state = self.state.value() or self.agg.new_state(event.kind)
        before = self.agg.decay_points(state) if state.latest_ms else []
        self.agg.apply(state, event)
        self.state.update(state)
        # Decay points move only when the newest event enters a new bucket: register only then.
        for point in self.agg.decay_points(state):
            if point not in before:
                ctx.timer_service().register_event_time_timer(point)
        yield self.agg.evaluate(state, event.entity_id, state.latest_ms)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        state = self.state.value()
        if state is None or _end_of_input(ctx):
            return  # the end of a bounded input is not the passage of time: no decay
        entity_id = str(ctx.get_current_key()).split(":", 1)[1]
        row, expired = self.agg.on_decay(state, entity_id, timestamp)
        if expired:
            self.state.clear()
        if row is not None:
            yield row


def shard_of(row: FeatureRow, shards: int) -> int:
    """Stable across processes and restarts (unlike hash())."""
    return zlib.crc32(f"{row.view}:{row.entity_id}".encode()) % shards


class FeastOnlineSink(KeyedProcessFunction):
    """Buffers feature rows in Flink state and writes batches to Feast.

    The buffer is checkpointed state, so rows accepted before a checkpoint survive a crash;
    a batch is written when it reaches feast_flush_rows entities, when
    feast_flush_interval_ms passes, or when a bounded input ends. Online gets the newest row
    per entity; the offline log gets every row (point-in-time history). Emits one lineage
    event per batch.
    """

    def __init__(self, run: RunContext) -> None:
        self.run = run

    def open(self, runtime_context: RuntimeContext) -> None:
        try:
            subtask = runtime_context.get_index_of_this_subtask()
        except AttributeError:  # thread mode exposes the Java context, without this getter
            subtask = 0
        self.writer = FeastWriter(
            self.run.feast,
            self.run.paths,
            self.run.job.offline_feature_log,
            f"part-{self.run.run_id[:8]}-{subtask}-{_now_ms()}",
        )
        self.buffer = runtime_context.get_state(ValueStateDescriptor("buffer", PICKLED))
        self.history = runtime_context.get_list_state(ListStateDescriptor("history", PICKLED))
        group = runtime_context.get_metrics_group().add_group("loopline")
        self.written = group.counter("feature_rows_written")

    def process_element(self, row: FeatureRow, ctx: KeyedProcessFunction.Context):
        buffer: dict[tuple[str, str], FeatureRow] = self.buffer.value() or {}
        if not buffer:
            timers = ctx.timer_service()
            timers.register_processing_time_timer(
                timers.current_processing_time() + self.run.job.feast_flush_interval_ms
            )
            timers.register_event_time_timer(END_OF_INPUT_TIMER)
        key = (row.view, row.entity_id)
        current = buffer.get(key)
        if current is None or row.event_ms >= current.event_ms:
            buffer[key] = row
        if self.run.job.offline_feature_log:
            self.history.add(row)
        if len(buffer) >= self.run.job.feast_flush_rows:
            yield from self._flush(buffer)
        else:
            self.buffer.update(buffer)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        buffer = self.buffer.value()
        if buffer:
            yield from self._flush(buffer)

    def _flush(self, buffer: dict[tuple[str, str], FeatureRow]):
        history = list(self.history.get() or []) if self.run.job.offline_feature_log else None
        stats = self.writer.write(list(buffer.values()), history)
        self.buffer.clear()
        self.history.clear()
        self.written.inc(len(buffer))
        outputs = [
            lineage.dataset(f"feast://{self.run.feast.project}", view, **s)
            for view, s in stats.items()
        ]
        yield lineage.run_event(
            "RUNNING",
            self.run.run_id,
            self.run.job.job_name,
            self.run.code_version,
            _now_ms(),
            outputs=outputs,
        )


class SliceLog(KeyedProcessFunction):
    """Collects one event-time partition of a dataset; writes it once it can no longer change.

    A labelled row for hour H exists by the time the watermark passes H's end plus the
    maturity window, so the partition is final then (or when a bounded input ends).
    """

    def __init__(self, run: RunContext, dataset: str) -> None:
        self.run = run
        self.dataset = dataset

    def open(self, runtime_context: RuntimeContext) -> None:
        self.rows = runtime_context.get_list_state(ListStateDescriptor("rows", PICKLED))
        self.armed = runtime_context.get_state(ValueStateDescriptor("armed", Types.BOOLEAN()))

    def process_element(self, row: dict[str, Any], ctx: KeyedProcessFunction.Context):
        self.rows.add(row)
        if not self.armed.value():
            _, _, end = slices.partition_of(
                int(row[slices.TIME_COLUMN[self.dataset]]), self.run.job.slice_partition_ms
            )
            ctx.timer_service().register_event_time_timer(end + self.run.job.maturity_window_ms)
            self.armed.update(True)
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        rows = list(self.rows.get() or [])
        self.rows.clear()
        self.armed.clear()
        if not rows:
            return
        partition = str(ctx.get_current_key())
        manifest = write_partition(
            self.run.paths.slices, self.dataset, partition, rows, self.run.job_facet()
        )
        output = lineage.dataset(
            f"file://{self.run.paths.slices}",
            f"{self.dataset}/{partition}",
            row_count=manifest["row_count"],
            fingerprint=manifest["fingerprint"],
            event_time_min=manifest["event_time_min"],
            event_time_max=manifest["event_time_max"],
            files=manifest["files"],
        )
        inputs = [
            lineage.dataset("kafka", topic, offsets=ranges)
            for topic, ranges in slices.source_ranges(rows).items()
        ]
        yield lineage.run_event(
            "RUNNING",
            self.run.run_id,
            self.run.job.job_name,
            self.run.code_version,
            _now_ms(),
            inputs=inputs,
            outputs=[output],
        )


def labelled_to_sink(row: dict[str, Any], topic: str) -> SinkRecord:
    clean = {k: v for k, v in row.items() if k != slices.REFS_FIELD}
    key = f"{row['request_id']}/{row['item_id']}".encode()
    return SinkRecord(
        key, default_codec().encode(LABELLED_IMPRESSION, clean), topic, row["served_at"]
    )


def unmatched_to_sink(pair: tuple[dict[str, Any], bytes], topic: str) -> SinkRecord:
    row, raw = pair
    # Keyed by source coordinates: one key per input record, so reconciliation can count them.
    key = f"{row['source_topic']}/{row['source_partition']}/{row['source_offset']}".encode()
    return SinkRecord(key, raw, topic, row["event_time"])


def lineage_to_sink(
    record: dict[str, Any], topic: str, mirror_dir: Path | None = None,
    pseudonymiser: Pseudonymiser | None = None,
) -> SinkRecord:
    if pseudonymiser is not None:
        record = pseudonymiser.scrub(record)
    if mirror_dir is not None:
        mirror_dir.mkdir(parents=True, exist_ok=True)
        with open(mirror_dir / f"{record['run_id']}.jsonl", "a") as handle:
            handle.write(json.dumps(lineage.as_json(record), sort_keys=True) + "\n")
    return SinkRecord(
        record["run_id"].encode(),
        default_codec().encode(LINEAGE_RECORD, record),
        topic,
        record["event_time"],
    )
