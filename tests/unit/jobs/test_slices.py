import itertools
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.sinks.slice_log import read_manifest, write_chunk, write_partition
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


# A chunk as the JVM job's PartitionBuffer writes it: Java's number forms, nulls, in key order.
JVM_CHUNK = (
    b'{"event_id":"e1","event_time":1767261600000,"user_id":"u1","session_id":"s1",'
    b'"request_id":null,"item_id":"i1","type":"purchase","revenue":1.0E-4,"dwell_ms":null,'
    b'"position":null,"reason":"no_impression","source_topic":"loopline.interactions",'
    b'"source_partition":0,"source_offset":9}\n'
    b'{"event_id":"e2","event_time":1767261600005,"user_id":"u2","session_id":"s2",'
    b'"request_id":"r9","item_id":"i2","type":"view","revenue":0.0,"dwell_ms":1200,'
    b'"position":3,"reason":"no_impression","source_topic":"loopline.interactions",'
    b'"source_partition":1,"source_offset":4}\n'
)


def test_a_jvm_chunk_reads_as_the_dataset_schema_with_nulls_and_times():
    table = slices.read_chunk(slices.UNMATCHED_DATASET, JVM_CHUNK)
    assert table.schema.equals(slices.UNMATCHED_SCHEMA)
    rows = table.to_pylist()
    assert [r["event_id"] for r in rows] == ["e1", "e2"]
    assert rows[0]["revenue"] == 1e-4 and rows[0]["request_id"] is None
    assert rows[0]["dwell_ms"] is None and rows[1]["dwell_ms"] == 1200
    assert rows[1]["event_time"].timestamp() * 1000 == 1767261600005


def test_a_chunk_that_is_not_rows_of_the_dataset_is_refused():
    for bad in (b'{"event_id":"e1"}\n', JVM_CHUNK.replace(b'"reason"', b'"reasons"'),
                JVM_CHUNK[:-20], b"not json\n"):
        try:
            slices.read_chunk(slices.UNMATCHED_DATASET, bad)
        except ValueError as exc:
            assert "not unmatched_interactions rows" in str(exc)
        else:
            raise AssertionError(f"accepted {bad[:40]!r}")


def test_write_chunk_names_files_by_fingerprint_and_merges_the_summary(tmp_path):
    table = slices.read_chunk(slices.UNMATCHED_DATASET, JVM_CHUNK)
    summary = {"rows": 2, "event_time_min": 1767261600000, "event_time_max": 1767261600005,
               "sources": {"loopline.interactions": {"0": [9, 9], "1": [4, 4]}}}
    first = write_chunk(tmp_path, slices.UNMATCHED_DATASET, "2026-01-01T10", table,
                        "sha256:" + "a" * 64, summary, JOB)
    assert write_chunk(tmp_path, slices.UNMATCHED_DATASET, "2026-01-01T10", table,
                       "sha256:" + "a" * 64, summary, JOB) == first
    later = {**summary, "rows": 1, "event_time_max": 1767261700000,
             "sources": {"loopline.interactions": {"0": [12, 12]}}}
    second = write_chunk(tmp_path, slices.UNMATCHED_DATASET, "2026-01-01T10", table.slice(0, 1),
                         "sha256:" + "b" * 64, later, JOB)
    assert second["row_count"] == 3 and len(second["files"]) == 2
    assert second["event_time_max"] == 1767261700000
    assert second["sources"] == {"loopline.interactions": {"0": [9, 12], "1": [4, 4]}}


def test_the_fingerprint_is_the_same_from_the_chunk_from_parquet_and_from_dict_rows(tmp_path):
    """The job fingerprints the table it parsed from the JVM's NDJSON; a reader verifies the
    Parquet file; bench and tests write dict rows: one definition, three ways in."""
    table = slices.read_chunk(slices.UNMATCHED_DATASET, JVM_CHUNK)
    pq.write_table(table, tmp_path / "f.parquet")
    back = pq.read_table(tmp_path / "f.parquet")
    rows = [{**r, "event_time": int(r["event_time"].timestamp() * 1000), "extra": 1}
            for r in table.to_pylist()]
    fp = slices.table_fingerprint(table)
    assert fp == slices.table_fingerprint(back) == slices.fingerprint(
        slices.UNMATCHED_DATASET, rows)
    assert fp == slices.table_fingerprint(pa.concat_tables([table.slice(0, 1), table.slice(1)]))
    assert fp != slices.table_fingerprint(
        slices.read_chunk(slices.UNMATCHED_DATASET, JVM_CHUNK.replace(b"1200", b"1201")))


