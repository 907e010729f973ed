"""The Feast writer's protos equal Feast's own DataFrame path, and land in the real SQLite store."""

from __future__ import annotations

from typing import Any, NamedTuple

import pandas as pd
import pytest
from feast.infra.passthrough_provider import PassthroughProvider
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from feature_repo import names
from feature_repo.online_stores import epoch_ms
from feature_repo.store import FeastConfig, feature_store
from jobs.errors import SinkError
from jobs.sinks.feast_writer import FeastWriter, online_data
from loopline.paths import PathsConfig
from tests.unit.jobs.writer.records import T0, values

U, ITEM = names.USER_ACTIVITY, names.ITEM_PERFORMANCE


class Row(NamedTuple):
    entity_id: str
    event_ms: int
    values: dict[str, Any]


def _feast_frame(view: str, rows: list[Row]) -> pd.DataFrame:
    """The frame the writer handed to write_to_online_store before it built protos itself."""
    frame = pd.DataFrame([r.values for r in rows], columns=list(names.FEATURES_BY_VIEW[view]))
    frame.insert(0, names.KEY_BY_VIEW[view], [r.entity_id for r in rows])
    frame[names.TIMESTAMP_FIELD] = pd.to_datetime([r.event_ms for r in rows], unit="ms",
                                                  utc=True)
    return frame


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return feature_store(FeastConfig(), PathsConfig(home=tmp_path_factory.mktemp("home")),
                         apply=True)


@pytest.mark.parametrize("view", [U, ITEM])
def test_protos_equal_feasts_own_conversion_of_a_frame(store: Any, view: str) -> None:
    rows = [Row(f"e{n}", T0 + 7 * n + 1, values(view, n)) for n in range(1, 6)]
    rows[1].values[names.FEATURES_BY_VIEW[view][-1]] = None  # a feature with no value yet
    rows[2].values[names.FEATURES_BY_VIEW[view][0]] = 0
    if view == ITEM:
        rows[3].values["item_ctr_1h"] = 2  # a long arriving for a double feature
    feature_view = store.get_feature_view(view)
    ours = online_data(feature_view, rows)
    feasts = PassthroughProvider._prep_rows_to_write_for_ingestion(
        feature_view, _feast_frame(view, rows))
    assert len(ours) == len(feasts) == len(rows)
    for (key, protos, ts, created), (f_key, f_protos, f_ts, f_created) in zip(ours, feasts,
                                                                               strict=True):
        assert key == f_key
        assert protos == f_protos
        assert epoch_ms(ts) == epoch_ms(f_ts)
        assert created is f_created is None


def test_a_long_feature_without_a_value_is_unset(store: Any) -> None:
    row = Row("u1", T0, {**values(U), "user_clicks_1h": None})
    [(_, protos, _, _)] = online_data(store.get_feature_view(U), [row])
    assert protos["user_clicks_1h"] == ValueProto()
    assert protos["user_impressions_1h"] == ValueProto(int64_val=1)


def test_written_rows_read_back_and_an_older_replay_loses(tmp_path: Any) -> None:
    writer = FeastWriter(FeastConfig(), PathsConfig(home=tmp_path))
    feature_store(FeastConfig(), PathsConfig(home=tmp_path), apply=True)
    writer.write_online(U, [Row("u1", T0 + 900, values(U, 7)), Row("u2", T0 + 100, values(U, 1))])
    writer.write_online(U, [Row("u1", T0 + 100, values(U, 3)), Row("u2", T0 + 900, values(U, 2))])
    got = writer.store.get_online_features(
        features=[f"{U}:user_clicks_1h", f"{U}:user_revenue_24h", f"{U}:user_last_clicked"],
        entity_rows=[{"user_id": "u1"}, {"user_id": "u2"}, {"user_id": "u3"}],
    ).to_dict()
    assert got["user_clicks_1h"] == [7, 2, None]
    assert got["user_revenue_24h"] == [0.7, 0.2, None]
    assert got["user_last_clicked"] == ["i7", "i2", None]


def test_an_unknown_view_is_a_sink_error(tmp_path: Any) -> None:
    writer = FeastWriter(FeastConfig(), PathsConfig(home=tmp_path))
    feature_store(FeastConfig(), PathsConfig(home=tmp_path), apply=True)
    with pytest.raises(SinkError, match="expected a feature view 'no_such_view'"):
        writer.write_online("no_such_view", [Row("u1", T0, values(U))])
