"""Reconcile a feedback run from its durable outputs: input = joined + unmatched + late + DLQ.

Inputs are the job's input topics, serving's FeatureLogs included when the job joins them: a
log is joined when a labelled impression names it (feature_log_partition/offset), unmatched
when its envelope is on the unmatched topic, late or dead-lettered as any input.

Counts come from the topics themselves (not from operator metrics, which reset on restart),
de-duplicated by each output's key, because the Kafka sinks are at-least-once: a recovery
may write a record twice, never zero times.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from jobs.config import JobConfig
from loopline.kafka import KafkaConfig
from schemas.codec import LABELLED_IMPRESSION, default_codec


@dataclass(frozen=True)
class Reconciliation:
    input: int
    joined_serving: int
    joined_interactions: int
    joined_feature_logs: int
    unmatched: int
    late: int
    dead_lettered: int

    @property
    def joined(self) -> int:
        return self.joined_serving + self.joined_interactions + self.joined_feature_logs

    @property
    def balanced(self) -> bool:
        return self.input == self.joined + self.unmatched + self.late + self.dead_lettered

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "joined": self.joined, "balanced": self.balanced}


def read_topic(kafka: KafkaConfig, topic: str, timeout_ms: int = 10_000) -> list[Any]:
    """Every record currently in `topic` (all partitions, from the beginning)."""
    consumer = KafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[Any] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            batch = consumer.poll(timeout_ms=timeout_ms)
            if not batch:
                break
            for chunk in batch.values():
                records.extend(chunk)
        return records
    finally:
        consumer.close()


def count_inputs(kafka: KafkaConfig, topics: tuple[str, ...]) -> int:
    consumer = KafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    try:
        total = 0
        for topic in topics:
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            if tps:
                begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
                total += sum(end[tp] - begin[tp] for tp in tps)
        return total
    finally:
        consumer.close()


def _distinct_keys(records: list[Any]) -> int:
    return len({r.key for r in records})


def _source_topic(key: bytes | None) -> str:
    """Dead letters are keyed topic/partition/offset of the record they set aside."""
    return (key or b"").decode(errors="replace").rsplit("/", 2)[0]


def reconcile(kafka: KafkaConfig, job: JobConfig) -> Reconciliation:
    inputs = job.input_topics
    codec = default_codec()
    labelled: dict[bytes, dict[str, Any]] = {}
    for record in read_topic(kafka, job.labelled_topic):
        labelled[record.key] = codec.decode(record.value, LABELLED_IMPRESSION)[1]
    return Reconciliation(
        input=count_inputs(kafka, inputs),
        joined_serving=len({row["request_id"] for row in labelled.values()}),
        joined_interactions=sum(row["interaction_count"] for row in labelled.values()),
        # Every impression of a logged request names the same log: count each log once.
        joined_feature_logs=len({(row["feature_log_partition"], row["feature_log_offset"])
                                 for row in labelled.values()
                                 if row.get("feature_log_offset") is not None}),
        unmatched=_distinct_keys(read_topic(kafka, job.unmatched_topic)),
        late=_distinct_keys(read_topic(kafka, job.late_topic)),
        # The Feast writer's dead letters (should there be any) name the updates topic: they
        # are not inputs of the job and do not count here.
        dead_lettered=_distinct_keys([r for r in read_topic(kafka, job.dead_letter_topic)
                                      if _source_topic(r.key) in inputs]),
    )
