"""Serving's logged vectors: from the feedback slice (training), or the FeatureLog topic.

`from_slice` is what `loopline train --features logged` uses: the feedback job joined each
request's FeatureLog into its labelled impressions, so the slice rows carry the vectors;
rows without one, or whose vectors do not follow this feature service, are left out and
counted (never raised). The rest reads the topic itself (`loopline consistency`): one row
per (request_id, item_id) as served.

`parse` is pure (bytes in, frame and counts out) and never raises on bad input: a record that
is not a FeatureLog, names another feature service version, or carries vectors of the wrong
length is counted under its reason and skipped; a request logged twice (at-least-once
delivery) keeps its first record. `read_topic` is the Kafka edge: the records whose
timestamp (= serving time) falls in an event-time range, with the offsets it read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from feature_repo import names
from jobs.transforms.slices import LOGGED_COLUMNS
from loopline.kafka import KafkaConfig
from models import features
from models.errors import ModelsError
from schemas.codec import FEATURE_LOG, Codec, default_codec
from schemas.errors import DecodeError

USER_TIME = "user_feature_ms"
ITEM_TIME = "item_feature_ms"
SERVED_MS = "served_ms"
KEY = ["request_id", "item_id"]
_USER_COLUMNS = features.VIEW_COLUMNS[names.USER_ACTIVITY]
_ITEM_COLUMNS = features.VIEW_COLUMNS[names.ITEM_PERFORMANCE]
FRAME_COLUMNS = [*KEY, "user_id", "model_version", SERVED_MS, "position", "sample_rate",
                 USER_TIME, ITEM_TIME, *features.COLUMNS]


class FeatureLogReadError(ModelsError):
    """The FeatureLog topic could not be read at all (not: a bad record, which is counted)."""


@dataclass
class LoggedFeatures:
    """The logged vectors as a frame, plus everything that did not make it into the frame."""

    frame: pd.DataFrame
    records: int = 0  # values seen, good or bad
    requests: int = 0  # distinct requests in the frame
    duplicates: int = 0  # a request's second record (redelivery): not counted twice
    malformed: Counter[str] = field(default_factory=Counter)  # reason -> records
    sources: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # topic offsets

    def summary(self) -> dict[str, Any]:
        return {"records": self.records, "requests": self.requests, "rows": len(self.frame),
                "duplicates": self.duplicates, "malformed": sum(self.malformed.values()),
                "malformed_by_reason": dict(sorted(self.malformed.items())),
                "sources": self.sources}


def _time(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _problem(record: dict[str, Any]) -> str | None:
    """Why a decoded record cannot be used as this service's vectors, or None."""
    if record.get("feature_service_version") != features.SERVICE_VERSION:
        return (f"feature service version {record.get('feature_service_version')!r}, "
                f"expected {features.SERVICE_VERSION}")
    if len(record["user"]["values"]) != len(_USER_COLUMNS):
        return f"user vector of {len(record['user']['values'])} values, expected " \
               f"{len(_USER_COLUMNS)}"
    if any(len(item["values"]) != len(_ITEM_COLUMNS) for item in record["items"]):
        return f"item vector length differs from {len(_ITEM_COLUMNS)}"
    if not record["request_id"]:
        return "empty request_id"
    return None


def parse(values: Iterable[bytes | None], codec: Codec | None = None) -> LoggedFeatures:
    """Decode FeatureLog values into rows; bad records are counted by reason, never raised."""
    codec = codec or default_codec()
    seen: set[str] = set()
    out = LoggedFeatures(pd.DataFrame(columns=FRAME_COLUMNS))
    keys: list[tuple[Any, ...]] = []
    vectors: list[list[float]] = []
    for value in values:
        out.records += 1
        if value is None:
            out.malformed["empty value (tombstone)"] += 1
            continue
        try:
            _, record = codec.decode(value, reader=FEATURE_LOG)
        except DecodeError as exc:  # includes UnknownSchemaError: not a FeatureLog
            out.malformed[f"undecodable: {type(exc).__name__}"] += 1
            continue
        problem = _problem(record)
        if problem is not None:
            out.malformed[problem] += 1
            continue
        if record["request_id"] in seen:
            out.duplicates += 1
            continue
        seen.add(record["request_id"])
        user = record["user"]
        for position, item in enumerate(record["items"]):
            keys.append((record["request_id"], item["entity_id"], record["user_id"],
                         record["model_version"], record["event_time"], position,
                         record["sample_rate"], _time(user["feature_time"]),
                         _time(item["feature_time"])))
            vectors.append([*user["values"], *item["values"]])
    out.requests = len(seen)
    if keys:
        head = pd.DataFrame(keys, columns=FRAME_COLUMNS[:9])
        # user columns then item columns, as logged; reordered into the model's columns
        body = pd.DataFrame(np.asarray(vectors, dtype=float),
                            columns=[*_USER_COLUMNS, *_ITEM_COLUMNS])
        out.frame = pd.concat([head, body[list(features.COLUMNS)]], axis=1)
        out.frame = out.frame.drop_duplicates(KEY)  # an item twice in one slate: impossible
    return out


