"""The Feast writer's one frozen config ([writer] / LOOPLINE_WRITER_*)."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.errors import WriterConfigError
from loopline import settings
from schemas import topics


@dataclass(frozen=True)
class WriterConfig:
    """What the writer reads, where it sets bad records aside, and how it batches."""

    topic: str = topics.FEATURE_UPDATES
    # One group per target store: offsets say what this store already holds.
    group_id: str = "loopline-feast-writer"
    dead_letter_topic: str = topics.DEAD_LETTERS
    # Each batch's RUNNING event (per-view counts, event-time ranges, offsets); "" = none.
    lineage_topic: str = topics.LINEAGE
    # A batch closes at this many input records, after this long since its first record, or
    # once no record has come for batch_idle_ms (so updates are written as soon as the flow
    # pauses, not a fixed wait later: freshness; under load the batch grows while the last
    # one is written). poll_timeout_ms: how long an empty poll waits for a first record.
    max_batch_rows: int = 20_000
    max_batch_wait_ms: int = 200
    batch_idle_ms: int = 20
    poll_timeout_ms: int = 100
    # A group with no committed offset starts at the beginning: the topic is the whole truth.
    auto_offset_reset: str = "earliest"
    # Updates stamped further ahead of wall-clock time are dead letters: newest-wins would let
    # one of them shadow every real update of its entity until the clock caught up.
    max_future_ms: int = 3_600_000
    # kafka-python verifies CRC32C in pure Python unless the `crc32c` package is installed
    # (it is not a dependency): measured ~70 µs of CPU per 380-byte record, more than decoding
    # it. The broker verified each batch's CRC when it was produced, and a corrupted record
    # fails decoding or the contract checks here and goes to the dead-letter topic; set true
    # (ideally with crc32c installed) for end-to-end integrity checking.
    check_crcs: bool = False
    # A failed Feast write (store down) is retried this often, then the writer stops without
    # committing, so a restart replays the batch; a bad record never gets this far.
    write_attempts: int = 3
    retry_backoff_ms: int = 500
    # A member silent this long (between polls) leaves the group; also how long a rebalance
    # waits for a member that died while joining. A batch takes seconds (bounded rows and
    # write retries), so one minute is ample, and a restart after a crash waits at most that.
    max_poll_interval_ms: int = 60_000
    # drain(): a partition that stays short of its end offset this long ends the drain.
    drain_idle_ms: int = 10_000
    # Unknown writer fingerprints are looked up in the schemas topic (a newer job's schema).
    schema_registry: bool = True
    schemas_topic: str = topics.SCHEMAS
    job_name: str = "loopline-feast-writer"
    run_id: str | None = None

    def __post_init__(self) -> None:
        if not self.topic:
            raise WriterConfigError("writer.topic must name the feature-updates topic, got ''")
        if not self.group_id:
            raise WriterConfigError("writer.group_id must be non-empty: offsets are committed "
                                    "to it after every write")
        if not self.dead_letter_topic:
            raise WriterConfigError("writer.dead_letter_topic must be non-empty: bad records "
                                    "are set aside there, never dropped")
        if self.dead_letter_topic == self.topic:
            raise WriterConfigError(
                f"writer.dead_letter_topic must differ from writer.topic ({self.topic!r})")
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise WriterConfigError("writer.auto_offset_reset must be earliest or latest, "
                                    f"got {self.auto_offset_reset!r}")
        for name in ("max_batch_rows", "max_batch_wait_ms", "batch_idle_ms", "poll_timeout_ms",
                     "max_future_ms", "write_attempts", "drain_idle_ms",
                     "max_poll_interval_ms"):
            if getattr(self, name) <= 0:
                raise WriterConfigError(
                    f"writer.{name} must be positive, got {getattr(self, name)}")
        if self.retry_backoff_ms < 0:
            raise WriterConfigError(
                f"writer.retry_backoff_ms must be >= 0, got {self.retry_backoff_ms}")


def load_writer(**overrides: object) -> WriterConfig:
    return settings.load(WriterConfig, "writer", **overrides)
