"""Slice selection by event time, the slice reference lineage records, and integrity checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bench import synthetic
from jobs.transforms import slices as contract
from loopline.paths import PathsConfig
from models import slices
from models.errors import SliceError
from schemas import topics
from tests.unit.models.conftest import START_MS

HOUR = 3_600_000


@pytest.fixture
def written(tmp_path: Path) -> tuple[PathsConfig, list[dict[str, Any]]]:
    paths = PathsConfig(home=tmp_path)
    rows = synthetic.simulate(synthetic.make_world(), START_MS, hours=3, requests_per_hour=20,
                              n_candidates=10, k=4, first_offset=100)
    synthetic.write_slices(paths, rows, run_id="run-a")
    return paths, rows


def test_ranges_parse_and_refuse_nonsense() -> None:
    rng = slices.SliceRange.parse("2026-01-01T10..2026-01-01T12:00:00Z")
    assert (rng.start_ms, rng.end_ms) == (START_MS, START_MS + 2 * HOUR)
    assert str(rng) == "2026-01-01T10:00:00Z..2026-01-01T12:00:00Z"
    assert slices.SliceRange.parse("2026-01-01T11:00+01:00..2026-01-01T11").start_ms == START_MS
    for bad, why in [("2026-01-01T10", "like"), ("2026-01-01T12..2026-01-01T10", "after"),
                     ("yesterday..today", "ISO")]:
        with pytest.raises(SliceError, match=why):
            slices.SliceRange.parse(bad)


Written = tuple[PathsConfig, list[dict[str, Any]]]


def test_selection_is_whole_final_partitions(written: Written) -> None:
    paths, _ = written
    two = slices.select(paths, slices.SliceRange.parse("2026-01-01T10..2026-01-01T12"))
    assert [p.name for p in two] == ["2026-01-01T10", "2026-01-01T11"]
    # a partition still being written (no manifest yet) is not part of any slice
    (paths.slices / contract.LABELLED_DATASET / "event_hour=2026-01-01T13").mkdir()
    every = slices.select(paths, slices.SliceRange.parse("2026-01-01T00..2026-01-02T00"))
    assert len(every) == 3
    with pytest.raises(SliceError, match="cuts through partition 2026-01-01T10"):
        slices.select(paths, slices.SliceRange.parse("2026-01-01T10:30..2026-01-01T12"))
    with pytest.raises(SliceError, match="no final labelled_impressions partitions"):
        slices.select(paths, slices.SliceRange.parse("2026-01-02T00..2026-01-02T05"))


def test_reference_names_rows_offsets_runs_and_content(written: Written) -> None:
    paths, rows = written
    rng = slices.SliceRange.parse("2026-01-01T10..2026-01-01T13")
    frame, ref = slices.load(paths, rng)
    assert ref.row_count == len(rows) == len(frame)
    serving = [off for r in rows for t, _, off in r[contract.REFS_FIELD] if t == topics.SERVING]
    clicks = [off for r in rows for t, _, off in r[contract.REFS_FIELD] if t == topics.INTERACTIONS]
    assert ref.sources == {topics.INTERACTIONS: {"0": [min(clicks), max(clicks)]},
                           topics.SERVING: {"0": [100, max(serving)]}}
    assert ref.job_run_ids == ("run-a",)
    assert (ref.event_time_min, ref.event_time_max) == (min(r["served_at"] for r in rows),
                                                        max(r["served_at"] for r in rows))
    assert ref.lineage() == {
        "start": "2026-01-01T10:00:00Z", "end": "2026-01-01T13:00:00Z",
        "row_count": len(rows), "fingerprint": ref.fingerprint,
        "partitions": ["2026-01-01T10", "2026-01-01T11", "2026-01-01T12"],
        "sources": ref.sources, "job_run_ids": ["run-a"],
    }
    assert slices.load(paths, rng)[1].fingerprint == ref.fingerprint  # deterministic
    # the same partitions with one more file (a later run) are a different slice
    extra = synthetic.simulate(synthetic.make_world(), START_MS, 1, 5, 10, 4, seed=9,
                               first_offset=10_000)
    synthetic.write_slices(paths, extra, run_id="run-b")
    again = slices.load(paths, rng)[1]
    assert again.fingerprint != ref.fingerprint and again.job_run_ids == ("run-a", "run-b")
    assert again.row_count == len(rows) + len(extra)
    assert again.sources[topics.SERVING]["0"] == [100, max(r["source_offset"] for r in extra)]


def _partition(paths: PathsConfig, name: str = "2026-01-01T11") -> Path:
    return paths.slices / contract.LABELLED_DATASET / f"event_hour={name}"


def test_files_must_agree_with_their_manifest(written: Written) -> None:
    paths, _ = written
    rng = slices.SliceRange.parse("2026-01-01T10..2026-01-01T13")
    data_file = next(_partition(paths).glob("part-*.parquet"))
    table = pq.read_table(data_file)
    doubled = table.set_column(table.schema.get_field_index("revenue"), "revenue",
                               pc.multiply(table["revenue"], 2.0))
    pq.write_table(doubled, data_file)
    with pytest.raises(SliceError, match="does not match the fingerprint"):
        slices.load(paths, rng)
    slices.load(paths, rng, verify=False)  # content check only on request; counts always
    manifest_path = _partition(paths) / "_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["row_count"] += 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(SliceError, match="manifest says"):
        slices.load(paths, rng, verify=False)
    data_file.unlink()
    with pytest.raises(SliceError, match="which is missing"):
        slices.load(paths, rng, verify=False)


def test_files_fingerprinted_before_the_columnar_form_still_verify(written: Written) -> None:
    paths, _ = written
    rng = slices.SliceRange.parse("2026-01-01T10..2026-01-01T13")
    manifest_path = _partition(paths) / "_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    [entry] = manifest["files"]
    assert entry["fingerprint"].startswith(contract.FINGERPRINT)
    table = pq.read_table(_partition(paths) / entry["name"])
    entry["fingerprint"] = contract.legacy_fingerprint(
        table.select(contract.LABELLED_SCHEMA.names).cast(contract.LABELLED_SCHEMA))
    manifest_path.write_text(json.dumps(manifest))
    slices.load(paths, rng)  # a legacy (CSV) fingerprint is recomputed as such
    entry["fingerprint"] = contract.LEGACY_FINGERPRINT + "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(SliceError, match="does not match the fingerprint"):
        slices.load(paths, rng)
