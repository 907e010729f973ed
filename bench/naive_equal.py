"""The equal-work baseline of the throughput suite: bench/naive.py's loop plus everything else
the feedback job does per event, done the way a user without Flink would do it.

Per polled batch, in one process: decode + validate every record (jobs/transforms/decode, the
job's own pure function) → per-partition lateness → the label join (jobs/transforms/label_join,
the job's own pure state machine, state in a dict, timers in a heap fired by a watermark =
slowest partition's newest event time − out-of-orderness) → features as bench/naive.py
(pandas windows → write_to_online_store) → labelled impressions and unmatched interactions to
their Kafka topics, dead letters and late events to theirs → hourly feedback-slice partitions
(jobs/sinks/slice_log.write_partition) once the watermark passes hour end + maturity window →
producer flush, then the consumer commit (the job's checkpoint, in spirit).

What it still skips: no checkpoints of its state (a crash loses open requests), no lineage,
no offline feature log, no decay re-emits. That still favours the baseline.
"""

from __future__ import annotations

import heapq
import time
from pathlib import Path
from typing import Any

from bench.naive import NaivePipeline
from jobs.sinks.slice_log import write_partition
from jobs.transforms import slices
from jobs.transforms.dead_letters import dead_letter, to_sink
from jobs.transforms.decode import Rejection, decode_record, is_late
from jobs.transforms.label_join import JoinOutput, LabelJoin, RequestState
from jobs.transforms.records import SERVING, Envelope, SourceRecord
from schemas.codec import LABELLED_IMPRESSION

OUT_OF_ORDERNESS_MS = 5_000  # JobConfig defaults: the job runs with the same
MATURITY_WINDOW_MS = 30 * 60_000
CLOSED_TTL_MS = 2 * 3_600_000
PARTITION_MS = 3_600_000
MAX_FUTURE_MS = 3_600_000


class EqualWork:
    """The join, routing and slices around NaivePipeline; outputs go through `send`."""

    def __init__(self, spec: dict[str, Any], codec: Any, send: Any, slices_root: Path) -> None:
        self.spec = spec
        self.codec = codec
        self.send = send  # send(topic, value, key, timestamp_ms)
        self.slices_root = slices_root
        self.join = LabelJoin(MATURITY_WINDOW_MS, CLOSED_TTL_MS)
        self.requests: dict[str, RequestState] = {}
        self.timers: list[tuple[int, str]] = []
        self.part_max: dict[tuple[str, int], int] = {}
        self.pending: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.counts = dict.fromkeys(("input", "joined", "unmatched", "late", "dead_lettered",
                                     "labelled_rows", "slice_files"), 0)
        self.job = {"name": "naive-equal-work", "run_id": spec["group_id"], "code_version": "-"}

    def expect(self, partitions: list[tuple[str, int]]) -> None:
        for part in partitions:
            self.part_max.setdefault(part, 0)

    def accept(self, records: list[Any]) -> list[tuple[str, int, int, str, dict[str, Any]]]:
        """Decode, route and join one batch; returns the accepted events for the features."""
        now = int(time.time() * 1000)
        accepted = []
        serving_topic, interactions_topic = self.spec["serving_topic"], \
            self.spec["interactions_topic"]
        for r in records:
            self.counts["input"] += 1
            source = SourceRecord(r.value or b"", r.topic, r.partition, r.offset, r.timestamp)
            result = decode_record(source, self.codec, serving_topic, interactions_topic, now,
                                   MAX_FUTURE_MS)
            if isinstance(result, Rejection):
                self._letter(source, result.stage, result.error_type, result.reason,
                             result.fingerprint, self.spec["dead_letter_topic"], now)
                self.counts["dead_lettered"] += 1
                continue
            part = (r.topic, r.partition)
            newest = self.part_max.get(part) or None
            if is_late(newest, result.event_time, OUT_OF_ORDERNESS_MS):
                self._letter(source, "late", "LateEvent", "behind the partition watermark",
                             None, self.spec["late_topic"], now)
                self.counts["late"] += 1
                continue
            self.part_max[part] = max(self.part_max.get(part, 0), result.event_time)
            accepted += self._join(result)
        self.fire(self.watermark(), end_of_input=False)
        self.flush_slices(self.watermark())
        return accepted

    def _letter(self, source: SourceRecord, stage: str, error_type: str, reason: str,
                fingerprint: str | None, topic: str, now: int) -> None:
        letter = dead_letter(*source, stage, error_type, reason, fingerprint, now, None)
        sink = to_sink(letter, self.codec, topic)
        self.send(sink.topic, sink.value, sink.key, sink.timestamp_ms)

    def _join(self, env: Envelope) -> list[tuple[str, int, int, str, dict[str, Any]]]:
        key = env.join_key
        state = self.requests.get(key) or RequestState()
        out = self.join.on_event(state, env)
        self._emit(key, state, out)
        return [(e.topic, e.partition, e.event_time, "serving" if e.kind == SERVING
                 else "interaction", e.event) for e in out.accepted]

    def _emit(self, key: str, state: RequestState, out: JoinOutput) -> None:
        self.counts["joined"] += out.joined_serving + out.joined_interactions
        for timer in out.timers:
            heapq.heappush(self.timers, (timer, key))
        now = int(time.time() * 1000)
        for env in out.duplicates:
            source = SourceRecord(env.raw, env.topic, env.partition, env.offset, env.event_time)
            self._letter(source, "duplicate", "DuplicateEvent", f"{env.kind} {key} again",
                         None, self.spec["dead_letter_topic"], now)
            self.counts["dead_lettered"] += 1
        for env, reason in out.unmatched:
            self.counts["unmatched"] += 1
            row = slices.unmatched_row(env.event, reason, env.topic, env.partition, env.offset)
            self.send(self.spec["unmatched_topic"], env.raw,
                      f"{env.topic}/{env.partition}/{env.offset}".encode(), env.event_time)
            self._buffer(slices.UNMATCHED_DATASET, row)
        for row in out.labelled:
            clean = {k: v for k, v in row.items() if k != slices.REFS_FIELD}
            self.send(self.spec["labelled_topic"], self.codec.encode(LABELLED_IMPRESSION, clean),
                f"{row['request_id']}/{row['item_id']}".encode(), row["served_at"])
            self._buffer(slices.LABELLED_DATASET, row)
            self.counts["labelled_rows"] += 1
        if out.clear or state.empty:
            self.requests.pop(key, None)
        else:
            self.requests[key] = state

    def _buffer(self, dataset: str, row: dict[str, Any]) -> None:
        name, _, _ = slices.partition_of(int(row[slices.TIME_COLUMN[dataset]]), PARTITION_MS)
        self.pending.setdefault((dataset, name), []).append(row)

    def watermark(self) -> int:
        return min(self.part_max.values(), default=0) - OUT_OF_ORDERNESS_MS

    def fire(self, watermark: int, end_of_input: bool) -> None:
        while self.timers and (end_of_input or self.timers[0][0] <= watermark):
            timestamp, key = heapq.heappop(self.timers)
            state = self.requests.get(key)
            if state is None:
                continue
            self._emit(key, state, self.join.on_timer(state, timestamp, end_of_input))

    def flush_slices(self, watermark: int, end_of_input: bool = False) -> None:
        """Write partitions that can no longer change (the job's rule: hour end + window)."""
        for (dataset, name), rows in list(self.pending.items()):
            _, _, end = slices.partition_of(int(rows[0][slices.TIME_COLUMN[dataset]]),
                                            PARTITION_MS)
            if end_of_input or watermark >= end + MATURITY_WINDOW_MS:
                write_partition(self.slices_root, dataset, name, rows, self.job)
                self.counts["slice_files"] += 1
                del self.pending[(dataset, name)]


