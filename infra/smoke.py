"""End-to-end smoke check of the local stack: `python -m infra.smoke` (what `make demo` runs
until the real `loopline demo` exists).

Starts Kafka (idempotent), writes a few InteractionEvents encoded with the project codec to a
fresh topic with their event time as record timestamp, copies them through a Flink job on the
local mini-cluster (infra.flink_probe), reads the copy back and checks that every record
arrived byte-identical, decodable, and with its timestamp intact.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from infra import flink_probe, jars
from infra.stack import Stack
from infra.topics import TopicSpec, consume_records, create_topics, delete_topics
from loopline.errors import LooplineError
from loopline.kafka import KafkaConfig
from schemas.codec import INTERACTION_EVENT, default_codec

_BASE_TIME_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: old on purpose (retention check)


def sample_events(count: int) -> list[dict[str, Any]]:
    types = ("view", "click", "add_to_cart", "purchase")
    return [
        {
            "event_id": f"smoke-{i}",
            "event_time": _BASE_TIME_MS + i * 1000,
            "user_id": f"u{i % 3}",
            "session_id": f"s{i % 2}",
            "request_id": f"r{i}" if i % 2 else None,
            "item_id": f"i{i}",
            "type": types[i % len(types)],
            "revenue": 9.5 if types[i % len(types)] == "purchase" else 0.0,
            "dwell_ms": None,
            "position": i % 5,
        }
        for i in range(count)
    ]


def produce(kafka: KafkaConfig, topic: str, events: list[dict[str, Any]]) -> dict[str, bytes]:
    """Write events keyed by position in the topic; return {"partition:offset": value}."""
    from kafka import KafkaProducer

    codec = default_codec()
    producer = KafkaProducer(**kafka.producer_kwargs())
    sent = {}
    try:
        for i, event in enumerate(events):
            value = codec.encode(INTERACTION_EVENT, event)
            meta = producer.send(
                topic, value=value, partition=i % 2, timestamp_ms=event["event_time"]
            ).get(timeout=30)
            sent[f"{meta.partition}:{meta.offset}"] = value
    finally:
        producer.close()
    return sent


def run(count: int = 8) -> list[str]:
    """Run the smoke check; return the problems found (empty: all good)."""
    stack = Stack.load()
    print(stack.kafka.up().line())
    kafka = stack.kafka.client_config()
    run_id = uuid.uuid4().hex[:8]
    source, sink = f"loopline.smoke.{run_id}.in", f"loopline.smoke.{run_id}.out"
    create_topics(kafka, [TopicSpec(source, 2), TopicSpec(sink, 1)])
    try:
        events = sample_events(count)
        sent = produce(kafka, source, events)
        print(f"produced {len(sent)} InteractionEvents to {source}")
        started = time.monotonic()
        connector = jars.file_urls([jars.kafka_connector_jar(stack.paths)])
        flink_probe.run_local(kafka, source, sink, connector)
        print(f"flink copied {source} -> {sink} in {time.monotonic() - started:.1f}s")
        received = consume_records(kafka, sink, len(sent))
        return check(sent, received, {e["event_id"]: e for e in events})
    finally:
        delete_topics(kafka, [source, sink])


def check(sent: dict[str, bytes], received: list[Any], events: dict[str, Any]) -> list[str]:
    codec = default_codec()
    problems = []
    if len(received) != len(sent):
        problems.append(f"expected {len(sent)} records back, got {len(received)}")
    for record in received:
        origin = record.key.decode()
        if sent.get(origin) != record.value:
            problems.append(f"{origin}: value differs from what was produced")
            continue
        _, decoded = codec.decode(record.value, INTERACTION_EVENT)
        if record.timestamp != events[decoded["event_id"]]["event_time"]:
            problems.append(
                f"{origin}: expected timestamp {decoded['event_time']}, got {record.timestamp}"
            )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=8, help="events to send through")
    args = parser.parse_args(argv)
    try:
        problems = run(args.count)
    except LooplineError as exc:
        print(f"smoke: error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"smoke: FAIL {problem}", file=sys.stderr)
    if not problems:
        print(f"smoke: OK ({args.count} events through Kafka -> Flink -> Kafka, timestamps kept)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