def _random_table(seed: int) -> pa.Table:
    """Labelled rows with nulls, empty strings, zeros and negative zeros in every column kind."""
    rng = random.Random(seed)
    rows = []
    for i in range(40):
        row = {}
        for field in slices.LABELLED_SCHEMA:
            kind = field.type
            if rng.random() < 0.15 and field.name not in ("request_id", "item_id", "served_at"):
                row[field.name] = None
            elif pa.types.is_string(kind):
                row[field.name] = rng.choice(["", "a", "é€", f"r{i}", "x" * rng.randrange(9)])
            elif pa.types.is_boolean(kind):
                row[field.name] = rng.random() < 0.5
            elif pa.types.is_floating(kind):
                row[field.name] = rng.choice([0.0, -0.0, 1e-4, rng.random()])
            elif pa.types.is_list(kind):
                row[field.name] = rng.choice([[], [0.0], [None, -0.0], [rng.random()] * 3])
            else:
                big = 1 << (30 if kind == pa.int32() else 40)
                row[field.name] = rng.choice([0, 1, -1, rng.randrange(big)])
        rows.append(row)
    return slices.to_table(slices.LABELLED_DATASET, rows)


def test_the_fingerprint_does_not_depend_on_chunks_slices_or_a_parquet_round_trip(tmp_path):
    for seed in range(5):
        table = _random_table(seed)
        fp = slices.table_fingerprint(table)
        assert fp.startswith(slices.FINGERPRINT)
        cuts = sorted({0, 40, *(3 * seed + k for k in (1, 7, 19))})
        pieces = [table.slice(a, b - a) for a, b in itertools.pairwise(cuts)]
        assert slices.table_fingerprint(pa.concat_tables(pieces)) == fp
        assert slices.table_fingerprint(table.combine_chunks()) == fp
        pq.write_table(table, tmp_path / "t.parquet", row_group_size=7)
        assert slices.table_fingerprint(pq.read_table(tmp_path / "t.parquet")) == fp


def _with(table: pa.Table, name: str, values: dict[int, object]) -> pa.Table:
    column = table.column(name).to_pylist()
    for row, value in values.items():
        column[row] = value
    return table.set_column(table.schema.get_field_index(name), name,
                            pa.array(column, type=table.schema.field(name).type))


def test_the_fingerprint_tells_null_from_zero_empty_and_sign():
    table = _random_table(1)
    for name, a, b in (("user_id", None, ""), ("dwell_ms", None, 0), ("fallback", None, False),
                       ("revenue", 0.0, -0.0), ("revenue", None, 0.0), ("position", 0, 1)):
        assert (slices.table_fingerprint(_with(table, name, {3: a}))
                != slices.table_fingerprint(_with(table, name, {3: b}))), (name, a, b)
    assert (slices.table_fingerprint(_with(table, "user_id", {0: "ab", 1: "c"}))
            != slices.table_fingerprint(_with(table, "user_id", {0: "a", 1: "bc"})))


def test_the_fingerprint_of_a_known_chunk_stays_what_manifests_hold():
    """Written manifests keep these values: a change of the canonical form must be a new
    prefix (as legacy_fingerprint shows), or every file written before fails verification."""
    table = slices.read_chunk(slices.UNMATCHED_DATASET, JVM_CHUNK)
    assert slices.table_fingerprint(table) == PINNED
    assert slices.legacy_fingerprint(table) == PINNED_LEGACY
    assert slices.fingerprint_matches(table, PINNED)
    assert slices.fingerprint_matches(table, PINNED_LEGACY)
    assert not slices.fingerprint_matches(table.slice(1), PINNED)
    assert not slices.fingerprint_matches(table.slice(1), PINNED_LEGACY)


def test_a_replay_of_a_file_written_with_the_legacy_fingerprint_adds_nothing(tmp_path):
    table = slices.read_chunk(slices.UNMATCHED_DATASET, JVM_CHUNK)
    summary = {"rows": 2, "event_time_min": 1767261600000, "event_time_max": 1767261600005,
               "sources": {"loopline.interactions": {"0": [9, 9], "1": [4, 4]}}}
    old = write_chunk(tmp_path, slices.UNMATCHED_DATASET, "2026-01-01T10", table,
                      slices.legacy_fingerprint(table), summary, JOB)
    again = write_chunk(tmp_path, slices.UNMATCHED_DATASET, "2026-01-01T10", table,
                        slices.table_fingerprint(table), summary, JOB)
    assert again == old and len(again["files"]) == 1
    other = write_chunk(tmp_path, slices.UNMATCHED_DATASET, "2026-01-01T10", table.slice(1),
                        slices.table_fingerprint(table.slice(1)), {**summary, "rows": 1}, JOB)
    assert len(other["files"]) == 2
    assert other["files"][1]["name"] == slices.file_name(
        JOB["run_id"], slices.table_fingerprint(table.slice(1)))


