"""Feedback-slice partitions: which partition a row belongs to, its content fingerprint and
manifest (event-time range, Kafka offset ranges, row count). Pure; the sink does the I/O."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

LABELLED_DATASET = "labelled_impressions"
UNMATCHED_DATASET = "unmatched_interactions"
PARTITION_COLUMN = "event_hour"
REFS_FIELD = "_source_refs"  # in-flight only: (topic, partition, offset) of every input used

_TS = pa.timestamp("ms", tz="UTC")

LABELLED_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("item_id", pa.string()),
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("model_version", pa.string()),
        ("arm", pa.string()),
        ("policy", pa.string()),
        ("fallback", pa.bool_()),
        ("position", pa.int32()),
        ("score", pa.float64()),
        ("propensity", pa.float64()),
        ("served_at", _TS),
        ("clicked", pa.bool_()),
        ("added_to_cart", pa.bool_()),
        ("purchased", pa.bool_()),
        ("revenue", pa.float64()),
        ("dwell_ms", pa.int64()),
        ("interaction_count", pa.int32()),
        ("label_window_ms", pa.int64()),
        ("source_topic", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
        # What serving logged for the request (its FeatureLog, joined by the job): null when
        # it logged none. Slices written before these columns read them as null.
        ("feature_log_partition", pa.int32()),
        ("feature_log_offset", pa.int64()),
        ("feature_service_version", pa.string()),
        ("feature_log_sample_rate", pa.float64()),
        ("logged_user_feature_time", _TS),
        ("logged_item_feature_time", _TS),
        # In the service's view order (features.VIEW_COLUMNS); a null element is a value the
        # online store did not have (NaN in the FeatureLog: JSON has no NaN).
        ("logged_user_values", pa.list_(pa.float64())),
        ("logged_item_values", pa.list_(pa.float64())),
    ]
)
LOGGED_COLUMNS = tuple(LABELLED_SCHEMA.names[LABELLED_SCHEMA.names.index("feature_log_partition"):])
"""The labelled-impression columns of the joined FeatureLog (all null without one)."""
_ABSENT_WHEN_NULL = frozenset(LOGGED_COLUMNS)
UNMATCHED_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_time", _TS),
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("request_id", pa.string()),
        ("item_id", pa.string()),
        ("type", pa.string()),
        ("revenue", pa.float64()),
        ("dwell_ms", pa.int64()),
        ("position", pa.int32()),
        ("reason", pa.string()),
        ("source_topic", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
    ]
)
SCHEMAS = {LABELLED_DATASET: LABELLED_SCHEMA, UNMATCHED_DATASET: UNMATCHED_SCHEMA}
TIME_COLUMN = {LABELLED_DATASET: "served_at", UNMATCHED_DATASET: "event_time"}
ROW_KEY = {LABELLED_DATASET: ("request_id", "item_id"), UNMATCHED_DATASET: ("event_id",)}


def partition_of(event_ms: int, partition_ms: int) -> tuple[str, int, int]:
    """(name, start ms, end ms) of the event-time partition holding `event_ms`."""
    start = event_ms - event_ms % partition_ms
    name = datetime.fromtimestamp(start / 1000, UTC).strftime("%Y-%m-%dT%H")
    return name, start, start + partition_ms


def unmatched_row(
    event: dict[str, Any], reason: str, topic: str, partition: int, offset: int
) -> dict[str, Any]:
    return {
        "event_id": event["event_id"],
        "event_time": event["event_time"],
        "user_id": event["user_id"],
        "session_id": event["session_id"],
        "request_id": event.get("request_id"),
        "item_id": event["item_id"],
        "type": event["type"],
        "revenue": float(event.get("revenue") or 0.0),
        "dwell_ms": event.get("dwell_ms"),
        "position": event.get("position"),
        "reason": reason,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        REFS_FIELD: [(topic, partition, offset)],
    }


def logged_columns(log: dict[str, Any], partition: int, offset: int,
                   item_id: str) -> dict[str, Any]:
    """The LOGGED_COLUMNS of one labelled impression whose request has the FeatureLog `log`
    (a decoded record at `partition`/`offset`): what the job's label join writes (NaN as
    null; an item the log does not list gets null item columns)."""
    item = next((i for i in log["items"] if i["entity_id"] == item_id), None)

    def values(entity: dict[str, Any] | None) -> list[float | None] | None:
        if entity is None:
            return None
        return [v if v == v and abs(v) != float("inf") else None for v in entity["values"]]

    return {
        "feature_log_partition": partition, "feature_log_offset": offset,
        "feature_service_version": log["feature_service_version"],
        "feature_log_sample_rate": log["sample_rate"],
        "logged_user_feature_time": log["user"]["feature_time"],
        "logged_item_feature_time": None if item is None else item["feature_time"],
        "logged_user_values": values(log["user"]), "logged_item_values": values(item),
    }


def dedupe(dataset: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key (a replay after recovery may emit a row twice), in key order."""
    key_fields = ROW_KEY[dataset]
    unique = {tuple(r[k] for k in key_fields): r for r in rows}
    return [unique[k] for k in sorted(unique)]


