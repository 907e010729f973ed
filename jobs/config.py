"""The feedback job's one frozen config ([job] / LOOPLINE_JOB_*): windows, topics, sinks."""

from __future__ import annotations

from dataclasses import dataclass

from infra import java
from jobs.errors import JobConfigError
from loopline import settings
from schemas import topics


@dataclass(frozen=True)
class JobConfig:
    """What the feedback job reads, how it labels and aggregates, and how it runs."""

    # Which topics: defaults are the contract names in schemas.topics.
    serving_topic: str = topics.SERVING
    interactions_topic: str = topics.INTERACTIONS
    # Serving's FeatureLogs, joined into labelled impressions (training on exactly what
    # serving saw); "" = off: the job reads serving events and interactions only.
    feature_log_topic: str = topics.FEATURE_LOGS
    labelled_topic: str = topics.LABELLED
    unmatched_topic: str = topics.UNMATCHED
    late_topic: str = topics.LATE
    dead_letter_topic: str = topics.DEAD_LETTERS
    lineage_topic: str = topics.LINEAGE
    feature_updates_topic: str = topics.FEATURE_UPDATES
    group_id: str = "loopline-feedback"
    # earliest: replay everything the group has not committed; latest: only new events.
    startup: str = "group-offsets"
    # Stop at the offsets that exist when the job starts (tests, backfills, the demo's replays).
    bounded: bool = False

    # Flink watermark alignment: a source split whose watermark runs more than this ahead of
    # the slowest pauses, so a replay cannot race one topic far ahead (less state to hold).
    # Off (0) by default: correctness never depends on it (every output is in event time),
    # and with the pinned Kafka connector (5.0.0-2.2) a bounded replay fails when a finished
    # split is paused ("No current assignment for partition", FLINK-39728, fixed later).
    watermark_alignment_ms: int = 0

    # Event time. Out-of-orderness bounds the watermark; anything older than its partition's
    # watermark is late. Idle partitions stop holding the watermark back after idle_timeout.
    out_of_orderness_ms: int = 5_000
    idle_timeout_ms: int = 10_000
    # Events stamped further than this ahead of wall-clock time are rejected (dead-lettered).
    max_future_ms: int = 3_600_000
    # Label join: an impression is labelled by the outcomes inside this window after serving.
    maturity_window_ms: int = 30 * 60_000
    # How long a closed request is remembered (late duplicates, interactions after the window).
    closed_request_ttl_ms: int = 2 * 3_600_000

    # Unknown writer fingerprints are looked up in the schemas topic (schemas/registry.py).
    schema_registry: bool = True
    schemas_topic: str = topics.SCHEMAS

    # Features: position-bias examination model 1/(1+position)^eta; last-N clicked items.
    position_bias_eta: float = 1.0
    last_clicked_n: int = 10

    # Online feature updates are compacted to the newest per entity and emitted at most once
    # per entity per tick (processing time): fresher with a shorter tick, fewer writes longer.
    online_flush_ms: int = 200
    # Log feature values in event-time order to Parquet (the Feast batch sources) for training.
    offline_feature_log: bool = True
    slice_partition_ms: int = 3_600_000
    # The offline feature log leaves the job in event-time slices of this width (a divisor of
    # slice_partition_ms), consecutive slices grouped until a group holds partition_chunk_rows
    # rows or its hour ends: an open hour no longer waits in checkpointed heap state (at
    # 5,000 events/s it grew by about a megabyte a second and would not fit an hour), and a
    # slow hour is still a few files. The cuts depend only on the rows, so a replay writes
    # the same files. Narrow slices spread the release work evenly (measured at 5,000/s:
    # 60 s slices stalled the operator for seconds each minute, 2 s ones do not).
    feature_log_slice_ms: int = 2_000
    # A final partition reaches the Python partition writer in chunks of this many rows.
    partition_chunk_rows: int = 50_000

    # Runtime. The one Python operator (the partition writer) sees one element per released
    # chunk; a bundle bounds how long such an element may wait in it.
    python_bundle_size: int = 1_000
    python_bundle_time_ms: int = 200
    parallelism: int = 1
    # A network buffer is sent when full or after this long: an event crosses four operator
    # boundaries before it reaches the online store, and Flink's 100 ms default could add up
    # to 400 ms of the freshness budget at a few thousand events/s.
    buffer_timeout_ms: int = 25
    # HotSpot options for the JVM that runs the operators in a `loopline job run` (the
    # embedded mini-cluster; a cluster's TaskManagers take [services] flink_taskmanager_java_opts).
    # C2 with its default inlining spends seconds on a few huge methods of the operator chains;
    # with one C2 thread on a 2-core machine the queue backs up and hot code runs profiled C1
    # code for most of a 100 K-event replay (measured: 2.2x the operator CPU). Smaller inline
    # sizes keep each compilation short. "" = the JVM's defaults; JVM_ARGS set by the user
    # comes after these, so it wins.
    jit_options: str = java.SMALL_MACHINE_JIT
    checkpoint_interval_ms: int = 10_000
    # Where keyed state lives. "hashmap": objects on the JVM heap, every checkpoint a full
    # copy (fastest per record; state and checkpoints grow with what the job remembers:
    # open slates for the maturity window, closed requests for closed_request_ttl_ms).
    # "rocksdb": on local disk, checkpoints incremental (per-record serialization; what a
    # live job at thousands of events/s for hours needs). See docs/architecture.md.
    state_backend: str = "hashmap"
    # Failure-rate restarts: up to restart_attempts restarts within any restart_window_ms; one
    # more failure inside the window fails the job cleanly (a crash loop, a poison pill: never
    # an endless loop). Outside it the budget refills, so a streaming job survives a lost
    # TaskManager every now and then for as long as it runs (a lifetime budget, as with
    # fixed-delay restarts, would end it at the Nth loss, however far apart).
    restart_attempts: int = 3
    restart_delay_ms: int = 2_000
    restart_window_ms: int = 600_000
    job_name: str = "loopline-feedback"
    run_id: str | None = None

    @property
    def input_topics(self) -> tuple[str, ...]:
        """The topics the job reads (the FeatureLog topic when it joins logged features)."""
        return tuple(t for t in (self.serving_topic, self.interactions_topic,
                                 self.feature_log_topic) if t)

    @property
    def output_topics(self) -> tuple[str, ...]:
        return (
            self.labelled_topic,
            self.unmatched_topic,
            self.late_topic,
            self.dead_letter_topic,
            self.lineage_topic,
            self.feature_updates_topic,
        )

    def __post_init__(self) -> None:
        if self.state_backend not in ("hashmap", "rocksdb"):
            raise JobConfigError(
                f"job.state_backend must be hashmap or rocksdb, got {self.state_backend!r}")
        if self.startup not in ("group-offsets", "earliest-offset", "latest-offset"):
            raise JobConfigError(
                "job.startup must be group-offsets, earliest-offset or latest-offset, "
                f"got {self.startup!r}"
            )
        for name in (
            "out_of_orderness_ms",
            "idle_timeout_ms",
            "maturity_window_ms",
            "online_flush_ms",
            "partition_chunk_rows",
            "slice_partition_ms",
            "feature_log_slice_ms",
            "parallelism",
            "buffer_timeout_ms",
            "checkpoint_interval_ms",
            "last_clicked_n",
            "max_future_ms",
            "restart_delay_ms",
            "restart_window_ms",
        ):
            if getattr(self, name) <= 0:
                raise JobConfigError(f"job.{name} must be positive, got {getattr(self, name)}")
        if self.restart_attempts < 0:
            raise JobConfigError(f"job.restart_attempts must be >= 0, got {self.restart_attempts}")
        if len(set(self.input_topics)) != len(self.input_topics):
            raise JobConfigError("job.serving_topic, job.interactions_topic and "
                                 "job.feature_log_topic must differ")
        # Partitions are named by their start hour (hour=YYYY-MM-DDTHH): a sub-hour partition
        # would share its name with the next one in the same hour and be skipped as a replay.
        if self.slice_partition_ms % self.feature_log_slice_ms:
            raise JobConfigError(
                "job.feature_log_slice_ms must divide job.slice_partition_ms, got "
                f"{self.feature_log_slice_ms} and {self.slice_partition_ms}")
        if self.slice_partition_ms % 3_600_000:
            raise JobConfigError(
                "job.slice_partition_ms must be a whole number of hours (3600000, 7200000, ...), "
                f"got {self.slice_partition_ms}")


def load_job(**overrides: object) -> JobConfig:
    return settings.load(JobConfig, "job", **overrides)
