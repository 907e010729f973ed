"""The writer loop: consume → decode → compact → write to Feast → commit offsets.

Offsets are committed only after the batch's Feast write (and its dead letters and lineage)
succeeded, so a crash replays a batch rather than losing it; the online stores keep the
newest event time per key (feature_repo/online_stores.py), which makes a replay harmless.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from feature_repo import names
from feature_repo.store import FeastConfig, apply_definitions, registry_lock
from jobs.errors import SinkError, WriterError
from jobs.sinks.feast_writer import FeastWriter
from jobs.transforms import lineage
from jobs.writer import batch
from jobs.writer.compact import by_view, compact
from jobs.writer.config import WriterConfig
from jobs.writer.stats import Tally, WriterStats
from jobs.writer.updates import KafkaRecord, Rejected, Update, decode_batch, unknown_fingerprints
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from loopline.version import code_version
from schemas.codec import LINEAGE_RECORD, Codec
from schemas.producer import EventProducer, ProduceError
from schemas.registry import SchemaRegistry
from schemas.store import SchemaStore

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""progress(records consumed so far, records to consume) during drain()."""
BeforeCommit = Callable[[dict[int, int]], None]
"""Called with partition → next offset after a batch is written, before it is committed."""


def _now_ms() -> int:
    return int(time.time() * 1000)


# A live writer that has read nothing for this long logs its consumer's state (see run()).
QUIET_REPORT_S = 10.0


class _Joined(ConsumerRebalanceListener):
    """Tells "not in the group yet" apart from "in the group, with no partitions"."""

    def __init__(self) -> None:
        self.joined = False

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.joined = True
        log.info("assigned partitions: %s", sorted(f"{tp.topic}/{tp.partition}"
                                                   for tp in assigned))


