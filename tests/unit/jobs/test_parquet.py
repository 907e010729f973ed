"""The job's Parquet options change encodings only: files read back as the same table."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from feature_repo import names
from jobs.sinks import feature_log, parquet
from jobs.transforms import slices
from tests.unit.jobs.test_feature_log import user_chunk
from tests.unit.jobs.test_slices import JVM_CHUNK


def test_doubles_and_times_are_not_dictionary_encoded() -> None:
    chosen = parquet.dictionary_columns(slices.LABELLED_SCHEMA)
    assert "request_id" in chosen and "position" in chosen and "clicked" in chosen
    assert not {"score", "propensity", "revenue", "served_at"} & set(chosen)


def test_files_read_back_as_the_same_table_and_fingerprint(tmp_path: Path) -> None:
    for name, table in (("slice", slices.read_chunk(slices.UNMATCHED_DATASET, JVM_CHUNK)),
                        ("log", feature_log.table(names.USER_ACTIVITY, user_chunk(2)))):
        parquet.write_table(table, tmp_path / f"{name}.parquet")
        back = pq.read_table(tmp_path / f"{name}.parquet")
        assert back.schema.equals(table.schema) and back.equals(table)
        assert slices.table_fingerprint(back) == slices.table_fingerprint(table)
    column = pq.ParquetFile(tmp_path / "slice.parquet").metadata.row_group(0)
    encodings = {column.column(i).path_in_schema: column.column(i).encodings
                 for i in range(column.num_columns)}
    assert any("DICTIONARY" in e for e in encodings["event_id"])
    assert not any("DICTIONARY" in e for e in encodings["revenue"])
    assert pa.types.is_timestamp(back.schema.field(names.TIMESTAMP_FIELD).type)
