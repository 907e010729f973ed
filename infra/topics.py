"""Create Loopline's Kafka topics idempotently (names come from schemas.topics)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.errors import TopicError
from loopline.kafka import KafkaConfig
from schemas import topics

# Record timestamps must stay the producer's (CreateTime): the job's event time is read from them.
_BASE_CONFIG = {"message.timestamp.type": "CreateTime"}
_TOPIC_CONFIG: dict[str, dict[str, str]] = {
    # Latest writer schema per fingerprint key; older duplicates may be compacted away.
    topics.SCHEMAS: {"cleanup.policy": "compact"},
}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 1
    config: dict[str, str] = field(default_factory=dict)


def default_specs(input_partitions: int = 2) -> list[TopicSpec]:
    """Every topic in schemas.topics.ALL: inputs get `input_partitions`, the rest 1."""
    return [
        TopicSpec(
            name=name,
            partitions=input_partitions if name in topics.INPUTS else 1,
            config={**_BASE_CONFIG, **_TOPIC_CONFIG.get(name, {})},
        )
        for name in topics.ALL
    ]


@dataclass(frozen=True)
class TopicReport:
    created: tuple[str, ...]
    existing: tuple[str, ...]
    partitions: Mapping[str, int]


def create_topics(kafka: KafkaConfig, specs: Iterable[TopicSpec] | None = None) -> TopicReport:
    """Create the topics of `specs` (default: all Loopline topics) that do not exist yet."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    wanted = list(specs) if specs is not None else default_specs()
    try:
        admin = KafkaAdminClient(**kafka.client_kwargs(), client_id="loopline-infra-topics")
    except KafkaError as exc:
        raise TopicError(
            f"expected a Kafka broker at {kafka.bootstrap_servers}, got {type(exc).__name__}: "
            f"{exc}; is it running (`loopline infra up kafka`)?"
        ) from exc
    try:
        existing = set(admin.list_topics())
        missing = [s for s in wanted if s.name not in existing]
        created: list[str] = []
        for spec in missing:
            new = NewTopic(spec.name, spec.partitions, 1, topic_configs=dict(spec.config))
            try:
                admin.create_topics(
                    [new], timeout_ms=kafka.request_timeout_ms, wait_for_metadata=True
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process: that is the wanted end state
        partitions = _partition_counts(admin, [s.name for s in wanted])
    except KafkaError as exc:
        raise TopicError(f"creating topics on {kafka.bootstrap_servers} failed: {exc}") from exc
    finally:
        admin.close()
    return TopicReport(
        created=tuple(created),
        existing=tuple(s.name for s in wanted if s.name not in created),
        partitions=partitions,
    )


def delete_topics(kafka: KafkaConfig, names: Iterable[str]) -> None:
    """Delete topics that exist among `names` (scratch topics of smoke runs and tests)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(**kafka.client_kwargs(), client_id="loopline-infra-topics")
    present: list[str] = []
    try:
        existing = set(admin.list_topics())
        present = [n for n in names if n in existing]
        if present:
            admin.delete_topics(present, timeout_ms=kafka.request_timeout_ms)
    except KafkaError as exc:
        raise TopicError(f"deleting topics {present} failed: {exc}") from exc
    finally:
        admin.close()


def consume_records(
    kafka: KafkaConfig, topic: str, expected: int, idle_timeout_s: float = 15
) -> list[Any]:
    """Read `topic` from the start until `expected` records arrived or it stays idle.

    For smoke checks and tests: returns early instead of always waiting out a timeout.
    """
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        **kafka.client_kwargs(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(idle_timeout_s * 1000),
    )
    records: list[Any] = []
    try:
        for record in consumer:
            records.append(record)
            if len(records) >= expected:
                break
    finally:
        consumer.close()
    return records


def _partition_counts(admin: object, names: list[str]) -> dict[str, int]:
    described = admin.describe_topics(names)  # type: ignore[attr-defined]
    return {t["name"]: len(t["partitions"]) for t in described}