class FeatureWriter:
    """Batches FeatureUpdate records from Kafka into the Feast online store.

    One instance, one thread. `drain()` writes what the topic holds when it is called (a
    bounded run); `run()` writes until `stop` is set (an unbounded run).
    """

    def __init__(self, config: WriterConfig, kafka: KafkaConfig, feast: FeastConfig,
                 paths: PathsConfig, *, before_commit: BeforeCommit | None = None) -> None:
        self.config = config
        self.kafka = kafka
        self.feast = feast
        self.paths = paths
        self.run_id = config.run_id or str(uuid.uuid4())
        self.before_commit = before_commit
        self.code_version = code_version(("jobs", "schemas", "feature_repo", "loopline"))
        # Its own schema store: the registry may teach it newer schemas, and the process-wide
        # default codec must not learn them behind other components' backs.
        self.codec = Codec(SchemaStore.from_directory())
        self.registry = (SchemaRegistry(kafka, config.schemas_topic)
                         if config.schema_registry else None)
        self.sink = FeastWriter(feast, paths)
        self._ensure_views()
        self.producer = EventProducer(kafka, codec=self.codec)
        self.consumer: KafkaConsumer | None = None

    def _ensure_views(self) -> None:
        """Register the feature views unless they already are (fresh home, standalone use)."""
        store = self.sink.store
        try:
            with registry_lock(store):
                for view in names.FEATURES_BY_VIEW:
                    store.get_feature_view(view, allow_registry_cache=False)
        except Exception:  # Feast raises FeatureViewNotFoundException or registry errors
            apply_definitions(store, self.paths)
        # Writes look views up in Feast's cached registry (10 min TTL), which may predate an
        # apply by another process; a stale cache fails them with a bare KeyError.
        self._refresh_registry()

    # ---- consuming ---------------------------------------------------------------------

    def _consumer(self) -> KafkaConsumer:
        cfg = self.config
        try:
            return KafkaConsumer(
                **self.kafka.client_kwargs(), group_id=cfg.group_id,
                client_id=f"{cfg.job_name}-{self.run_id[:8]}", enable_auto_commit=False,
                auto_offset_reset=cfg.auto_offset_reset, max_poll_records=cfg.max_batch_rows,
                max_poll_interval_ms=cfg.max_poll_interval_ms, check_crcs=cfg.check_crcs,
                # Large fetches: a backlog arrives in few round trips, batches fill at once.
                fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024,
                # A group member assigned from metadata that did not list the topic's
                # partitions yet gets nothing until the metadata is refreshed (then the group
                # rebalances): every 5 s, not kafka-python's 5 min, bounds that stall.
                metadata_max_age_ms=5_000,
            )
        except KafkaError as exc:
            raise WriterError(f"cannot connect to Kafka at {self.kafka.bootstrap_servers}: "
                              f"{exc}") from exc

    def _partitions(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        found = consumer.partitions_for_topic(self.config.topic)
        if not found:
            raise WriterError(f"expected topic {self.config.topic!r} on "
                              f"{self.kafka.bootstrap_servers}, found none")
        return [TopicPartition(self.config.topic, p) for p in sorted(found)]

    def _next_batch(self, consumer: KafkaConsumer, tally: Tally) -> list[Any]:
        """Poll until the batch is full, old enough, or the topic has nothing more for now."""
        cfg = self.config
        records: list[Any] = []
        started: float | None = None
        t0 = time.perf_counter()
        while len(records) < cfg.max_batch_rows:
            if started is None:
                timeout = cfg.poll_timeout_ms
            else:
                left = cfg.max_batch_wait_ms - (time.perf_counter() - started) * 1000
                if left <= 0:
                    break
                timeout = int(min(left, cfg.batch_idle_ms))
            polled = consumer.poll(timeout_ms=timeout,
                                   max_records=cfg.max_batch_rows - len(records))
            got = [r for part in polled.values() for r in part]
            if not got:
                break  # nothing more for batch_idle_ms: write what we have (freshness)
            records += got
            if started is None:
                started = time.perf_counter()
        tally.stage_seconds["poll"] += time.perf_counter() - t0
        return records

    # ---- one batch ---------------------------------------------------------------------

    def _decode(self, records: Sequence[KafkaRecord]) -> tuple[list[Update], list[Rejected]]:
        now = _now_ms()
        updates, rejected = decode_batch(records, self.codec, now, self.config.max_future_ms)
        unknown = unknown_fingerprints(rejected)
        if unknown and self.registry is not None and any(
            self.registry.refresh(self.codec.store, bytes.fromhex(fp)) for fp in sorted(unknown)
        ):
            # A newer (compatible) schema was published since we loaded: decode those again.
            retry = [r.record for r in rejected if r.why.error_type == "UnknownSchemaError"]
            rejected = [r for r in rejected if r.why.error_type != "UnknownSchemaError"]
            more, still = decode_batch(retry, self.codec, now, self.config.max_future_ms)
            updates += more
            rejected += still
        return updates, rejected

    def _write(self, winners: list[Update]) -> dict[str, dict[str, Any]]:
        """Write each view's compacted rows; a failing store is retried, then the batch fails."""
        written: dict[str, dict[str, Any]] = {}
        for view, rows in by_view(winners).items():
            for attempt in range(1, self.config.write_attempts + 1):
                try:
                    self.sink.write_online(view, rows)
                    break
                except SinkError as exc:
                    if attempt == self.config.write_attempts:
                        raise SinkError(f"{exc} (gave up after {attempt} attempts; offsets "
                                        "not committed, a restart replays the batch)") from exc
                    log.warning("Feast write failed (attempt %d): %s", attempt, exc)
                    time.sleep(self.config.retry_backoff_ms * attempt / 1000)
                    self._refresh_registry()
            written[view] = batch.view_stats(rows)
        return written

    def _refresh_registry(self) -> None:
        try:
            with registry_lock(self.sink.store):
                self.sink.store.refresh_registry()
        except Exception as exc:  # the next attempt reports the store's state anyway
            log.warning("refreshing the Feast registry failed: %s", exc)

    def _handle(self, consumer: KafkaConsumer, records: list[Any], tally: Tally) -> None:
        t0 = time.perf_counter()
        updates, rejected = self._decode(records)
        t1 = time.perf_counter()
        winners = compact(updates)
        t2 = time.perf_counter()
        written = self._write(winners)
        t3 = time.perf_counter()
        now = _now_ms()
        for letter in batch.dead_letters(rejected, self.codec, self.config.dead_letter_topic,
                                         now, self.run_id):
            self.producer.send_raw(letter.topic, letter.value, letter.key, letter.timestamp_ms)
        ranges = batch.offset_ranges(records)
        if self.config.lineage_topic:
            self._lineage(batch.lineage_event(
                run_id=self.run_id, job_name=self.config.job_name,
                code_version=self.code_version, now_ms=now, topic=self.config.topic,
                project=self.feast.project, ranges=ranges, written=written, updates=winners,
                records_in=len(records), dead_lettered=len(rejected)))
        try:
            self.producer.flush()
        except ProduceError as exc:
            raise WriterError(f"dead letters/lineage of a batch were not acknowledged, so its "
                              f"offsets stay uncommitted: {exc}") from exc
        offsets = batch.next_offsets(ranges)
        if self.before_commit is not None:
            self.before_commit(offsets)
        self._commit(consumer, offsets, tally)
        tally.stage_seconds["decode"] += t1 - t0
        tally.stage_seconds["compact"] += t2 - t1
        tally.stage_seconds["write"] += t3 - t2
        tally.stage_seconds["commit"] += time.perf_counter() - t3
        tally.records_in += len(records)
        tally.dead_letters += len(rejected)
        tally.batches += 1
        for view, facet in written.items():
            tally.add_rows(view, facet["rows"])

    def _lineage(self, event: dict[str, Any]) -> None:
        self.producer.send_raw(self.config.lineage_topic,
                               self.codec.encode(LINEAGE_RECORD, event),
                               self.run_id.encode(), event["event_time"])
        # Mirrored as JSON lines beside the job's, for offline tools (and the benchmarks).
        mirror = self.paths.lineage
        mirror.mkdir(parents=True, exist_ok=True)
        with open(mirror / f"{self.run_id}.jsonl", "a") as handle:
            handle.write(json.dumps(lineage.as_json(event), sort_keys=True) + "\n")

    def _commit(self, consumer: KafkaConsumer, offsets: dict[int, int], tally: Tally) -> None:
        topic = self.config.topic
        try:
            consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
                             for p, o in offsets.items()})
        except CommitFailedError as exc:
            # The group rebalanced while we wrote: the rows are in Feast, the partition's new
            # owner replays them from the last commit, and newest-wins makes that harmless.
            tally.commit_failures += 1
            log.warning("offset commit refused after a rebalance (rows written, will be "
                        "replayed by the new owner): %s", exc)
        except KafkaError as exc:
            raise WriterError(f"committing offsets {offsets} of {topic} failed: {exc}") from exc

    # ---- the two modes -----------------------------------------------------------------

    def drain(self, progress: Progress | None = None) -> WriterStats:
        """Write everything up to the end offsets present now, then return.

        Reads every partition from the group's committed offsets (or auto_offset_reset) and
        commits as it goes. `complete` is False when a partition stayed short of its end for
        drain_idle_ms (records deleted under it, or a transaction never completed).
        """
        started = time.perf_counter()
        tally = Tally(self.run_id)
        consumer = self.consumer = self._consumer()
        try:
            partitions = self._partitions(consumer)
            consumer.assign(partitions)
            ends = consumer.end_offsets(partitions)
            starts = {tp: consumer.position(tp) for tp in partitions}
            total = sum(max(0, ends[tp] - starts[tp]) for tp in partitions)
            if progress is not None:
                progress(0, total)
            complete = self._loop(consumer, tally, ends, None, progress, total)
        except KafkaError as exc:
            raise WriterError(f"draining {self.config.topic}: {exc}") from exc
        finally:
            consumer.close(autocommit=False)
            self.consumer = None
        return tally.freeze(time.perf_counter() - started, complete)

    def run(self, stop: threading.Event, drain: threading.Event | None = None) -> WriterStats:
        """Write as updates arrive until `stop` is set (the batch in hand is finished first).

        With `drain` set, first write up to the end offsets present at that moment, then stop:
        how a runner ends the writer after cancelling the job without leaving updates behind.
        Subscribes with the group, so several writers of one group share the partitions.
        """
        started = time.perf_counter()
        tally = Tally(self.run_id)
        consumer = self.consumer = self._consumer()
        complete = False
        try:
            self._partitions(consumer)
            joined = _Joined()
            consumer.subscribe([self.config.topic], listener=joined)
            quiet_since = time.perf_counter()
            while not stop.is_set():
                if drain is not None and drain.is_set():
                    ends = consumer.end_offsets(self._partitions(consumer))
                    complete = self._loop(consumer, tally, ends, joined)
                    break
                records = self._next_batch(consumer, tally)
                if records:
                    self._handle(consumer, records, tally)
                    quiet_since = time.perf_counter()
                elif time.perf_counter() - quiet_since >= QUIET_REPORT_S:
                    self._report_quiet(consumer, joined)
                    quiet_since = time.perf_counter()
            else:
                complete = True
        except KafkaError as exc:
            raise WriterError(f"consuming {self.config.topic}: {exc}") from exc
        finally:
            consumer.close(autocommit=False)
            self.consumer = None
        return tally.freeze(time.perf_counter() - started, complete)

    def _report_quiet(self, consumer: KafkaConsumer, joined: _Joined) -> None:
        """No record for a while: log what the consumer holds against what the topic has, so
        a writer that reads nothing although updates wait (seen intermittently in tests) leaves
        the evidence in its log."""
        try:
            topic = self._partitions(consumer)
            ends = consumer.end_offsets(topic)
            held = sorted(consumer.assignment(), key=lambda tp: tp.partition)
            positions = {tp.partition: consumer.position(tp) for tp in held}
        except KafkaError as exc:
            log.info("no records for %.0f s; consumer state unavailable: %s", QUIET_REPORT_S, exc)
            return
        log.info("no records for %.0f s: joined=%s, assigned %s at positions %s; the topic's "
                 "end offsets %s", QUIET_REPORT_S, joined.joined, [tp.partition for tp in held],
                 positions, {tp.partition: ends[tp] for tp in topic})

    def _loop(self, consumer: KafkaConsumer, tally: Tally, ends: dict[TopicPartition, int],
              joined: _Joined | None, progress: Progress | None = None, total: int = 0) -> bool:
        """Batches until every assigned partition reached `ends`; False if it went idle first.

        `joined` (subscribed consumers): until the group has assigned partitions, "nothing
        assigned" means "not joined yet", not "nothing to do".
        """
        idle_since: float | None = None
        done = 0
        while True:
            behind = [tp for tp in consumer.assignment()
                      if tp in ends and consumer.position(tp) < ends[tp]]
            if not behind and (joined is None or joined.joined):
                return True
            records = self._next_batch(consumer, tally)
            if not records and joined is not None and not joined.joined:
                continue  # still joining (a dead member's session may have to expire first)
            if not records:
                idle_since = idle_since or time.perf_counter()
                if (time.perf_counter() - idle_since) * 1000 >= self.config.drain_idle_ms:
                    log.warning("drain stopped short of the end offsets of %s",
                                behind or "(no partitions assigned)")
                    return False
                continue
            idle_since = None
            self._handle(consumer, records, tally)
            done += len(records)
            if progress is not None:
                progress(done, total)

    def close(self) -> None:
        self.producer.close()

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
