"""The baseline of suite 1: what a user would write without Flink.

A kafka-python consumer loop reads both input topics in micro-batches, decodes each record
with the project's codec, turns events into per-entity counter deltas, and recomputes the
same windowed features with pandas for the entities a batch touched (same 1 h / 24 h windows,
same 1 min / 15 min buckets, evaluated at the entity's newest event time), then writes them
with `FeatureStore.write_to_online_store` into the same (newest-wins) online store.

It does strictly less than the job: no label join, no duplicate detection, no lateness
routing, no dead letters, no feedback slices, no lineage, no checkpoints, no decay re-emits.
That favours the baseline; the comparison says so.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feature_repo import names

# (window name, window ms, bucket ms): as jobs/transforms/features.py.
WINDOWS = (("1h", 3_600_000, 60_000), ("24h", 86_400_000, 900_000))
COUNTERS = ("impressions", "clicks", "purchases", "revenue", "add_to_cart", "expected_clicks")
USER, ITEM = "u", "i"
LAST_CLICKED_N = 10


def deltas(records: list[tuple[str, dict[str, Any]]], eta: float = 1.0) -> pd.DataFrame:
    """One row per (entity, event) contribution: the frame a pandas user would build."""
    rows: list[tuple[Any, ...]] = []
    for kind, event in records:
        ts = event["event_time"]
        if kind == "serving":
            slate = event["slate"]
            rows.append((USER, event["user_id"], ts, len(slate), 0, 0, 0.0, 0, 0.0, None))
            for item in slate:
                examined = (1.0 + item["position"]) ** -eta
                rows.append((ITEM, item["item_id"], ts, 1, 0, 0, 0.0, 0, examined, None))
            continue
        action, user, item_id = event["type"], event["user_id"], event["item_id"]
        if action == "click":
            rows.append((USER, user, ts, 0, 1, 0, 0.0, 0, 0.0, item_id))
            rows.append((ITEM, item_id, ts, 0, 1, 0, 0.0, 0, 0.0, None))
        elif action == "purchase":
            revenue = float(event.get("revenue") or 0.0)
            rows.append((USER, user, ts, 0, 0, 1, revenue, 0, 0.0, None))
            rows.append((ITEM, item_id, ts, 0, 0, 1, 0.0, 0, 0.0, None))
        elif action == "add_to_cart":
            rows.append((ITEM, item_id, ts, 0, 0, 0, 0.0, 1, 0.0, None))
    return pd.DataFrame(rows, columns=["kind", "entity", "ts", *COUNTERS, "clicked_item"])


def features(history: pd.DataFrame, touched: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Feature frames (Feast column names) for the `touched` (kind, entity) pairs."""
    hist = history.merge(touched[["kind", "entity"]].drop_duplicates(), on=["kind", "entity"])
    latest = hist.groupby(["kind", "entity"], sort=False)["ts"].transform("max")
    out = hist.groupby(["kind", "entity"], sort=False)["ts"].max().rename("at").to_frame()
    for window, window_ms, bucket_ms in WINDOWS:
        start = hist["ts"] - hist["ts"] % bucket_ms
        inside = (start + bucket_ms > latest - window_ms) & (start <= latest)
        sums = hist.loc[inside].groupby(["kind", "entity"], sort=False)[list(COUNTERS)].sum()
        out = out.join(sums.add_suffix(f"_{window}"), how="left")
    out = out.fillna(0.0).reset_index()
    frames = {}
    users = out[out["kind"] == USER]
    if len(users):
        frames[names.USER_ACTIVITY] = _user_frame(users, hist[hist["kind"] == USER])
    items = out[out["kind"] == ITEM]
    if len(items):
        frames[names.ITEM_PERFORMANCE] = _item_frame(items)
    return frames