def fingerprint(dataset: str, rows: list[dict[str, Any]]) -> str:
    """The content fingerprint of `rows` (in key order; fields outside the schema ignored)."""
    return table_fingerprint(to_table(dataset, rows))


FINGERPRINT = "sha256-columns:"
LEGACY_FINGERPRINT = "sha256:"  # files written before: a sha256 over the rows as Arrow's CSV


def table_fingerprint(table: pa.Table) -> str:
    """The content fingerprint of a file's rows: sha256 over the schema and, per column, the
    digests of its validity bytes and canonical values (nulls zeroed; strings as lengths and
    UTF-8 bytes). It depends on neither how the table was built, chunked or read back, so the
    job (from its NDJSON chunks) and a reader (from the Parquet file) agree, and no row is
    touched in Python. Formatting every value as CSV text, the fingerprint before, was the
    partition writer's largest cost. A logged-feature column that is null throughout counts
    as absent: rows without FeatureLogs keep the fingerprint they had before those columns
    existed, so a replay of an hour written then is recognised, not written twice."""
    combined = hashlib.sha256(f"{table.num_rows}\n".encode())
    for field, column in zip(table.schema, table.columns, strict=True):
        if field.name in _ABSENT_WHEN_NULL and column.null_count == table.num_rows:
            continue
        # A list's element field name differs after a Parquet round trip (item / element).
        kind = (f"list<{field.type.value_type}>" if pa.types.is_list(field.type)
                else str(field.type))
        combined.update(f"{field.name}:{kind}\n".encode())
        for digest in _column_digests(column):
            combined.update(digest)
    return FINGERPRINT + combined.hexdigest()


def _column_digests(column: pa.ChunkedArray) -> list[bytes]:
    """Digests of a column's validity, values (and string bytes), each fed chunk by chunk, so
    the chunking does not matter."""
    kind = column.type
    if pa.types.is_list(kind) and pa.types.is_floating(kind.value_type):
        return _list_digests(column)
    if not (pa.types.is_string(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind)
            or pa.types.is_boolean(kind) or pa.types.is_timestamp(kind)):
        raise ValueError(f"no canonical form for a {kind} column")
    validity, values, text = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
    for chunk in column.chunks:
        validity.update(chunk.is_valid().to_numpy(zero_copy_only=False).tobytes())
        if pa.types.is_string(kind):
            filled = chunk.fill_null("")
            values.update(_little_endian(pc.binary_length(filled)))
            text.update(_string_bytes(filled))
        else:
            if pa.types.is_timestamp(kind):
                chunk = chunk.cast(pa.int64())
            zero = False if pa.types.is_boolean(kind) else 0
            values.update(_little_endian(chunk.fill_null(zero)))
    return [validity.digest(), values.digest(), text.digest()]


def _list_digests(column: pa.ChunkedArray) -> list[bytes]:
    """A list<double> column: its validity, each list's length (0 for a null list) and the
    flattened elements' own digests, so the list boundaries are part of the fingerprint."""
    validity, lengths = hashlib.sha256(), hashlib.sha256()
    for chunk in column.chunks:
        validity.update(chunk.is_valid().to_numpy(zero_copy_only=False).tobytes())
        lengths.update(_little_endian(pc.list_value_length(chunk).fill_null(0)))
    flat = pa.chunked_array([c.flatten() for c in column.chunks], type=column.type.value_type)
    return [validity.digest(), lengths.digest(), *_column_digests(flat)]


def _little_endian(array: pa.Array) -> bytes:
    values = array.to_numpy(zero_copy_only=False)
    return values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()


def _string_bytes(array: pa.Array) -> memoryview:
    """The UTF-8 bytes of a null-free string array, concatenated (it may be a slice)."""
    if len(array) == 0:
        return memoryview(b"")
    _, offsets, data = array.buffers()
    bounds = np.frombuffer(offsets, dtype="<i4", count=len(array) + 1, offset=4 * array.offset)
    start, end = int(bounds[0]), int(bounds[-1])
    return memoryview(b"") if data is None else memoryview(data)[start:end]


def legacy_fingerprint(table: pa.Table) -> str:
    """The fingerprint of files written before `table_fingerprint` (sha256 over the rows as
    Arrow writes them to CSV): still recognised, so those files verify and are not written
    twice by a replay. Those files had no logged-feature columns: all-null ones are left out,
    and rows with logged vectors (which CSV cannot hold) match no such file."""
    absent = [f.name for f, c in zip(table.schema, table.columns, strict=True)
              if f.name in _ABSENT_WHEN_NULL and c.null_count == table.num_rows]
    table = table.drop_columns(absent)
    if any(pa.types.is_list(f.type) for f in table.schema):
        return LEGACY_FINGERPRINT + "-"  # never a sha256: no legacy file equals these rows
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink)
    return LEGACY_FINGERPRINT + hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def fingerprint_matches(table: pa.Table, fp: str) -> bool:
    """Whether `table` (cast to its dataset's schema) has the file fingerprint `fp`, of
    either kind."""
    if fp.startswith(FINGERPRINT):
        return table_fingerprint(table) == fp
    return legacy_fingerprint(table) == fp


