"""Which feedback slice each version was trained on, and what a slice alone earned.

Lineage comes from the model registry (`<models>/<version>/lineage.json`). Two versions with
the same parent, code version and feature service that differ only in their training slice
form a "slice pair": comparing them directly attributes the revenue difference to the slice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from attribution.errors import LineageError

REQUIRED = (
    "model_version",
    "parent_version",
    "trained_at",
    "code_version",
    "feature_service",
    "slice",
)
SLICE_REQUIRED = ("start", "end", "row_count", "fingerprint")
# What must match for the slice to be the only difference between two versions.
SHARED_CONFIG = ("parent_version", "code_version", "feature_service")


@dataclass(frozen=True)
class LineageStatus:
    """A version's lineage, or why there is none (missing file / unreadable file), or its
    registration as an external policy that claims no slice."""

    version: str
    lineage: dict[str, Any] | None
    problem: str | None
    external: dict[str, Any] | None = None

    @property
    def slice(self) -> dict[str, Any] | None:
        return self.lineage["slice"] if self.lineage else None

    def summary(self) -> dict[str, Any] | None:
        """The slice as shown in the report (the partition list is summarised, not copied)."""
        if self.lineage is None:
            return None
        s = self.lineage["slice"]
        partitions = list(s.get("partitions") or [])
        return {
            "parent_version": self.lineage.get("parent_version"),
            "trained_at": self.lineage.get("trained_at"),
            "code_version": self.lineage.get("code_version"),
            "feature_service": self.lineage.get("feature_service"),
            "start": s.get("start"),
            "end": s.get("end"),
            "row_count": s.get("row_count"),
            "fingerprint": s.get("fingerprint"),
            "partition_count": len(partitions),
            "first_partition": partitions[0] if partitions else None,
            "last_partition": partitions[-1] if partitions else None,
            "sources": s.get("sources") or {},
            "job_run_ids": list(s.get("job_run_ids") or []),
        }


def read_lineage(models: Path, version: str) -> dict[str, Any] | None:
    """The parsed lineage.json, None when the version has none; LineageError when malformed."""
    path = models / version / "lineage.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LineageError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise LineageError(f"{path}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in REQUIRED if k not in data]
    if not missing and isinstance(data["slice"], dict):
        missing = [f"slice.{k}" for k in SLICE_REQUIRED if k not in data["slice"]]
    elif not missing:
        missing = ["slice (an object)"]
    if missing:
        raise LineageError(f"{path}: expected keys {list(REQUIRED)}, missing {missing}")
    if data["model_version"] != version:
        raise LineageError(
            f"{path}: model_version is {data['model_version']!r}, expected {version!r}"
        )
    return data


def lineage_for(models: Path, versions: list[str]) -> dict[str, LineageStatus]:
    """Lineage per version; a version registered as external (`loopline models
    register-external`) claims no slice, so having none is not a problem for it."""
    from models.errors import RegistryError
    from models.registry import Registry

    registry = Registry(models)
    out = {}
    for v in versions:
        external = None
        try:
            lineage = read_lineage(models, v)
            if lineage is None:
                external = registry.external(v)
            problem = None if lineage or external else f"no lineage.json under {models / v}"
        except (LineageError, RegistryError) as exc:
            lineage, problem = None, str(exc)
        out[v] = LineageStatus(v, lineage, problem, external)
    return out


def _feature_source(lineage: dict[str, Any]) -> str:
    """Where a version's training features came from (lineage before the key: point in time)."""
    return str((lineage.get("features") or {}).get("source", "point-in-time"))


def slice_only_pairs(statuses: dict[str, LineageStatus]) -> list[tuple[str, str]]:
    """(older slice, newer slice) pairs of versions whose only difference is the slice."""
    pairs = []
    known = [s for s in statuses.values() if s.lineage is not None]
    for a, b in combinations(known, 2):
        la, lb = a.lineage or {}, b.lineage or {}
        if any(la.get(k) != lb.get(k) for k in SHARED_CONFIG):
            continue
        if _feature_source(la) != _feature_source(lb):
            continue  # logged vs point-in-time features: more than the slice differs
        sa, sb = la["slice"], lb["slice"]
        if (sa.get("fingerprint"), sa.get("start"), sa.get("end")) == (
            sb.get("fingerprint"),
            sb.get("start"),
            sb.get("end"),
        ):
            continue  # same slice too: nothing to attribute to it
        older, newer = sorted([a, b], key=lambda s: (str((s.slice or {}).get("end")), s.version))
        pairs.append((older.version, newer.version))
    return pairs


def describe_slices(a: LineageStatus, b: LineageStatus) -> str:
    sa, sb = a.slice or {}, b.slice or {}

    def span(s: dict[str, Any]) -> str:
        start, end = pd.Timestamp(s["start"]), pd.Timestamp(s["end"])
        return f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} ({int(s['row_count']):,} rows)"

    shared = ", ".join(f"{k}={(a.lineage or {}).get(k)}" for k in SHARED_CONFIG)
    return f"same {shared}; {a.version} trained on {span(sa)}, {b.version} on {span(sb)}"
