"""Feedback slices: an event-time range START..END of final labelled-impression partitions.

A slice is whole partitions only (a partition's manifest is its commit record), so a model's
lineage can name it exactly: the partitions, their merged Kafka offset ranges, the row count,
one fingerprint over the partition fingerprints, and the job runs that wrote them. Reading a
slice checks that the files agree with their manifests (row counts, and on request the
content fingerprints the job computed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from jobs.sinks.slice_log import MANIFEST, read_manifest
from jobs.transforms import slices as contract
from loopline.paths import PathsConfig
from models.errors import SliceError

DATASET = contract.LABELLED_DATASET
SCHEMA = contract.LABELLED_SCHEMA
TIME_COLUMN = contract.TIME_COLUMN[DATASET]


def parse_time(text: str) -> datetime:
    """An ISO-8601 instant (naive means UTC), e.g. 2026-01-01T10 or 2026-01-01T10:00:00Z."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise SliceError(f"expected an ISO time like 2026-01-01T10:00Z, got {text!r}") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


@dataclass(frozen=True)
class SliceRange:
    """Half-open event-time range [start, end) in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise SliceError(
                f"slice END must be after START, got {iso(self.start)}..{iso(self.end)}")

    @classmethod
    def parse(cls, text: str) -> SliceRange:
        start, sep, end = text.partition("..")
        if not sep or not start or not end:
            raise SliceError(f"expected a slice like 2026-01-01T10..2026-01-01T12, got {text!r}")
        return cls(parse_time(start), parse_time(end))

    @property
    def start_ms(self) -> int:
        return to_ms(self.start)

    @property
    def end_ms(self) -> int:
        return to_ms(self.end)

    def __str__(self) -> str:
        return f"{iso(self.start)}..{iso(self.end)}"


@dataclass(frozen=True)
class Partition:
    """One final partition: its directory and manifest."""

    name: str
    path: Path
    manifest: dict[str, Any]

    @property
    def start_ms(self) -> int:
        return to_ms(parse_time(self.name))

    @property
    def row_count(self) -> int:
        return int(self.manifest["row_count"])

    def files(self) -> list[tuple[Path, str | None]]:
        """(path, fingerprint) of every data file the manifest commits to."""
        out: list[tuple[Path, str | None]] = []
        for entry in self.manifest.get("files") or []:
            if isinstance(entry, str):
                name, fp = entry, None
            else:
                name, fp = entry["name"], entry.get("fingerprint")
            path = Path(name) if Path(name).is_absolute() else self.path / name
            out.append((path, fp))
        return out

    def job_run_ids(self) -> list[str]:
        jobs = self.manifest.get("jobs") or [self.manifest.get("job") or {}]
        return [j["run_id"] for j in jobs if j.get("run_id")]


@dataclass(frozen=True)
class SliceRef:
    """What a model was trained on, exactly as lineage records it."""

    range: SliceRange
    partitions: tuple[str, ...]
    row_count: int
    fingerprint: str
    sources: dict[str, dict[str, list[int]]]
    job_run_ids: tuple[str, ...]
    event_time_min: int
    event_time_max: int

    def lineage(self) -> dict[str, Any]:
        """The `slice` object of lineage.json (its shape is a contract with attribution)."""
        return {
            "start": iso(self.range.start),
            "end": iso(self.range.end),
            "row_count": self.row_count,
            "fingerprint": self.fingerprint,
            "partitions": list(self.partitions),
            "sources": self.sources,
            "job_run_ids": list(self.job_run_ids),
        }


def list_partitions(paths: PathsConfig) -> list[Partition]:
    """Every final partition (one with a manifest) of the labelled-impression log, in order."""
    root = paths.slices / DATASET
    if not root.is_dir():
        return []
    prefix = f"{contract.PARTITION_COLUMN}="
    found = []
    for directory in sorted(root.glob(f"{prefix}*")):
        if not (directory / MANIFEST).is_file():
            continue  # still being written: not final yet
        try:
            manifest = read_manifest(directory)
        except ValueError as exc:
            raise SliceError(f"{directory / MANIFEST}: not valid JSON: {exc}") from exc
        if manifest is not None:
            found.append(Partition(directory.name[len(prefix):], directory, manifest))
    return found


def select(paths: PathsConfig, rng: SliceRange) -> list[Partition]:
    """The partitions that make up `rng`; refuses a bound that cuts through a partition."""
    chosen = []
    for part in list_partitions(paths):
        lo, hi = int(part.manifest["event_time_min"]), int(part.manifest["event_time_max"])
        inside = rng.start_ms <= part.start_ms < rng.end_ms
        if inside and hi >= rng.end_ms:
            raise SliceError(f"END {iso(rng.end)} cuts through partition {part.name}; "
                             "use a partition boundary")
        if not inside and part.start_ms < rng.start_ms <= hi:
            raise SliceError(f"START {iso(rng.start)} cuts through partition {part.name}; "
                             "use a partition boundary")
        if inside and lo < rng.start_ms:
            raise SliceError(f"partition {part.name} holds rows before its own start")
        if inside:
            chosen.append(part)
    if not chosen:
        raise SliceError(f"no final {DATASET} partitions in {rng} under {paths.slices / DATASET}")
    return chosen


def combined_fingerprint(partitions: list[Partition]) -> str:
    """sha256 over 'partition fingerprint' lines: equal iff the same partitions, same content."""
    lines = sorted(f"{p.name} {p.manifest['fingerprint']}" for p in partitions)
    return "sha256:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def merge_sources(partitions: list[Partition]) -> dict[str, dict[str, list[int]]]:
    """{topic: {partition: [min offset, max offset]}} over all partitions' manifests."""
    merged: dict[str, dict[str, list[int]]] = {}
    for part in partitions:
        for topic, spans in (part.manifest.get("sources") or {}).items():
            for kafka_partition, (lo, hi) in spans.items():
                span = merged.setdefault(topic, {}).setdefault(str(kafka_partition), [lo, hi])
                span[0], span[1] = min(span[0], lo), max(span[1], hi)
    return {topic: dict(sorted(spans.items(), key=lambda kv: int(kv[0])))
            for topic, spans in sorted(merged.items())}


