"""Child side of the writer suite: the Feast writer's drain() and a naive writer, measured.

The naive writer is what one writes without jobs/writer: a kafka-python loop that decodes
every polled record and writes all of them with `write_to_online_store` (no compaction, no
validation, no dead letters, no lineage), committing after each write.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd


def run_writer(spec: dict[str, Any]) -> dict[str, Any]:
    from feature_repo.store import FeastConfig
    from jobs.writer import FeatureWriter, WriterConfig
    from loopline.kafka import KafkaConfig
    from loopline.paths import load_paths

    t_process = float(spec["t_spawn"])
    config = WriterConfig(**spec["writer"])
    kafka = KafkaConfig(bootstrap_servers=spec["bootstrap_servers"])
    with FeatureWriter(config, kafka, FeastConfig(**spec["feast"]), load_paths()) as writer:
        t_call = time.time()
        stats = writer.drain()
    expected = int(spec["expected_input"])
    done = stats.complete and stats.records_in == expected
    return {"status": "FINISHED" if done else "INCOMPLETE", **stats.as_dict(),
            "t_process": t_process, "t_call": t_call, "t_end": time.time()}


def run_naive_writer(spec: dict[str, Any]) -> dict[str, Any]:
    from kafka import KafkaConsumer

    from feature_repo import names
    from feature_repo.store import FeastConfig, feature_store
    from loopline.kafka import KafkaConfig
    from loopline.paths import load_paths
    from schemas.codec import default_codec

    t_process = float(spec["t_spawn"])
    kafka = KafkaConfig(bootstrap_servers=spec["bootstrap_servers"])
    store = feature_store(FeastConfig(**spec["feast"]), load_paths(), apply=True)
    codec = default_codec()
    expected, batch = int(spec["expected_input"]), int(spec["batch_rows"])
    consumer = KafkaConsumer(
        spec["topic"], **kafka.client_kwargs(), group_id=spec["group_id"],
        auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=batch,
        check_crcs=False,  # as the writer's default: compare the loops, not CRC checking
        fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
    consumed = written = batches = 0
    t_call = time.time()
    seconds = {"poll": 0.0, "decode": 0.0, "write": 0.0}
    deadline = time.time() + float(spec.get("idle_timeout_s", 120))
    try:
        while consumed < expected and time.time() < deadline:
            t0 = time.perf_counter()
            polled = consumer.poll(timeout_ms=1000, max_records=batch)
            records = [r for part in polled.values() for r in part]
            t1 = time.perf_counter()
            seconds["poll"] += t1 - t0
            if not records:
                continue
            deadline = time.time() + float(spec.get("idle_timeout_s", 120))
            rows: dict[str, list[dict[str, Any]]] = {}
            for record in records:
                event = codec.decode(record.value)[1]
                view = event["view"]
                rows.setdefault(view, []).append(
                    {names.KEY_BY_VIEW[view]: event["entity_id"], **event["values"],
                     names.TIMESTAMP_FIELD: event["event_time"]})
            t2 = time.perf_counter()
            seconds["decode"] += t2 - t1
            for view, view_rows in rows.items():
                frame = pd.DataFrame(view_rows)
                frame[names.TIMESTAMP_FIELD] = pd.to_datetime(frame[names.TIMESTAMP_FIELD],
                                                              unit="ms", utc=True)
                store.write_to_online_store(view, frame)
                written += len(frame)
            consumer.commit()
            seconds["write"] += time.perf_counter() - t2
            consumed += len(records)
            batches += 1
    finally:
        consumer.close()
    return {"status": "FINISHED" if consumed >= expected else "INCOMPLETE",
            "records_in": consumed, "rows_total": written, "batches": batches,
            "stage_seconds": {k: round(v, 3) for k, v in seconds.items()},
            "seconds": round(time.time() - t_call, 3),
            "t_process": t_process, "t_call": t_call, "t_end": time.time()}
