"""ServingEvents: the record of what was served, and the sink that ships it to Kafka.

The request path only puts the event on a bounded queue; a sender thread owns the producer,
so a slow or absent broker never adds latency to a request. Publishing goes through
schemas.producer.EventProducer: key = request_id, Kafka timestamp = event_time (the streaming
job's event time), acks=all and idempotent (KafkaConfig.producer_kwargs()).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from loopline.errors import LooplineError
from loopline.kafka import KafkaConfig
from schemas import topics
from schemas.producer import EventProducer

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]
"""Receives each ServingEvent (as the Avro record dict); tests inject a list's append."""

_STOP = object()


class KafkaSink:
    """Queue on the caller's thread; a sender thread publishes with schemas.EventProducer and
    flushes whenever the queue runs dry. Counts what was sent, failed, or dropped."""

    def __init__(self, kafka: KafkaConfig, queue_size: int = 100_000,
                 topic: str = topics.SERVING, retry_s: float = 5.0) -> None:
        self.kafka = kafka
        self.topic = topic
        self.retry_s = retry_s
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.counts = {"queued": 0, "sent": 0, "failed": 0, "dropped": 0}
        self.connected = False
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="serving-events", daemon=True)
        self._thread.start()

    def __call__(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
            self._count("queued")
        except queue.Full:
            self._count("dropped")

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def _failed(self, exc: Exception, n: int = 1) -> None:
        self._count("failed", n)
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.error("ServingEvents not delivered to %s: %s", self.topic, self.last_error)

    def _producer(self) -> EventProducer:
        while True:
            try:
                producer = EventProducer(self.kafka)
                self.connected, self.last_error = True, None
                return producer
            except LooplineError as exc:
                self.last_error = str(exc)
                log.warning("%s; retrying in %.0fs", exc, self.retry_s)
                time.sleep(self.retry_s)

    def _run(self) -> None:
        producer = self._producer()
        unflushed = 0
        while True:
            item = self.queue.get()
            if item is _STOP:
                break
            try:
                producer.serving(item, topic=self.topic)
                unflushed += 1
            except Exception as exc:  # EncodeError (contract), KafkaTimeoutError, ...: keep going
                self._failed(exc)
            if self.queue.empty() and unflushed:
                unflushed = self._flush(producer, unflushed)
        self._flush(producer, unflushed)
        producer.close()

    def _flush(self, producer: EventProducer, unflushed: int) -> int:
        try:
            self._count("sent", producer.flush())
        except Exception as exc:  # ProduceError, or a kafka-python error from flush itself
            self._failed(exc, unflushed)
        return 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self.counts)
        return {**counts, "pending": self.queue.qsize(), "connected": self.connected,
                "last_error": self.last_error}

    def close(self, timeout_s: float = 15.0) -> None:
        """Send what is queued, flush the producer, stop the thread."""
        try:
            self.queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)


def serving_event(request_id: str, event_ms: int, user_id: str, session_id: str,
                  model_version: str, arm: str, policy: str, fallback: bool,
                  slate: list[dict[str, Any]]) -> dict[str, Any]:
    """The ServingEvent record (io.loopline.events.ServingEvent)."""
    return {
        "request_id": request_id, "event_time": event_ms, "user_id": user_id,
        "session_id": session_id, "model_version": model_version, "arm": arm,
        "policy": policy, "fallback": fallback, "slate": slate,
    }
