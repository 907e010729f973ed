"""Write final feedback-slice partitions: one Parquet file plus `_manifest.json`, atomically.

Files are written under a temporary name and renamed, manifest last, so a reader that sees a
manifest sees complete files. A partition finalised again (a later run) gains a file.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from jobs.errors import SinkError
from jobs.sinks import parquet
from jobs.transforms import slices

MANIFEST = "_manifest.json"


def partition_dir(root: Path, dataset: str, partition: str) -> Path:
    return root / dataset / f"{slices.PARTITION_COLUMN}={partition}"


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def _atomic_write_bytes(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_partition(
    root: Path,
    dataset: str,
    partition: str,
    rows: list[dict[str, Any]],
    job: dict[str, str],
) -> dict[str, Any]:
    """Write `rows` (dicts) as a new file of the partition and return the updated manifest."""
    rows = slices.dedupe(dataset, rows)
    return write_chunk(root, dataset, partition, slices.to_table(dataset, rows),
                       slices.fingerprint(dataset, rows), slices.summarize(dataset, rows), job)


def write_chunk(
    root: Path,
    dataset: str,
    partition: str,
    table: pa.Table,
    file_fp: str,
    summary: dict[str, Any],
    job: dict[str, str],
) -> dict[str, Any]:
    """Write `table` as a new file of the partition, named by its content fingerprint, and
    return the updated manifest; a file already listed (a replay) adds nothing."""
    directory = partition_dir(root, dataset, partition)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        previous = read_manifest(directory)
        name = slices.file_name(job["run_id"], file_fp)
        if previous and slices.listed(previous, name, table):
            return previous  # the same rows were already written (replay): nothing to add
        _atomic_write_bytes(directory / name, lambda p: parquet.write_table(table, p))
        manifest = slices.manifest(dataset, partition, name, file_fp, summary, job, previous)
        text = json.dumps(manifest, indent=2, sort_keys=True)
        _atomic_write_bytes(directory / MANIFEST, lambda p: p.write_text(text))
    except OSError as exc:
        raise SinkError(f"slice log: could not write {dataset}/{partition}: {exc}") from exc
    return manifest


def purge_expired(root: Path, retention_days: float, now_ms: int | None = None,
                  dry_run: bool = False) -> list[Path]:
    """Delete the slice partitions (every dataset under `root`) whose newest event is more than
    `retention_days` old; the deleted (or, dry run, expired) partition folders.

    The newest event time comes from the manifest; a partition without one (a write that
    never finished) is judged by the end of its hour. A folder is renamed aside before it is
    removed, so a reader never sees a partition with some of its files gone.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    cutoff = now_ms - int(retention_days * 86_400_000)
    expired = []
    prefix = f"{slices.PARTITION_COLUMN}="
    for directory in sorted(root.glob(f"*/{prefix}*")):
        manifest = read_manifest(directory)
        if manifest is not None:
            newest = int(manifest["event_time_max"])
        else:
            try:
                hour = datetime.strptime(directory.name.removeprefix(prefix), "%Y-%m-%dT%H")
            except ValueError:
                continue  # not a partition this log wrote
            newest = int(hour.replace(tzinfo=UTC).timestamp() * 1000) + 3_600_000 - 1
        if newest >= cutoff:
            continue
        expired.append(directory)
        if not dry_run:
            doomed = directory.with_name(f".purging-{directory.name}")
            try:
                os.replace(directory, doomed)
                shutil.rmtree(doomed)
            except OSError as exc:
                raise SinkError(f"slice log: could not delete {directory}: {exc}") from exc
    return expired
