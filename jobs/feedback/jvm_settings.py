"""The settings document the JVM operators read (io.loopline.feedback.FeedbackSettings).

One JSON document built from the job's frozen configs, so the Python and Java sides share
one source of truth rather than a long constructor. Pure: no Flink import.
"""

from __future__ import annotations

import json
from typing import Any

from jobs.config import JobConfig
from loopline.kafka import KafkaConfig
from schemas.codec import (
    DEAD_LETTER,
    FEATURE_LOG,
    FEATURE_UPDATE,
    INTERACTION_EVENT,
    LABELLED_IMPRESSION,
    SERVING_EVENT,
)
from schemas.store import SchemaStore

# The reader schemas the operators decode into and encode with: the newest shipped version.
READERS = (SERVING_EVENT, INTERACTION_EVENT, FEATURE_LOG, LABELLED_IMPRESSION, DEAD_LETTER,
           FEATURE_UPDATE)
# The Flink SQL Kafka connector relocates the Kafka client; our operators use the plain one.
_SHADED_PREFIX = "org.apache.flink.kafka.shaded."


# The job's Kafka sink batches up to 256 KiB, waiting up to 20 ms to fill: ~3 output records
# per input event arrived in small sends otherwise, and the broker's CPU per 100 K events
# halved with batching (15 s -> 8 s). Adds at most 20 ms to an output's latency.
SINK_LINGER_MS = 20
SINK_BATCH_BYTES = 256 * 1024


def _client_properties(kafka: KafkaConfig) -> dict[str, str]:
    """The Flink connector options ('properties.*') as Kafka client properties."""
    return {key.removeprefix("properties."): value
            for key, value in kafka.flink_properties().items()}


def sink_properties(kafka: KafkaConfig) -> dict[str, str]:
    """Producer properties of the job's Kafka sink (the connector's shaded client)."""
    return {
        **_client_properties(kafka),
        "linger.ms": str(SINK_LINGER_MS),
        "batch.size": str(SINK_BATCH_BYTES),
    }


def kafka_client_properties(kafka: KafkaConfig) -> dict[str, str]:
    """Plain kafka-clients properties (the schemas-topic reader in the JVM)."""
    return {key: value.replace(_SHADED_PREFIX, "")
            for key, value in _client_properties(kafka).items()}


def settings_json(
    job: JobConfig,
    run_id: str,
    kafka: KafkaConfig,
    shipped: SchemaStore,
    published: list[dict[str, Any]],
) -> str:
    """The document: topics, windows, the writer schemas known now, where to find new ones."""
    writers = [json.dumps(s.raw, sort_keys=True) for s in shipped.all()]
    writers += [json.dumps(raw, sort_keys=True) for raw in published]
    return json.dumps(
        {
            "run_id": run_id,
            "serving_topic": job.serving_topic,
            "interactions_topic": job.interactions_topic,
            "feature_log_topic": job.feature_log_topic,
            "labelled_topic": job.labelled_topic,
            "unmatched_topic": job.unmatched_topic,
            "late_topic": job.late_topic,
            "dead_letter_topic": job.dead_letter_topic,
            "feature_updates_topic": job.feature_updates_topic,
            "out_of_orderness_ms": job.out_of_orderness_ms,
            "max_future_ms": job.max_future_ms,
            "maturity_window_ms": job.maturity_window_ms,
            "closed_request_ttl_ms": job.closed_request_ttl_ms,
            "position_bias_eta": job.position_bias_eta,
            "last_clicked_n": job.last_clicked_n,
            "slice_partition_ms": job.slice_partition_ms,
            "online_flush_ms": job.online_flush_ms,
            "partition_chunk_rows": job.partition_chunk_rows,
            "feature_log_slice_ms": job.feature_log_slice_ms,
            "offline_feature_log": job.offline_feature_log,
            "writer_schemas": writers,
            "reader_schemas": {
                name: json.dumps(shipped.latest(name).raw, sort_keys=True) for name in READERS
            },
            "schemas_topic": job.schemas_topic if job.schema_registry else None,
            "kafka_properties": kafka_client_properties(kafka),
            "sink_properties": sink_properties(kafka),
        },
        sort_keys=True,
    )
