"""Where a freshness delay is spent: a tap on the job's FeatureUpdate topic.

The freshness suite measures produce → visible in Feast. This tap splits that delay in two:
produce → the probe's update on the topic (the job: source, operators, online flush tick,
Kafka sink) and topic → visible (the Feast writer: poll, batch, decode, write, plus the
poller's interval). It reads keys only (`<view>:<entity>`), never values, so it costs one
kafka-python fetch per record and nothing else.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from loopline.kafka import KafkaConfig


class UpdateTap:
    """Wall time at which each watched entity of a view first appeared on the topic (read from
    the topic's end at start); watched = entity ids starting with `entity_prefix`."""

    def __init__(self, kafka: KafkaConfig, topic: str, view: str, entity_prefix: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.view_prefix = f"{view}:".encode()
        self.prefix = self.view_prefix + entity_prefix.encode()
        self.seen: dict[str, float] = {}
        self.records = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-update-tap", daemon=True)

    def start(self, timeout_s: float = 30.0) -> None:
        """Returns once the tap is positioned at the topic's end (so nothing is missed)."""
        self._thread.start()
        self._ready.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        try:
            consumer = KafkaConsumer(**self.kafka.client_kwargs(), enable_auto_commit=False,
                                     fetch_max_wait_ms=20)
        except Exception as exc:  # a tap that cannot run leaves the breakdown out, says why
            self.error = f"{type(exc).__name__}: {exc}"
            self._ready.set()
            return
        try:
            parts = consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            consumer.seek_to_end(*tps)
            for tp in tps:
                consumer.position(tp)  # resolve the end now, before any probe is produced
            self._ready.set()
            prefix, cut = self.prefix, len(self.view_prefix)
            while not self._stop.is_set():
                polled = consumer.poll(timeout_ms=50)
                now = time.time()
                for batch in polled.values():
                    self.records += len(batch)
                    for record in batch:
                        key = record.key
                        if key is not None and key.startswith(prefix):
                            self.seen.setdefault(key[cut:].decode(), now)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()
            consumer.close()


def split(sent_ms: dict[str, int], on_topic: dict[str, float], visible: dict[str, float],
          t_from: float) -> dict[str, Any]:
    """p50/p95/p99 (s) of each half of the delay, over probes sent after `t_from` that were
    both seen on the topic and visible in the store."""
    job, writer, series = [], [], []
    for probe, ms in sorted(sent_ms.items(), key=lambda item: item[1]):
        sent = ms / 1000
        if sent < t_from or probe not in on_topic or probe not in visible:
            continue
        job.append(on_topic[probe] - sent)
        writer.append(visible[probe] - on_topic[probe])
        series.append([round(sent - t_from, 2), round(job[-1], 3), round(writer[-1], 3)])
    # [s since t_from, job part, writer part] per probe: spikes line up with what caused them
    out: dict[str, Any] = {"probes": len(job), "series": series}
    for name, values in (("job", job), ("writer_and_poll", writer)):
        if values:
            arr = np.asarray(values)
            out[name] = {f"p{p}_s": round(float(np.percentile(arr, p)), 3) for p in (50, 95, 99)}
    return out
