"""The offline feature log: Parquet files under <home>/features/<view>/ (the Feast batch
sources), one file per released chunk of an event-time partition.

A chunk arrives from the JVM as columns (FeatureLogBuffer's layout: int64/float64 arrays and
Arrow's string layout), so it maps onto Arrow arrays without parsing text. Rows are in
(entity, time) order, each carrying the event time at which its values became true. A file's
name holds the chunk's content fingerprint, so a chunk released again after a recovery finds
its file already there and is skipped: exactly once, without coordination.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_repo import names
from jobs.errors import SinkError
from jobs.sinks import parquet

VERSION = 1
ENTITY = "entity_id"
EVENT_MS = "event_ms"
_FIXED = {ord("L"): (np.dtype("<i8"), pa.int64()), ord("D"): (np.dtype("<f8"), pa.float64())}


def decode(data: bytes) -> dict[str, pa.Array]:
    """Columns by name from one chunk; raises ValueError on anything malformed."""
    view = memoryview(data)
    version, n, columns = struct.unpack_from("<iii", view, 0)
    if version != VERSION:
        raise ValueError(f"chunk layout version {version}, expected {VERSION}")
    at, out = 12, {}

    def need(end: int, what: str) -> None:
        if end > len(data):
            raise ValueError(f"chunk ends early: {what} needs bytes up to {end}, has {len(data)}")

    for _ in range(columns):
        (length,) = struct.unpack_from("<h", view, at)
        name = bytes(view[at + 2:at + 2 + length]).decode()
        kind = view[at + 2 + length]
        at += 3 + length
        if kind in _FIXED:
            need(at + 8 * n, name)
            dtype, arrow = _FIXED[kind]
            values = np.frombuffer(view, dtype=dtype, count=n, offset=at)
            out[name] = pa.array(values, type=arrow)
            at += 8 * n
        elif kind == ord("S"):
            need(at + 4 * (n + 2), name)
            offsets = pa.py_buffer(view[at:at + 4 * (n + 1)])
            (size,) = struct.unpack_from("<i", view, at + 4 * (n + 1))
            start = at + 4 * (n + 2)
            need(start + size, name)
            text = pa.py_buffer(view[start:start + size])
            out[name] = pa.Array.from_buffers(pa.string(), n, [None, offsets, text])
            at = start + size
        else:
            raise ValueError(f"column {name!r} has unknown type {chr(kind)!r}")
    if at != len(data):
        raise ValueError(f"{len(data) - at} bytes after the last column")
    return out


def table(view: str, data: bytes) -> pa.Table:
    """Feast's layout: entity key, the view's feature columns, event_timestamp (UTC)."""
    columns = decode(data)
    features = names.FEATURES_BY_VIEW[view]
    missing = [c for c in (ENTITY, EVENT_MS, *features) if c not in columns]
    if missing:
        raise ValueError(f"columns {missing} missing for view {view}")
    stamps = pc.cast(columns[EVENT_MS], pa.timestamp("ms", tz="UTC"))
    arrays = [columns[ENTITY], *(columns[f] for f in features), stamps]
    return pa.Table.from_arrays(
        arrays, names=[names.KEY_BY_VIEW[view], *features, names.TIMESTAMP_FIELD])


def write_chunk(root: Path, view: str, partition: str, chunk: int, data: bytes
                ) -> dict[str, Any]:
    """Write one chunk (idempotent); returns what lineage says about it."""
    if view not in names.FEATURES_BY_VIEW:
        raise SinkError(f"offline feature log: unknown feature view {view!r}")
    fp = "sha256:" + hashlib.sha256(data).hexdigest()
    directory = root / view
    path = directory / f"part-{partition}-c{chunk:03d}-{fp[7:19]}.parquet"
    try:
        rows = table(view, data)
    except (ValueError, struct.error, pa.ArrowInvalid) as exc:
        raise SinkError(f"offline feature log: chunk {chunk} of {view}/{partition} is not "
                        f"rows of the view: {exc}") from exc
    written = False
    if not path.exists():
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            parquet.write_table(rows, tmp)
            os.replace(tmp, path)
            written = True
        except OSError as exc:
            raise SinkError(f"offline feature log: could not write {path}: {exc}") from exc
    span = pc.min_max(rows[names.TIMESTAMP_FIELD].cast(pa.int64())).as_py()
    return {"rows": rows.num_rows, "fingerprint": fp, "file": path.name, "written": written,
            "event_time_min": span["min"], "event_time_max": span["max"]}