def reference(rng: SliceRange, partitions: list[Partition]) -> SliceRef:
    run_ids = sorted({r for p in partitions for r in p.job_run_ids()})
    return SliceRef(
        range=rng,
        partitions=tuple(p.name for p in partitions),
        row_count=sum(p.row_count for p in partitions),
        fingerprint=combined_fingerprint(partitions),
        sources=merge_sources(partitions),
        job_run_ids=tuple(run_ids),
        event_time_min=min(int(p.manifest["event_time_min"]) for p in partitions),
        event_time_max=max(int(p.manifest["event_time_max"]) for p in partitions),
    )


def _fingerprint_matches(table: pa.Table, fp: str) -> bool:
    """Whether a file's rows have the content fingerprint the job computed (either kind, see
    jobs/transforms/slices)."""
    return contract.fingerprint_matches(contract.own_columns(table, SCHEMA), fp)


def read_partitions(partitions: list[Partition], columns: list[str] | None = None,
                    verify: bool = False) -> pd.DataFrame:
    """The rows of `partitions` as one frame; checks row counts (and fingerprints if verify)."""
    tables = []
    for part in partitions:
        rows = 0
        for path, fp in part.files():
            if not path.is_file():
                raise SliceError(
                    f"partition {part.name}: manifest lists {path.name}, which is missing")
            try:
                wanted = None if verify or columns is None else \
                    [c for c in columns if c in pq.read_schema(path).names]  # older files
                table = pq.read_table(path, columns=wanted)
            except (OSError, pa.ArrowInvalid) as exc:
                raise SliceError(f"partition {part.name}: cannot read {path.name}: {exc}") from exc
            rows += table.num_rows
            if verify and fp is not None and not _fingerprint_matches(table, fp):
                raise SliceError(f"partition {part.name}: {path.name} does not match the "
                                 f"fingerprint in its manifest ({fp})")
            tables.append(table)
        if rows != part.row_count:
            raise SliceError(f"partition {part.name}: manifest says {part.row_count} rows, "
                             f"files hold {rows}")
    schema = pa.schema([SCHEMA.field(c) for c in columns]) if columns else SCHEMA
    try:
        table = pa.concat_tables([contract.conform(t, schema) for t in tables])
    except (pa.ArrowInvalid, KeyError, ValueError) as exc:
        raise SliceError(f"slice files do not match the labelled-impression schema: {exc}") from exc
    return table.to_pandas()


def load(paths: PathsConfig, rng: SliceRange, columns: list[str] | None = None,
         verify: bool = True) -> tuple[pd.DataFrame, SliceRef]:
    """Select, read and describe the slice `rng`."""
    partitions = select(paths, rng)
    return read_partitions(partitions, columns, verify), reference(rng, partitions)
