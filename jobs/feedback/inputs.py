"""The job's optional input topics exist before the job starts.

Flink's Kafka source fails when a listed topic does not exist; serving's FeatureLog topic
may not (feature logging off, or serving not started yet). An empty topic costs nothing: a
bounded replay finishes its splits at once, and `table.exec.source.idle-timeout` stops an
idle partition from holding the watermark back in a live run.
"""

from __future__ import annotations

from jobs.errors import JobError
from loopline.kafka import KafkaConfig


def ensure_topic(kafka: KafkaConfig, topic: str, partitions: int = 1) -> bool:
    """Create `topic` (producer timestamps kept) unless it exists; True when created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(**kafka.client_kwargs(), client_id="loopline-feedback-inputs")
    except KafkaError as exc:
        raise JobError(f"expected a Kafka broker at {kafka.bootstrap_servers} to check input "
                       f"topic {topic}, got {type(exc).__name__}: {exc}") from exc
    try:
        if topic in set(admin.list_topics()):
            return False
        # CreateTime: the job's event time is the record timestamp.
        admin.create_topics([NewTopic(topic, partitions, 1, topic_configs={
            "message.timestamp.type": "CreateTime"})], timeout_ms=kafka.request_timeout_ms,
            wait_for_metadata=True)
        return True
    except TopicAlreadyExistsError:
        return False  # created concurrently (serving, another job): the wanted end state
    except KafkaError as exc:
        raise JobError(f"creating input topic {topic} on {kafka.bootstrap_servers} failed: "
                       f"{type(exc).__name__}: {exc}") from exc
    finally:
        admin.close()
