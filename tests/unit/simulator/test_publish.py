from __future__ import annotations

from typing import Any

import pytest

from schemas.errors import EncodeError
from schemas.producer import ProduceError
from simulator.errors import PublishError
from simulator.events import INTERACTION, SERVING, Emitted
from simulator.publish import publish
from simulator.simulation import Simulation


class FakeProducer:
    def __init__(self, fail_flush: bool = False, fail_encode: bool = False) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.flushes = 0
        self.fail_flush, self.fail_encode = fail_flush, fail_encode

    def serving(self, event: dict[str, Any]) -> None:
        if self.fail_encode:
            raise EncodeError("record does not match ServingEvent v1")
        self.sent.append((SERVING, event))

    def interaction(self, event: dict[str, Any]) -> None:
        self.sent.append((INTERACTION, event))

    def flush(self, timeout_s: float = 60.0) -> int:
        self.flushes += 1
        if self.fail_flush:
            raise ProduceError("Kafka refused a record: KafkaTimeoutError")
        return len(self.sent)


def test_publish_sends_every_event_in_order_and_flushes(
        popularity_run: tuple[Simulation, list[Emitted]]) -> None:
    _, events = popularity_run
    producer = FakeProducer()
    counts = publish(events, producer, flush_every=1_000, progress=False)
    assert producer.sent == [(k, e) for k, e in events]
    assert counts[SERVING] + counts[INTERACTION] == len(events)
    assert producer.flushes == len(events) // 1_000 + 1


def test_publish_can_leave_slates_to_serving(
        popularity_run: tuple[Simulation, list[Emitted]]) -> None:
    _, events = popularity_run
    producer = FakeProducer()
    counts = publish(events, producer, serving=False, progress=False)
    assert all(kind == INTERACTION for kind, _ in producer.sent)
    assert counts["skipped_serving"] == sum(k == SERVING for k, _ in events)


@pytest.mark.parametrize(("producer", "message"), [
    (FakeProducer(fail_flush=True), "Kafka refused"),
    (FakeProducer(fail_encode=True), "cannot publish serving"),
])
def test_publish_surfaces_kafka_and_contract_errors(
        popularity_run: tuple[Simulation, list[Emitted]], producer: FakeProducer,
        message: str) -> None:
    _, events = popularity_run
    with pytest.raises(PublishError, match=message):
        publish(events[:50], producer, progress=False)
