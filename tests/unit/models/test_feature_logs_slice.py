"""Training rows from the logged vectors the feedback job joined into a slice: checked as a
FeatureLog record is (service version, vector lengths), counted, never raised."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from feature_repo import names
from jobs.transforms import slices as contract
from models import feature_logs, features

N_USER = len(features.VIEW_COLUMNS[names.USER_ACTIVITY])
N_ITEM = len(features.VIEW_COLUMNS[names.ITEM_PERFORMANCE])


def _row(rid: str, item: str, offset: int | None, version: str = features.SERVICE_VERSION,
         n_user: int = N_USER, n_item: int = N_ITEM) -> dict[str, Any]:
    row: dict[str, Any] = {"request_id": rid, "item_id": item, "served_at": 1_767_261_600_000,
                           "clicked": False, "position": 0}
    if offset is not None:
        log = {"feature_service_version": version, "sample_rate": 1.0,
               "user": {"entity_id": "u", "feature_time": 5,
                        "values": [float(k) for k in range(n_user)]},
               "items": [{"entity_id": item, "feature_time": None,
                          "values": [math.nan] + [100.0 + k for k in range(1, n_item)]}]}
        row.update(contract.logged_columns(log, 1, offset, item))
    return row


def _read(rows: list[dict[str, Any]]) -> feature_logs.SliceVectors:
    table = contract.to_table(contract.LABELLED_DATASET, rows)
    return feature_logs.from_slice(table.to_pandas())


def test_vectors_become_the_models_columns_with_nan_for_missing_values() -> None:
    read = _read([_row("r1", "a", 7), _row("r2", "b", 9)])
    assert len(read.frame) == 2 and read.without_log == 0 and not read.malformed
    user = features.VIEW_COLUMNS[names.USER_ACTIVITY]
    item = features.VIEW_COLUMNS[names.ITEM_PERFORMANCE]
    first = read.frame.iloc[0]
    assert [first[c] for c in user] == [float(k) for k in range(N_USER)]
    assert math.isnan(first[item[0]]) and first[item[1]] == 101.0
    assert set(features.COLUMNS) <= set(read.frame.columns)
    assert not set(contract.LOGGED_COLUMNS) & set(read.frame.columns)
    assert read.offsets == {"1": [7, 9]}


def test_rows_without_a_log_or_with_foreign_vectors_are_left_out_and_counted() -> None:
    read = _read([
        _row("r1", "a", 1),
        _row("r2", "a", None),                    # served without a log
        _row("r3", "a", 3, version="sha256:old"),  # another feature service version
        _row("r4", "a", 4, n_user=N_USER - 1),     # a short user vector
        _row("r5", "a", 5, n_item=N_ITEM + 1),     # a long item vector
    ])
    assert list(read.frame["request_id"]) == ["r1"]
    assert read.without_log == 1
    assert sum(read.malformed.values()) == 3
    assert read.malformed[f"feature service version 'sha256:old', expected "
                         f"{features.SERVICE_VERSION}"] == 1
    assert np.isfinite(read.frame[list(features.VIEW_COLUMNS[names.USER_ACTIVITY])]).all().all()


def test_an_item_the_log_does_not_list_has_no_vector() -> None:
    row = _row("r1", "a", 1)
    row.update({"item_id": "zzz", "logged_item_values": None})
    read = _read([row])
    assert read.frame.empty and read.without_log == 1


def test_a_slice_read_without_the_logged_columns_has_no_vectors() -> None:
    frame = contract.to_table(contract.LABELLED_DATASET, [_row("r1", "a", None)]).to_pandas()
    read = feature_logs.from_slice(frame.drop(columns=list(contract.LOGGED_COLUMNS)))
    assert read.frame.empty and read.without_log == 1
