"""ServingEvents: the record of what was served, and the sink that ships it to Kafka.

The request path only puts the event on a bounded queue; a sender thread encodes and hands it
to the producer, so a slow or absent broker never adds latency to a request. Records are Avro
single-object encoded, keyed by request_id and stamped with event_time as the Kafka timestamp
(the streaming job's event time), sent acks=all and idempotent (KafkaConfig.producer_kwargs()).

Sinks of one process can share one producer (`SharedProducer`): serving's ServingEvent and
FeatureLog sinks do. kafka-python spends most of its CPU per produce *request* (its network
thread builds, sends and parses each one in Python: ~1.5 ms per request measured on the 2-core
bench machine), so one producer with a longer linger — both topics' batches in one request,
several requests' records per batch — costs a fraction of two producers sending one record
each.

Nothing leaves quietly. Every event handed to the sink is, at any moment, exactly one of:
pending (queued or in flight), delivered (acknowledged), dropped (the queue was full: the
policy is drop-and-count, so requests never block on the broker) or failed (Kafka refused it
after its retries). `stats()` reports all four and the age of the oldest pending event, which
/healthz turns into "degraded" (models/serving/health.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import kafka
from kafka.errors import KafkaError

from loopline.kafka import KafkaConfig
from models.serving.errors import EventLogError
from schemas import topics
from schemas.codec import SERVING_EVENT, Codec, default_codec

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]
"""Receives each ServingEvent (as the Avro record dict); tests inject a list's append."""

_WAKE_S = 0.2  # the sender thread's longest sleep: stats stay fresh, close() is prompt
# After the first event into an empty queue the sender waits this long before taking what
# has queued: one thread wake-up per batch instead of per request (a wake-up per event cost
# more of the GIL than encoding it). Delivery waits for the producer's linger anyway.
_GATHER_S = 0.01


def check_topic(kafka: KafkaConfig, topic: str = topics.SERVING,
                what: str = "ServingEvent") -> None:
    """Raise EventLogError unless `topic` exists, has a leader for every partition and this
    client may write to it. Called before serving starts: a log that never reaches Kafka
    breaks the whole loop (no labels, no training data, no attribution)."""
    from kafka.admin import KafkaAdminClient

    try:
        admin = KafkaAdminClient(**kafka.client_kwargs())
    except KafkaError as exc:
        raise EventLogError(f"cannot reach Kafka at {kafka.bootstrap_servers} to check the "
                            f"{what} topic {topic!r}: {type(exc).__name__}: {exc}") from exc
    try:
        [described] = admin.describe_topics([topic])
    except KafkaError as exc:
        raise EventLogError(f"cannot describe the {what} topic {topic!r} at "
                            f"{kafka.bootstrap_servers}: {type(exc).__name__}: {exc}") from exc
    finally:
        admin.close()
    problem = topic_problem(described)
    if problem:
        raise EventLogError(f"{what} topic {topic!r} at {kafka.bootstrap_servers}: "
                            f"{problem}; create it (`loopline infra up kafka` creates the "
                            "defaults) or point serving at the right cluster")


def topic_problem(described: dict[str, Any]) -> str | None:
    """What makes a described topic (kafka-python metadata dict) unusable for writing."""
    code = described.get("error_code", 0)
    if code == 3:
        return "does not exist (UNKNOWN_TOPIC_OR_PARTITION)"
    if code == 29:
        return "this client is not authorized to describe it (TOPIC_AUTHORIZATION_FAILED)"
    if code:
        return f"metadata error code {code}"
    partitions = described.get("partitions") or []
    if not partitions:
        return "has no partitions"
    leaderless = [p["partition_index"] for p in partitions if p.get("leader_id", -1) < 0]
    if leaderless:
        return f"partitions {sorted(leaderless)} have no leader"
    # With an authorizer the broker lists what this principal may do; without one it says
    # nothing (None or an empty set), and anyone may write.
    ops = described.get("authorized_operations")
    if ops and not ({"WRITE", "ALL"} & {str(o).upper().rsplit(".", 1)[-1] for o in ops}):
        return f"this client may not write to it (allowed: {sorted(map(str, ops))})"
    return None


