"""The offline feature log's chunk layout (written by the JVM's FeatureLogBuffer) and files."""

from __future__ import annotations

import struct
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from feature_repo import names
from jobs.errors import SinkError
from jobs.sinks import feature_log


def _text(name: str, values: list[str]) -> bytes:
    data = [v.encode() for v in values]
    offsets = [0]
    for d in data:
        offsets.append(offsets[-1] + len(d))
    return (struct.pack("<h", len(name)) + name.encode() + b"S"
            + struct.pack(f"<{len(offsets)}i", *offsets) + struct.pack("<i", offsets[-1])
            + b"".join(data))


def _fixed(name: str, kind: str, values: list[float]) -> bytes:
    fmt = "q" if kind == "L" else "d"
    return (struct.pack("<h", len(name)) + name.encode() + kind.encode()
            + struct.pack(f"<{len(values)}{fmt}", *values))


def user_chunk(rows: int = 2) -> bytes:
    columns = [_text("entity_id", [f"u{i}" for i in range(rows)]),
               _fixed("event_ms", "L", [1_700_000_000_000 + i for i in range(rows)])]
    for feature in names.USER_FEATURES:
        if feature == "user_last_clicked":
            columns.append(_text(feature, ["a,b", ""][:rows]))
        elif "revenue" in feature:
            columns.append(_fixed(feature, "D", [1.5] * rows))
        else:
            columns.append(_fixed(feature, "L", [3] * rows))
    return struct.pack("<iii", 1, rows, len(columns)) + b"".join(columns)


def test_a_chunk_becomes_feast_columns(tmp_path: Path) -> None:
    stats = feature_log.write_chunk(tmp_path, names.USER_ACTIVITY, "2026-01-01T10", 0,
                                    user_chunk())
    table = pq.read_table(tmp_path / names.USER_ACTIVITY / stats["file"])
    assert table.column_names == [names.USER_KEY, *names.USER_FEATURES, names.TIMESTAMP_FIELD]
    assert table[names.USER_KEY].to_pylist() == ["u0", "u1"]
    assert table["user_last_clicked"].to_pylist() == ["a,b", ""]
    assert table["user_revenue_1h"].to_pylist() == [1.5, 1.5]
    assert stats["rows"] == 2 and stats["written"]
    assert stats["event_time_min"] == 1_700_000_000_000


def test_the_same_chunk_again_is_not_written_twice(tmp_path: Path) -> None:
    first = feature_log.write_chunk(tmp_path, names.USER_ACTIVITY, "h", 0, user_chunk())
    again = feature_log.write_chunk(tmp_path, names.USER_ACTIVITY, "h", 0, user_chunk())
    assert again["file"] == first["file"] and not again["written"]
    assert len(list((tmp_path / names.USER_ACTIVITY).glob("*.parquet"))) == 1


@pytest.mark.parametrize(("data", "message"), [
    (user_chunk()[:-3], "chunk ends early"),
    (user_chunk() + b"x", "after the last column"),
    (struct.pack("<iii", 2, 0, 0), "version 2"),
])
def test_a_malformed_chunk_is_a_clear_error(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(SinkError, match=message):
        feature_log.write_chunk(tmp_path, names.USER_ACTIVITY, "h", 0, data)


def test_a_chunk_of_the_wrong_view_names_the_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="missing for view item_performance"):
        feature_log.write_chunk(tmp_path, names.ITEM_PERFORMANCE, "h", 0, user_chunk())
