"""The offline feature log: Parquet files under <home>/features/<view>/ (the Feast batch
sources), one file per released chunk of an event-time partition.

Rows arrive in event-time order per entity, each carrying the event time at which its values
became true. A file's name holds its content fingerprint, so a chunk released again after a
recovery finds its file already there and is skipped: exactly once, without coordination.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from feature_repo import names
from jobs.errors import SinkError

ENTITY = "entity_id"
EVENT_MS = "event_ms"


def frame(view: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Feast's layout: entity key, the view's feature columns, event_timestamp (UTC)."""
    columns = list(names.FEATURES_BY_VIEW[view])
    out = pd.DataFrame([[r[c] for c in columns] for r in rows], columns=columns)
    out.insert(0, names.KEY_BY_VIEW[view], [r[ENTITY] for r in rows])
    out[names.TIMESTAMP_FIELD] = pd.to_datetime([r[EVENT_MS] for r in rows], unit="ms", utc=True)
    return out


def fingerprint(rows: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, separators=(",", ":")).encode())
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()


def write_chunk(
    root: Path, view: str, partition: str, chunk: int, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """Write one chunk (idempotent); returns what lineage says about it."""
    if view not in names.FEATURES_BY_VIEW:
        raise SinkError(f"offline feature log: unknown feature view {view!r}")
    fp = fingerprint(rows)
    directory = root / view
    path = directory / f"part-{partition}-c{chunk:03d}-{fp[7:19]}.parquet"
    written = False
    if not path.exists():
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            frame(view, rows).to_parquet(tmp, index=False)
            os.replace(tmp, path)
            written = True
        except OSError as exc:
            raise SinkError(f"offline feature log: could not write {path}: {exc}") from exc
    times = [r[EVENT_MS] for r in rows]
    return {
        "rows": len(rows),
        "fingerprint": fp,
        "file": path.name,
        "written": written,
        "event_time_min": min(times),
        "event_time_max": max(times),
    }