def _user_frame(users: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame({names.USER_KEY: users["entity"].to_numpy()})
    for w in ("1h", "24h"):
        for counter in ("impressions", "clicks", "purchases"):
            frame[f"user_{counter}_{w}"] = users[f"{counter}_{w}"].to_numpy().astype(np.int64)
        frame[f"user_revenue_{w}"] = users[f"revenue_{w}"].to_numpy().round(6)
    clicks = hist.dropna(subset=["clicked_item"])
    # As the job: distinct items whose newest click is still in the 24 h window (15 min
    # buckets) at the user's newest event, newest first, ties by item id descending.
    _, window_ms, bucket_ms = WINDOWS[1]
    newest = hist.groupby("entity", sort=False)["ts"].max()
    clicks = (clicks.sort_values("ts").drop_duplicates(["entity", "clicked_item"], keep="last"))
    at = clicks["entity"].map(newest)
    clicks = clicks[clicks["ts"] - clicks["ts"] % bucket_ms + bucket_ms > at - window_ms]
    if len(clicks):
        last = (clicks.sort_values(["entity", "ts", "clicked_item"], ascending=[True, False, False])
                .groupby("entity", sort=False)["clicked_item"]
                .agg(lambda s: ",".join(s.iloc[:LAST_CLICKED_N])))
        frame["user_last_clicked"] = frame[names.USER_KEY].map(last).fillna("")
    else:
        frame["user_last_clicked"] = ""
    frame[names.TIMESTAMP_FIELD] = pd.to_datetime(users["at"].to_numpy(), unit="ms", utc=True)
    return frame


def _item_frame(items: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame({names.ITEM_KEY: items["entity"].to_numpy()})
    for w in ("1h", "24h"):
        imp = items[f"impressions_{w}"].to_numpy()
        clicks = items[f"clicks_{w}"].to_numpy()
        expected = items[f"expected_clicks_{w}"].to_numpy()
        purchases = items[f"purchases_{w}"].to_numpy()
        frame[f"item_impressions_{w}"] = imp.astype(np.int64)
        frame[f"item_clicks_{w}"] = clicks.astype(np.int64)
        frame[f"item_add_to_cart_{w}"] = items[f"add_to_cart_{w}"].to_numpy().astype(np.int64)
        frame[f"item_purchases_{w}"] = purchases.astype(np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            frame[f"item_ctr_{w}"] = np.where(imp > 0, clicks / imp, 0.0)
            frame[f"item_purchase_rate_{w}"] = np.where(imp > 0, purchases / imp, 0.0)
            frame[f"item_debiased_ctr_{w}"] = np.where(expected > 0, clicks / expected, 0.0)
    frame[names.TIMESTAMP_FIELD] = pd.to_datetime(items["at"].to_numpy(), unit="ms", utc=True)
    return frame


class NaivePipeline:
    """The baseline's state: a pandas history of deltas, pruned behind the slowest partition."""

    def __init__(self) -> None:
        self.history = pd.DataFrame(columns=["kind", "entity", "ts", *COUNTERS, "clicked_item"])
        self.part_max: dict[tuple[str, int], int] = {}

    def expect(self, partitions: list[tuple[str, int]]) -> None:
        """Partitions not read yet hold the horizon back (their events may be old)."""
        for part in partitions:
            self.part_max.setdefault(part, 0)

    def add(self, records: list[tuple[str, int, int, str, dict[str, Any]]]
            ) -> dict[str, pd.DataFrame]:
        """(topic, partition, kafka timestamp, kind, event) records → feature frames."""
        for topic, partition, ts, _, _ in records:
            part = (topic, partition)
            self.part_max[part] = max(self.part_max.get(part, 0), ts)
        batch = deltas([(kind, event) for _, _, _, kind, event in records])
        history = (pd.concat([self.history, batch], ignore_index=True)
                   if len(self.history) else batch)
        frames = features(history, batch)
        # Then forget what no later window can need: every partition is read in time order,
        # so later events are newer than the slowest partition's newest (a watermark); a
        # replayed batch can span hours, so this happens after evaluating it, not before.
        horizon = min(self.part_max.values()) - WINDOWS[-1][1] - 2 * WINDOWS[-1][2]
        self.history = history[history["ts"] >= horizon]
        return frames


def run_from_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Consume `expected_input` events from the topics, keep the online store fresh."""
    from kafka import KafkaConsumer

    from feature_repo.store import FeastConfig, feature_store
    from loopline.kafka import KafkaConfig
    from loopline.paths import load_paths
    from schemas.codec import SERVING_EVENT, default_codec

    t_process = float(spec["t_spawn"])
    kafka = KafkaConfig(bootstrap_servers=spec["bootstrap_servers"])
    store = feature_store(FeastConfig(**spec["feast"]), load_paths(), apply=True)
    codec = default_codec()
    serving_topic, expected = spec["serving_topic"], int(spec.get("expected_input") or 0)
    stop_file = Path(spec["stop_file"]) if spec.get("stop_file") else None
    ready_file = Path(spec["ready_file"]) if spec.get("ready_file") else None
    batch_records = int(spec.get("batch_records", 10_000))
    consumer = KafkaConsumer(
        spec["serving_topic"], spec["interactions_topic"], **kafka.client_kwargs(),
        group_id=spec["group_id"], auto_offset_reset="earliest", enable_auto_commit=False,
        max_poll_records=batch_records, fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    pipeline = NaivePipeline()
    consumed = written = batches = 0
    t_first: float | None = None
    t_first_write: float | None = None
    seconds = {"poll": 0.0, "decode": 0.0, "aggregate": 0.0, "write": 0.0}
    t_start = time.time()
    idle_s = float(spec.get("idle_timeout_s", 120))
    idle_deadline = time.time() + idle_s

    def running() -> bool:
        if stop_file is not None:  # live (freshness): until told to stop
            return not stop_file.exists()
        return consumed < expected and time.time() < idle_deadline

    try:
        while running():
            t0 = time.perf_counter()
            polled = consumer.poll(timeout_ms=200 if stop_file else 1000,
                                   max_records=batch_records)
            t1 = time.perf_counter()
            seconds["poll"] += t1 - t0
            if ready_file is not None and not ready_file.exists() and consumer.assignment():
                ready_file.write_text(str(time.time()))
            records = [r for rs in polled.values() for r in rs]
            if not records:
                continue
            if t_first is None:
                t_first = time.time()
            idle_deadline = time.time() + idle_s
            pipeline.expect([(tp.topic, tp.partition) for tp in consumer.assignment()])
            decoded = []
            for record in records:
                schema, event = codec.decode(record.value)
                kind = "serving" if record.topic == serving_topic else "interaction"
                if kind == "serving" and schema.name != SERVING_EVENT:
                    continue
                decoded.append((record.topic, record.partition, record.timestamp, kind, event))
            t2 = time.perf_counter()
            seconds["decode"] += t2 - t1
            frames = pipeline.add(decoded)
            t3 = time.perf_counter()
            seconds["aggregate"] += t3 - t2
            for view, frame in frames.items():
                store.write_to_online_store(view, frame)
                written += len(frame)
            seconds["write"] += time.perf_counter() - t3
            if t_first_write is None:
                t_first_write = time.time()
            consumed += len(records)
            batches += 1
    finally:
        consumer.close()
    t_end = time.time()
    return {
        "status": "FINISHED" if consumed >= expected or stop_file else "INCOMPLETE",
        "consumed": consumed,
        "expected_input": expected,
        "rows_written": written,
        "batches": batches,
        "t_process": t_process,
        "t_call": t_start,
        "t_first_input": t_first,
        "t_first_output": t_first_write,
        "t_end": t_end,
        "stage_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "history_rows_at_end": len(pipeline.history),
    }
