"""The offline feature log: Parquet files under <home>/features/<view>/ (the Feast batch
sources), one file per released chunk of an event-time partition.

Rows arrive as newline-delimited JSON (one row per line, in (entity, time) order), each
carrying the event time at which its values became true; Arrow parses them in C++ straight
into columns. A file's name holds the chunk's content fingerprint, so a chunk released again
after a recovery finds its file already there and is skipped: exactly once, without
coordination.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from feature_repo import names
from jobs.errors import SinkError

ENTITY = "entity_id"
EVENT_MS = "event_ms"


def _type(feature: str) -> pa.DataType:
    if feature == "user_last_clicked":
        return pa.string()
    counts = ("impressions", "clicks", "purchases", "add_to_cart")
    is_count = any(feature.endswith(f"_{c}_{w}") for c in counts for w in names.WINDOWS)
    return pa.int64() if is_count else pa.float64()


def json_schema(view: str) -> pa.Schema:
    return pa.schema([pa.field(ENTITY, pa.string()), pa.field(EVENT_MS, pa.int64()),
                      *(pa.field(f, _type(f)) for f in names.FEATURES_BY_VIEW[view])])


def table(view: str, ndjson: bytes) -> pa.Table:
    """Feast's layout: entity key, the view's feature columns, event_timestamp (UTC)."""
    parsed = pa_json.read_json(
        io.BytesIO(ndjson),
        parse_options=pa_json.ParseOptions(explicit_schema=json_schema(view),
                                           unexpected_field_behavior="error"),
    )
    key = parsed[ENTITY]
    stamps = pc.cast(parsed[EVENT_MS], pa.timestamp("ms", tz="UTC"))
    columns = [key, *(parsed[f] for f in names.FEATURES_BY_VIEW[view]), stamps]
    fields = [names.KEY_BY_VIEW[view], *names.FEATURES_BY_VIEW[view], names.TIMESTAMP_FIELD]
    return pa.Table.from_arrays(columns, names=fields)


def write_chunk(root: Path, view: str, partition: str, chunk: int, ndjson: bytes
                ) -> dict[str, Any]:
    """Write one chunk (idempotent); returns what lineage says about it."""
    if view not in names.FEATURES_BY_VIEW:
        raise SinkError(f"offline feature log: unknown feature view {view!r}")
    fp = "sha256:" + hashlib.sha256(ndjson).hexdigest()
    directory = root / view
    path = directory / f"part-{partition}-c{chunk:03d}-{fp[7:19]}.parquet"
    try:
        rows = table(view, ndjson)
    except (pa.ArrowInvalid, KeyError) as exc:
        raise SinkError(f"offline feature log: chunk {chunk} of {view}/{partition} is not "
                        f"rows of the view: {exc}") from exc
    written = False
    if not path.exists():
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            pq.write_table(rows, tmp)
            os.replace(tmp, path)
            written = True
        except OSError as exc:
            raise SinkError(f"offline feature log: could not write {path}: {exc}") from exc
    span = pc.min_max(rows[names.TIMESTAMP_FIELD].cast(pa.int64())).as_py()
    return {"rows": rows.num_rows, "fingerprint": fp, "file": path.name, "written": written,
            "event_time_min": span["min"], "event_time_max": span["max"]}