def read_topic(kafka: KafkaConfig, topic: str, start_ms: int, end_ms: int,
               timeout_ms: int = 5_000, codec: Codec | None = None) -> LoggedFeatures:
    """Every FeatureLog whose serving time is in [start_ms, end_ms), read from Kafka up to
    the end offsets present at the call; bad records are counted (see `parse`)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    values: list[bytes | None] = []
    sources: dict[str, list[int]] = {}
    try:
        consumer = KafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    except KafkaError as exc:
        raise FeatureLogReadError(f"cannot reach Kafka at {kafka.bootstrap_servers} to read "
                                  f"{topic}: {type(exc).__name__}: {exc}") from exc
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise FeatureLogReadError(f"FeatureLog topic {topic!r} does not exist at "
                                      f"{kafka.bootstrap_servers}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        starts = consumer.offsets_for_times({tp: start_ms for tp in tps})
        ends = consumer.end_offsets(tps)
        for tp in tps:
            found = starts.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            batch = consumer.poll(timeout_ms=timeout_ms)
            if not batch:
                break
            for tp, records in batch.items():
                for r in records:
                    if r.offset >= ends[tp] or not start_ms <= r.timestamp < end_ms:
                        continue
                    values.append(r.value)
                    span = sources.setdefault(str(tp.partition), [r.offset, r.offset])
                    span[0], span[1] = min(span[0], r.offset), max(span[1], r.offset)
    except KafkaError as exc:
        raise FeatureLogReadError(f"reading {topic} at {kafka.bootstrap_servers} failed: "
                                  f"{type(exc).__name__}: {exc}") from exc
    finally:
        consumer.close()
    out = parse(values, codec)
    out.sources = {topic: sources} if sources else {}
    return out


@dataclass
class SliceVectors:
    """The slice rows that carry usable logged vectors, and what was left out and why."""

    frame: pd.DataFrame  # the rows (without the logged columns) + features.COLUMNS
    without_log: int = 0  # the request had no FeatureLog (or the item was not in it)
    malformed: Counter[str] = field(default_factory=Counter)  # reason -> rows
    offsets: dict[str, list[int]] = field(default_factory=dict)  # log partition -> [min, max]


def _vectors(column: pd.Series, width: int) -> np.ndarray:
    """A column of equal-length lists (null elements: NaN) as a float matrix."""
    if column.empty:
        return np.empty((0, width))
    return np.vstack([np.asarray(v, dtype=float) for v in column]).reshape(len(column), width)


def from_slice(frame: pd.DataFrame) -> SliceVectors:
    """The rows of a labelled-impression frame with the feature columns serving scored them
    with (slices.LOGGED_COLUMNS, joined by the job); validated as `_problem` validates a
    record: this feature service version, vectors of the service's lengths."""
    rest = frame[[c for c in frame.columns if c not in (*LOGGED_COLUMNS, *features.COLUMNS)]]
    if "logged_user_values" not in frame.columns:  # a frame read without them: no vectors
        return SliceVectors(rest.iloc[0:0].assign(**dict.fromkeys(features.COLUMNS, 0.0)),
                            without_log=len(frame))
    version = frame["feature_service_version"]
    users, items = frame["logged_user_values"], frame["logged_item_values"]
    present = version.notna() & users.notna() & items.notna()
    out = SliceVectors(rest.iloc[0:0], without_log=int((~present).sum()))
    usable = present & (version == features.SERVICE_VERSION)
    for other, n in version[present & ~usable].value_counts().items():
        out.malformed[f"feature service version {other!r}, expected "
                      f"{features.SERVICE_VERSION}"] += int(n)
    wrong = (users[usable].map(len) != len(_USER_COLUMNS)) | \
        (items[usable].map(len) != len(_ITEM_COLUMNS))
    if wrong.any():
        out.malformed[f"vector lengths differ from {len(_USER_COLUMNS)} user / "
                      f"{len(_ITEM_COLUMNS)} item values"] += int(wrong.sum())
        usable.loc[wrong.index[wrong]] = False
    rows = frame[usable]
    body = pd.DataFrame(
        np.hstack([_vectors(rows["logged_user_values"], len(_USER_COLUMNS)),
                   _vectors(rows["logged_item_values"], len(_ITEM_COLUMNS))]),
        columns=[*_USER_COLUMNS, *_ITEM_COLUMNS], index=rows.index)
    out.frame = pd.concat([rest[usable], body[list(features.COLUMNS)]], axis=1)
    for partition, offsets in rows.groupby("feature_log_partition")["feature_log_offset"]:
        out.offsets[str(int(partition))] = [int(offsets.min()), int(offsets.max())]
    return out