def file_name(run_id: str, file_fp: str) -> str:
    """A slice file's name: the writing run and the start of its content fingerprint."""
    return f"part-{run_id[:8]}-{file_fp.rsplit(':', 1)[-1][:12]}.parquet"


def listed(previous: dict[str, Any] | None, name: str, table: pa.Table) -> bool:
    """Whether a manifest already lists these rows: by file name, or (a file written before
    the fingerprint changed, released again by a replay) by the legacy fingerprint."""
    files = (previous or {}).get("files") or []
    if any(f["name"] == name for f in files):
        return True
    legacy = [f["fingerprint"] for f in files if f.get("rows") == table.num_rows
              and str(f.get("fingerprint", "")).startswith(LEGACY_FINGERPRINT)]
    return bool(legacy) and legacy_fingerprint(table) in legacy


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in its order, cast; a column the file predates (the
    logged-feature columns in an older slice) is all null."""
    columns = [table[f.name].cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.table(columns, schema=schema)


def own_columns(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` cast to the fields of `schema` it has (in schema order): the columns its
    fingerprint was computed over, whichever version of the schema wrote it."""
    fields = [f for f in schema if f.name in table.column_names]
    return table.select([f.name for f in fields]).cast(pa.schema(fields))


def to_table(dataset: str, rows: list[dict[str, Any]]) -> pa.Table:
    schema = SCHEMAS[dataset]
    columns = {name: [r.get(name) for r in rows] for name in schema.names}
    return pa.table(columns, schema=schema)


def source_ranges(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[int]]]:
    """{topic: {partition: [min offset, max offset]}} over every input the rows came from."""
    ranges: dict[str, dict[str, list[int]]] = {}
    for row in rows:
        for topic, partition, offset in row.get(REFS_FIELD) or ():
            span = ranges.setdefault(topic, {}).setdefault(str(partition), [offset, offset])
            span[0] = min(span[0], offset)
            span[1] = max(span[1], offset)
    return ranges


def merge_ranges(
    a: dict[str, dict[str, list[int]]], b: dict[str, dict[str, list[int]]]
) -> dict[str, dict[str, list[int]]]:
    merged = json.loads(json.dumps(a))
    for topic, parts in b.items():
        for partition, (lo, hi) in parts.items():
            span = merged.setdefault(topic, {}).setdefault(partition, [lo, hi])
            span[0], span[1] = min(span[0], lo), max(span[1], hi)
    return merged


def summarize(dataset: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a file of `rows` adds to its manifest: row count, event-time range, input offsets
    (the JVM job hands the same summary over with each chunk)."""
    times = [int(r[TIME_COLUMN[dataset]]) for r in rows]
    return {"rows": len(rows), "event_time_min": min(times), "event_time_max": max(times),
            "sources": source_ranges(rows)}


def read_chunk(dataset: str, data: bytes) -> pa.Table:
    """A chunk of newline-delimited JSON rows (the JVM job's) as a table of the dataset's
    schema, parsed by Arrow's C++ reader; raises ValueError when it is not rows of it."""
    schema = SCHEMAS[dataset]
    # The reader turns JSON numbers into integers, not timestamps: read epoch ms, then cast.
    raw = pa.schema([pa.field(f.name, pa.int64()) if f.type == _TS else f for f in schema])
    try:
        table = pa_json.read_json(
            pa.BufferReader(data),
            read_options=pa_json.ReadOptions(block_size=max(1 << 20, len(data) + 1)),
            parse_options=pa_json.ParseOptions(explicit_schema=raw,
                                               unexpected_field_behavior="error"),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"not {dataset} rows: {exc}") from exc
    # A field absent from a line reads as null: the key and the time must be there.
    empty = [n for n in (*ROW_KEY[dataset], TIME_COLUMN[dataset]) if table[n].null_count]
    if empty:
        raise ValueError(f"not {dataset} rows: {empty} missing in some rows")
    return table.select(schema.names).cast(schema)


def manifest(
    dataset: str,
    partition: str,
    file_name: str,
    file_fp: str,
    summary: dict[str, Any],
    job: dict[str, str],
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The partition's manifest after adding one file (to an existing one, if any), from the
    file's summary (see summarize)."""
    files = [
        *(previous or {}).get("files", []),
        {"name": file_name, "rows": int(summary["rows"]), "fingerprint": file_fp},
    ]
    combined = hashlib.sha256("\n".join(sorted(f["fingerprint"] for f in files)).encode())
    sources = summary["sources"]
    times = [int(summary["event_time_min"]), int(summary["event_time_max"])]
    if previous:
        sources = merge_ranges(previous.get("sources", {}), sources)
        times += [previous["event_time_min"], previous["event_time_max"]]
    jobs = [*(previous or {}).get("jobs", []), job]
    return {
        "dataset": dataset,
        "partition": partition,
        "event_time_min": min(times),
        "event_time_max": max(times),
        "row_count": sum(f["rows"] for f in files),
        "fingerprint": "sha256:" + combined.hexdigest(),
        "files": files,
        "sources": sources,
        "job": job,
        "jobs": jobs,
        "written_at": datetime.now(UTC).isoformat(),
    }
