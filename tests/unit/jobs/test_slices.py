import pyarrow.parquet as pq

from jobs.sinks.slice_log import read_manifest, write_partition
from jobs.transforms import slices
from jobs.transforms.label_join import LabelJoin, RequestState
from tests.unit.jobs.events import T0, env, interaction, serving

JOB = {"name": "t", "run_id": "run-0001-abcdef", "code_version": "abc"}


def labelled_rows():
    join, state = LabelJoin(1_800_000, 3_600_000), RequestState()
    join.on_event(state, env(serving("r1", T0), offset=3))
    join.on_event(state, env(interaction("e1", T0 + 5, "b"), offset=9))
    return join.on_timer(state, T0 + 1_800_000, end_of_input=False).labelled


def test_partition_names_by_event_hour():
    assert slices.partition_of(T0 + 59 * 60_000, 3_600_000) == (
        "2026-01-01T10", T0, T0 + 3_600_000)


def test_fingerprint_ignores_order_and_in_flight_fields():
    rows = labelled_rows()
    a = slices.fingerprint(slices.LABELLED_DATASET, slices.dedupe(slices.LABELLED_DATASET, rows))
    rows_reversed = slices.dedupe(slices.LABELLED_DATASET, list(reversed(rows)) + rows[:1])
    assert a == slices.fingerprint(slices.LABELLED_DATASET, rows_reversed)
    rows[0]["revenue"] = 1.0
    assert a != slices.fingerprint(slices.LABELLED_DATASET, slices.dedupe(
        slices.LABELLED_DATASET, rows))


def test_write_partition_is_atomic_idempotent_and_records_offsets(tmp_path):
    rows = labelled_rows()
    manifest = write_partition(tmp_path, slices.LABELLED_DATASET, "2026-01-01T10", rows, JOB)
    assert manifest["row_count"] == 3
    assert manifest["sources"] == {"loopline.serving": {"0": [3, 3]},
                                   "loopline.interactions": {"0": [9, 9]}}
    assert manifest["event_time_min"] == manifest["event_time_max"] == T0
    again = write_partition(tmp_path, slices.LABELLED_DATASET, "2026-01-01T10", rows, JOB)
    assert again == manifest  # a replay of the same rows adds nothing
    directory = tmp_path / "labelled_impressions" / "event_hour=2026-01-01T10"
    table = pq.read_table(directory / manifest["files"][0]["name"])
    assert table.schema.equals(slices.LABELLED_SCHEMA)
    assert read_manifest(directory) == manifest
    assert not list(directory.glob(".*tmp"))