class SharedProducer:
    """One kafka-python producer for the sinks that attach to it: created by the first sink
    that needs it, flushed by each sink that closes, closed with the last one."""

    def __init__(self, config: KafkaConfig, linger_ms: int | None = None) -> None:
        """`linger_ms`: how long a batch waits for more records (None: the KafkaConfig
        default); a request never waits for it, only the record's delivery does."""
        self.config = config
        self.overrides: dict[str, Any] = {} if linger_ms is None else {"linger_ms": linger_ms}
        self._producer: kafka.KafkaProducer | None = None
        self._users = 0
        self._lock = threading.Lock()

    def attach(self) -> None:
        with self._lock:
            self._users += 1

    def get(self) -> kafka.KafkaProducer:
        """The producer, connecting it on first use; raises KafkaError when that fails."""
        with self._lock:
            if self._producer is None:
                # looked up on the module at call time, so a test double of the client class
                # (test_kafka_security records every client's settings) reaches it too
                self._producer = kafka.KafkaProducer(**{**self.config.producer_kwargs(),
                                                        **self.overrides})
            return self._producer

    def detach(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for what was sent to be acknowledged (every attached sink's
        records: one producer); the last sink to detach closes the producer."""
        with self._lock:
            self._users -= 1
            producer, last = self._producer, self._users <= 0
            if last:
                self._producer = None
        if producer is None:
            return
        try:
            producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            log.error("flushing the log producer on close: %s", exc)
        if last:
            producer.close(timeout=1)


class KafkaSink:
    """Bounded queue on the caller's thread; a sender thread takes what has queued, encodes
    and sends it, and the producer's callbacks count each record delivered or failed (no
    blocking flushes)."""

    def __init__(self, kafka: KafkaConfig, queue_size: int = 100_000,
                 topic: str = topics.SERVING, retry_s: float = 5.0,
                 codec: Codec | None = None, schema: str = SERVING_EVENT,
                 producer: SharedProducer | None = None) -> None:
        """`schema`: the contract of the records (a FeatureLog sink uses the same machinery:
        keyed by request_id, stamped with event_time). `producer`: shared with other sinks
        (None: one of its own)."""
        self.kafka = kafka
        self.producer = producer or SharedProducer(kafka)
        self.producer.attach()
        self.topic = topic
        self.schema = schema
        self.retry_s = retry_s
        self.codec = codec or default_codec()
        self.queue_size = queue_size
        self._queue: deque[tuple[int, dict[str, Any]]] = deque()
        self._wake = threading.Event()  # set by the first event into an empty queue
        self.counts = {"accepted": 0, "delivered": 0, "dropped": 0, "failed": 0}
        self.connected = False
        self.last_error: str | None = None
        self.last_loss: float | None = None  # monotonic time of the last drop or failure
        # seq -> monotonic time accepted, for every event not yet delivered or failed. Dicts
        # keep insertion order, so the first entry is the oldest pending event.
        self._pending: dict[int, float] = {}
        self._seq = 0
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="serving-events", daemon=True)
        self._thread.start()

    def __call__(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            if self._closing:
                self._lose("dropped", now, "the sink is closed")
                return
            if len(self._queue) >= self.queue_size:
                self._lose("dropped", now, f"queue full ({self.queue_size} events)")
                return
            seq = self._seq = self._seq + 1
            if not self._queue:
                self._wake.set()
            self._queue.append((seq, event))
            self._pending[seq] = now
            self.counts["accepted"] += 1

    def _lose(self, outcome: str, now: float, why: str) -> None:
        """Count a lost event (caller holds the lock); the first loss of a burst is logged."""
        if self.last_loss is None or now - self.last_loss > 10:
            log.error("ServingEvent %s: %s", outcome, why)
        self.counts[outcome] += 1
        self.last_loss = now

    def _settled(self, seq: int, error: Exception | None) -> None:
        with self._lock:
            if self._pending.pop(seq, None) is None:
                return
            if error is None:
                self.counts["delivered"] += 1
            else:
                self.last_error = f"{type(error).__name__}: {error}"
                self._lose("failed", time.monotonic(), self.last_error)

    def _producer(self) -> kafka.KafkaProducer | None:
        while not self._closing:
            try:
                producer = self.producer.get()
                self.connected, self.last_error = True, None
                return producer
            except KafkaError as exc:
                self.last_error = f"cannot connect to Kafka at {self.kafka.bootstrap_servers}: " \
                                  f"{type(exc).__name__}: {exc}"
                log.warning("%s; retrying in %.0fs", self.last_error, self.retry_s)
                time.sleep(self.retry_s)
        return None

    def _send(self, producer: kafka.KafkaProducer, seq: int, event: dict[str, Any]) -> None:
        try:
            value = self.codec.encode(self.schema, event)
            future = producer.send(self.topic, value=value, key=event["request_id"].encode(),
                                   timestamp_ms=event["event_time"])
        except Exception as exc:  # EncodeError (contract), KafkaTimeoutError (metadata), ...
            self._settled(seq, exc)
            return
        future.add_callback(lambda _meta: self._settled(seq, None))
        future.add_errback(lambda exc: self._settled(seq, exc))

    def _run(self) -> None:
        producer = self._producer()
        while producer is not None:
            if self._wake.wait(_WAKE_S) and not self._closing:
                time.sleep(_GATHER_S)
            self._wake.clear()
            while self._queue:
                self._send(producer, *self._queue.popleft())
            if self._closing and not self._queue:
                break
        self.producer.detach(self._close_timeout_s)

    _close_timeout_s = 15.0

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            counts = dict(self.counts)
            pending = len(self._pending)
            oldest = next(iter(self._pending.values()), None)
            last_loss = self.last_loss
        # "queued"/"sent": the names the demo and older tests read (= accepted/delivered)
        return {**counts, "queued": counts["accepted"], "sent": counts["delivered"],
                "pending": pending,
                "oldest_pending_s": round(now - oldest, 3) if oldest is not None else 0.0,
                "last_loss_s_ago": round(now - last_loss, 3) if last_loss is not None else None,
                "connected": self.connected, "last_error": self.last_error}

    def close(self, timeout_s: float = 15.0) -> None:
        """Send what is queued, wait up to `timeout_s` for acknowledgements, stop the thread.
        Whatever is still unacknowledged then stays counted as pending (and logged)."""
        self._close_timeout_s = timeout_s
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join(timeout_s + 2)
        left = self.stats()["pending"]
        if left:
            log.error("%d ServingEvents undelivered at shutdown", left)


def serving_event(request_id: str, event_ms: int, user_id: str, session_id: str,
                  model_version: str, arm: str, policy: str, fallback: bool,
                  slate: list[dict[str, Any]]) -> dict[str, Any]:
    """The ServingEvent record (io.loopline.events.ServingEvent)."""
    return {
        "request_id": request_id, "event_time": event_ms, "user_id": user_id,
        "session_id": session_id, "model_version": model_version, "arm": arm,
        "policy": policy, "fallback": fallback, "slate": slate,
    }