def run_from_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Consume `expected_input` events; features, labels, slices and outputs as the job."""
    from kafka import KafkaConsumer, KafkaProducer

    from feature_repo.store import FeastConfig, feature_store
    from loopline.kafka import KafkaConfig
    from loopline.paths import load_paths
    from schemas.codec import default_codec

    t_process = float(spec["t_spawn"])
    kafka = KafkaConfig(bootstrap_servers=spec["bootstrap_servers"])
    paths = load_paths()
    store = feature_store(FeastConfig(**spec["feast"]), paths, apply=True)
    codec = default_codec()
    expected = int(spec.get("expected_input") or 0)
    batch_records = int(spec.get("batch_records", 10_000))
    consumer = KafkaConsumer(
        spec["serving_topic"], spec["interactions_topic"], **kafka.client_kwargs(),
        group_id=spec["group_id"], auto_offset_reset="earliest", enable_auto_commit=False,
        max_poll_records=batch_records, fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024)
    producer = KafkaProducer(**{**kafka.producer_kwargs(), "linger_ms": 20,
                                "batch_size": 512 * 1024})

    def send(topic: str, value: bytes, key: bytes | None, ts: int | None) -> None:
        producer.send(topic, value=value, key=key, timestamp_ms=ts)

    work = EqualWork(spec, codec, send, paths.slices)
    features = NaivePipeline()
    consumed = written = batches = 0
    t_first: float | None = None
    t_first_write: float | None = None
    seconds = {"poll": 0.0, "decode_join": 0.0, "features": 0.0, "write": 0.0, "flush": 0.0}
    t_start = time.time()
    idle_s = float(spec.get("idle_timeout_s", 120))
    idle_deadline = time.time() + idle_s
    try:
        while consumed < expected and time.time() < idle_deadline:
            t0 = time.perf_counter()
            polled = consumer.poll(timeout_ms=1000, max_records=batch_records)
            records = [r for rs in polled.values() for r in rs]
            t1 = time.perf_counter()
            seconds["poll"] += t1 - t0
            if not records:
                continue
            t_first = t_first or time.time()
            idle_deadline = time.time() + idle_s
            parts = [(tp.topic, tp.partition) for tp in consumer.assignment()]
            work.expect(parts)
            features.expect(parts)
            accepted = work.accept(records)
            t2 = time.perf_counter()
            seconds["decode_join"] += t2 - t1
            frames = features.add(accepted) if accepted else {}
            t3 = time.perf_counter()
            seconds["features"] += t3 - t2
            for view, frame in frames.items():
                store.write_to_online_store(view, frame)
                written += len(frame)
            t4 = time.perf_counter()
            seconds["write"] += t4 - t3
            t_first_write = t_first_write or time.time()
            consumed += len(records)
            if consumed >= expected:  # a bounded run: close every request and partition
                work.fire(work.watermark(), end_of_input=True)
                work.flush_slices(work.watermark(), end_of_input=True)
            producer.flush()
            consumer.commit()
            seconds["flush"] += time.perf_counter() - t4
            batches += 1
    finally:
        consumer.close()
        producer.close()
    return {
        "status": "FINISHED" if consumed >= expected else "INCOMPLETE",
        "consumed": consumed, "expected_input": expected, "rows_written": written,
        "batches": batches, "counts": work.counts, "t_process": t_process, "t_call": t_start,
        "t_first_input": t_first, "t_first_output": t_first_write, "t_end": time.time(),
        "stage_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "open_requests_at_end": len(work.requests),
    }
