"""Share writer schemas through Kafka: the compacted schemas topic, keyed by fingerprint.

A producer publishes a schema before its first record with it (after the full-compatibility
check against everything already published under that name, so an incompatible schema is
refused before it is ever used). A consumer that meets an unknown fingerprint reloads the
topic into its store and decodes again: a v1 consumer reads a v2 producer without a deploy.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from loopline.kafka import KafkaConfig
from schemas import topics
from schemas.errors import IncompatibleSchemaError, SchemaError
from schemas.store import SchemaStore, StoredSchema


class SchemaRegistry:
    """The schemas topic as a registry. Thread-unsafe; one per process is plenty."""

    def __init__(
        self, kafka: KafkaConfig, topic: str = topics.SCHEMAS, min_refresh_interval_s: float = 5.0
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.min_refresh_interval_s = min_refresh_interval_s
        self._attempts: dict[bytes | None, float] = {}
        self._published: set[bytes] = set()

    def read_all(self, timeout_ms: int = 5000) -> list[dict[str, Any]]:
        """Every schema published so far, in publication order."""
        consumer = KafkaConsumer(**self.kafka.client_kwargs(), enable_auto_commit=False)
        try:
            partitions = consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            if not tps:
                return []
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            end = consumer.end_offsets(tps)
            schemas: list[dict[str, Any]] = []
            while any(consumer.position(tp) < end[tp] for tp in tps):
                batch = consumer.poll(timeout_ms=timeout_ms)
                if not batch:
                    break
                for records in batch.values():
                    schemas += [json.loads(r.value) for r in records if r.value]
            return schemas
        except KafkaError as exc:
            raise SchemaError(f"cannot read the schemas topic {self.topic}: {exc}") from exc
        finally:
            consumer.close()

    def load_into(self, store: SchemaStore) -> int:
        """Register every published schema in `store`; returns how many were new to it."""
        added = 0
        for raw in self.read_all():
            before = len(store.all())
            try:
                store.register(raw)
            except IncompatibleSchemaError:
                continue  # refused at publish time by a checking producer; never decode with it
            added += len(store.all()) - before
        return added

    def refresh(self, store: SchemaStore, fingerprint: bytes | None = None) -> int:
        """load_into, unless this fingerprint was already looked up in the last interval.

        A producer publishes its schema (acknowledged) before its first record, so one reload
        finds any schema whose records we can see; the interval only stops a stream of truly
        unknown fingerprints (garbage) from reloading the topic for every record.
        """
        now = time.monotonic()
        last = self._attempts.get(fingerprint, float("-inf"))
        if now - last < self.min_refresh_interval_s:
            return 0
        self._attempts[fingerprint] = now
        return self.load_into(store)

    def publish(self, schema: StoredSchema) -> None:
        """Publish a writer schema unless already there; refuse one incompatible with history."""
        if schema.fingerprint in self._published:
            return
        history = SchemaStore()
        for raw in self.read_all():
            history.register(raw)
        if history.by_fingerprint(schema.fingerprint) is None:
            history.register(schema.raw)  # raises IncompatibleSchemaError before any use
            producer = KafkaProducer(**self.kafka.producer_kwargs())
            try:
                producer.send(
                    self.topic,
                    key=schema.fingerprint.hex().encode(),
                    value=json.dumps(schema.raw, sort_keys=True).encode(),
                ).get(30)
            except KafkaError as exc:
                raise SchemaError(f"cannot publish {schema.name} to {self.topic}: {exc}") from exc
            finally:
                producer.close()
        self._published.add(schema.fingerprint)
