"""Newest event time wins in the real Feast SQLite online store (no services needed)."""

from datetime import UTC, datetime, timedelta

import pandas as pd

from feature_repo import names
from feature_repo.store import FeastConfig, feature_store
from loopline.paths import PathsConfig

T = datetime(2026, 1, 1, 10, tzinfo=UTC)


def _frame(rows):
    frame = pd.DataFrame([{names.USER_KEY: u, names.TIMESTAMP_FIELD: ts,
                           **{f: (str(v) if f == "user_last_clicked" else v)
                              for f in names.USER_FEATURES}} for u, ts, v in rows])
    for f in names.USER_FEATURES:
        if "revenue" in f:
            frame[f] = frame[f].astype(float)
    return frame


def test_older_write_never_replaces_newer_even_within_one_second(tmp_path):
    store = feature_store(FeastConfig(), PathsConfig(home=tmp_path), apply=True)
    newer, older = T + timedelta(milliseconds=900), T + timedelta(milliseconds=100)
    store.write_to_online_store(names.USER_ACTIVITY, _frame([("u1", newer, 7), ("u2", older, 1)]))
    store.write_to_online_store(names.USER_ACTIVITY, _frame([("u1", older, 3), ("u2", newer, 2)]))
    store.write_to_online_store(names.USER_ACTIVITY, _frame([("u1", newer, 7)]))  # replay
    got = store.get_online_features(
        features=[f"{names.USER_ACTIVITY}:user_clicks_1h"],
        entity_rows=[{"user_id": "u1"}, {"user_id": "u2"}],
    ).to_dict()
    assert got["user_clicks_1h"] == [7, 2]