PINNED = "sha256-columns:962eeb8659accecfb1a73349da34360b92c854882e4582e47eeb8d5d407777b1"
PINNED_LEGACY = "sha256:191556e3d9eda562fbb251bf2c6ed3f00548929a5cabc3905db9d02c5cac215d"


def _labelled_rows(n=3):
    return [{"request_id": f"r{i}", "item_id": "a", "user_id": "u", "session_id": "s",
             "model_version": "v1", "arm": "control", "policy": "p", "fallback": False,
             "position": 0, "score": 0.5, "propensity": 0.5, "served_at": 1767261600000 + i,
             "clicked": i == 1, "added_to_cart": False, "purchased": False, "revenue": 0.0,
             "dwell_ms": 0, "interaction_count": 0, "label_window_ms": 1800000,
             "source_topic": "loopline.serving", "source_partition": 0, "source_offset": i}
            for i in range(n)]


def _log(rid):
    return {"request_id": rid, "feature_service_version": "sha256:x", "sample_rate": 0.5,
            "user": {"entity_id": "u", "feature_time": None, "values": [1.0, float("nan")]},
            "items": [{"entity_id": "a", "feature_time": 7, "values": [2.0, 3.0, 4.0]}]}


def test_rows_without_logs_keep_the_fingerprint_of_the_schema_before_the_logged_columns():
    """An hour written before the columns existed, replayed now, is recognised (same file
    name), and the old file verifies and reads with null logged columns."""
    rows = _labelled_rows()
    now = slices.to_table(slices.LABELLED_DATASET, rows)
    before = now.drop_columns(list(slices.LOGGED_COLUMNS))
    assert slices.table_fingerprint(now) == slices.table_fingerprint(before)
    assert slices.fingerprint_matches(slices.own_columns(before, slices.LABELLED_SCHEMA),
                                      slices.table_fingerprint(before))
    read = slices.conform(before, slices.LABELLED_SCHEMA)
    assert read.schema == slices.LABELLED_SCHEMA
    assert all(read[c].null_count == len(rows) for c in slices.LOGGED_COLUMNS)


def test_logged_columns_mirror_the_label_join_and_enter_the_fingerprint():
    rows = _labelled_rows()
    rows[0].update(slices.logged_columns(_log("r0"), 0, 5, "a"))
    rows[1].update(slices.logged_columns(_log("r1"), 0, 6, "zzz"))  # item not in the log
    assert rows[0]["logged_user_values"] == [1.0, None]  # NaN travels as null
    assert rows[0]["logged_item_values"] == [2.0, 3.0, 4.0]
    assert rows[1]["logged_item_values"] is None and rows[1]["logged_user_values"]
    table = slices.to_table(slices.LABELLED_DATASET, rows)
    plain = slices.to_table(slices.LABELLED_DATASET, _labelled_rows())
    assert slices.table_fingerprint(table) != slices.table_fingerprint(plain)


def test_the_fingerprint_tells_list_boundaries_and_null_elements_apart():
    def fp(values):
        rows = _labelled_rows(2)
        for row, v in zip(rows, values, strict=True):
            row["logged_user_values"] = v
        return slices.table_fingerprint(slices.to_table(slices.LABELLED_DATASET, rows))

    assert fp([[1.0, 2.0], [3.0]]) != fp([[1.0], [2.0, 3.0]])
    assert fp([[1.0, None], [3.0]]) != fp([[1.0, 0.0], [3.0]])
    assert fp([None, [3.0]]) != fp([[], [3.0]])
    table = slices.to_table(slices.LABELLED_DATASET, [
        {**r, "logged_user_values": [float(i), 1.5]} for i, r in enumerate(_labelled_rows(4))])
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=1))
    assert slices.table_fingerprint(rechunked) == slices.table_fingerprint(table)


def test_a_jvm_labelled_chunk_with_logged_vectors_reads_with_null_elements():
    row = {**_labelled_rows(1)[0], **slices.logged_columns(_log("r0"), 0, 5, "a")}
    line = json.dumps({k: v for k, v in row.items()}).encode()
    table = slices.read_chunk(slices.LABELLED_DATASET, line + b"\n")
    assert table["logged_user_values"].to_pylist() == [[1.0, None]]
    assert table["logged_item_feature_time"].cast(pa.int64()).to_pylist() == [7]
