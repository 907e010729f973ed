"""Waiting for the streaming job: which feedback-slice partitions must be final by now, and
polling until the job has written them (with the row counts serving logged).

A partition (one event hour of labelled impressions) is final once the job's watermark passes
its end plus the maturity window. The watermark is the minimum over the input partitions of
their newest event time minus the out-of-orderness bound, so it is estimated from the newest
record timestamp of every input partition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from demo.errors import DemoTimeoutError
from jobs.config import JobConfig
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from models import slices


def hour_name(start_ms: int) -> str:
    return datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y-%m-%dT%H")


def newest_timestamps(kafka: KafkaConfig, topics: tuple[str, ...]) -> dict[tuple[str, int], int]:
    """Record timestamp of the last record in every non-empty partition of `topics`."""
    consumer = KafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(
            consumer.partitions_for_topic(t) or ())]
        if not tps:
            return {}
        begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        found: dict[tuple[str, int], int] = {}
        for tp in tps:
            if end[tp] <= begin[tp]:
                continue
            consumer.assign([tp])
            consumer.seek(tp, end[tp] - 1)
            deadline = time.monotonic() + 30
            while (tp.topic, tp.partition) not in found and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=1000).values():
                    found[(tp.topic, tp.partition)] = records[-1].timestamp
        return found
    finally:
        consumer.close()


def watermark(kafka: KafkaConfig, job: JobConfig) -> int | None:
    """The job's watermark once it has read everything published so far (None: no input)."""
    newest = newest_timestamps(kafka, (job.serving_topic, job.interactions_topic))
    return min(newest.values()) - job.out_of_orderness_ms if newest else None


def wait_consumed(kafka: KafkaConfig, job: JobConfig, check: Callable[[], None],
                  timeout_s: float) -> None:
    """Until the job's consumer group has committed the end offset of every input partition.

    The job commits its source offsets with each checkpoint, so this says the source has read
    everything published: stopping it now (drain) leaves no input unread. Records read but
    still in flight are part of that checkpoint and are processed before the drain ends.
    """
    consumer = KafkaConsumer(**kafka.client_kwargs(), group_id=job.group_id,
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in (job.serving_topic, job.interactions_topic)
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while True:
            behind = {tp: end[tp] - (consumer.committed(tp) or 0) for tp in tps}
            if all(n <= 0 for n in behind.values()):
                return
            if time.monotonic() > deadline:
                raise DemoTimeoutError(
                    f"the feedback job has not read {sum(behind.values())} input records "
                    f"within {timeout_s:.0f}s")
            check()
            time.sleep(1.0)
    finally:
        consumer.close()


def due(impressions: Mapping[int, int], mark: int | None, job: JobConfig) -> dict[int, int]:
    """Partitions (start ms -> impressions) that the watermark `mark` makes final."""
    if mark is None:
        return {}
    span = job.slice_partition_ms + job.maturity_window_ms
    return {start: n for start, n in impressions.items() if start + span < mark}


def wait_features(paths: PathsConfig, since_ms: int, check: Callable[[], None],
                  timeout_s: float, quiet_s: float = 3.0) -> None:
    """Until the offline feature log (what the online store also got) holds rows from
    `since_ms` on and no new batch arrived for `quiet_s`: the job's feature sink flushes a
    second after its last input, so a quiet log means it has written what it was given."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    deadline = time.monotonic() + timeout_s
    seen: set[Path] = set()
    newest = -1
    last_new = time.monotonic()
    last_check = 0.0
    while True:
        fresh = set(paths.features_offline.glob("*/*.parquet")) - seen
        for path in fresh:
            column = pq.read_table(path, columns=["event_timestamp"]).column(0)
            if len(column):
                ms = column.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
                newest = max(newest, int(ms.to_numpy().max()))
        if fresh:
            seen |= fresh
            last_new = time.monotonic()
        now = time.monotonic()
        if newest >= since_ms and now - last_new >= quiet_s:
            return
        if now - last_check > 5:
            check()
            last_check = now
        if now > deadline:
            raise DemoTimeoutError(
                f"the feedback job wrote no features from {hour_name(since_ms)} on within "
                f"{timeout_s:.0f}s (newest: {hour_name(newest) if newest >= 0 else 'none'})")
        time.sleep(0.5)


def wait_final(paths: PathsConfig, expected: Mapping[int, int], check: Callable[[], None],
               timeout_s: float, progress: Callable[[int], None] | None = None) -> None:
    """Poll the slice log until every expected partition is final with its rows; `check`
    raises if the job died; `progress(n)` gets the number of final partitions so far."""
    deadline = time.monotonic() + timeout_s
    last_check = 0.0
    while True:
        final = {p.start_ms: p.row_count for p in slices.list_partitions(paths)}
        done = [s for s, n in expected.items() if final.get(s, 0) >= n]
        if progress is not None:
            progress(len(done))
        if len(done) == len(expected):
            return
        now = time.monotonic()
        if now - last_check > 5:
            check()
            last_check = now
        if now > deadline:
            missing = sorted(set(expected) - set(done))
            raise DemoTimeoutError(
                f"the feedback job did not finalise {len(missing)} slice partitions within "
                f"{timeout_s:.0f}s (first missing: {hour_name(missing[0])}, expected "
                f"{expected[missing[0]]} rows, found {final.get(missing[0], 0)}); raise "
                "LOOPLINE_DEMO_CATCH_UP_TIMEOUT_S on a slow machine")
        time.sleep(0.5)


def compact_feature_log(paths: PathsConfig) -> int:
    """Merge the offline feature log's small Parquet batches into one file per view.

    The job appends one file per view and flush (about one a second while it works), and
    Feast's file offline store (dask) pays per file in point-in-time joins: a few hundred
    files turn a seconds-long training into minutes. Only complete files are merged (the job
    renames each batch into place) and only those are deleted, so batches written meanwhile
    stay; the rows, and therefore the point-in-time history, are unchanged.
    """
    import uuid

    import pyarrow as pa
    import pyarrow.parquet as pq

    merged = 0
    for view in sorted(p for p in paths.features_offline.iterdir() if p.is_dir()):
        files = sorted(view.glob("*.parquet"))
        if len(files) < 2:
            continue
        table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
        target = view / f"compact-{uuid.uuid4().hex[:12]}.parquet"
        tmp = target.with_name(f".{target.name}.tmp")
        pq.write_table(table, tmp)
        tmp.replace(target)
        for f in files:
            f.unlink()
        merged += len(files)
    return merged
