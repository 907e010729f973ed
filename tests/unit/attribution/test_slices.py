from __future__ import annotations

import json
from pathlib import Path

from attribution.slices import lineage_for, read_lineage, slice_only_pairs


def _write(models: Path, version: str, **overrides: object) -> None:
    doc = {
        "model_version": version,
        "parent_version": "v1",
        "trained_at": "2026-10-30T00:00:00Z",
        "code_version": "abc",
        "feature_service": "ranker",
        "slice": {
            "start": "2026-10-01T00:00:00Z",
            "end": "2026-10-08T00:00:00Z",
            "row_count": 10,
            "fingerprint": "f1",
            "partitions": ["event_hour=2026-10-01T00"],
            "sources": {"t": {"0": [0, 9]}},
            "job_run_ids": ["r1"],
        },
    }
    doc.update(overrides)
    (models / version).mkdir(parents=True, exist_ok=True)
    (models / version / "lineage.json").write_text(json.dumps(doc))


def test_pairs_only_when_the_slice_is_the_only_difference(tmp_path: Path) -> None:
    later = {
        "start": "2026-10-08T00:00:00Z",
        "end": "2026-10-15T00:00:00Z",
        "row_count": 12,
        "fingerprint": "f2",
        "partitions": [],
        "sources": {},
        "job_run_ids": [],
    }
    _write(tmp_path, "a")
    _write(tmp_path, "b", slice=later)
    _write(tmp_path, "c", slice=later, code_version="other")  # code differs too: no pair
    _write(tmp_path, "d")  # same slice as a: nothing to attribute
    statuses = lineage_for(tmp_path, ["a", "b", "c", "d", "popularity"])
    assert statuses["popularity"].lineage is None and "no lineage.json" in str(
        statuses["popularity"].problem
    )
    assert slice_only_pairs(statuses) == [("a", "b"), ("d", "b")]


def test_malformed_lineage_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "lineage.json").write_text("{not json")
    _write(tmp_path, "y", slice={"start": "s"})
    statuses = lineage_for(tmp_path, ["x", "y"])
    assert "not valid JSON" in str(statuses["x"].problem)
    assert "slice.end" in str(statuses["y"].problem)
    assert read_lineage(tmp_path, "zzz") is None
