"""Serving's raw Redis reads (models/serving/online.py) against Feast's own lookup on a real
Redis online store: the same matrix, cached or not.

One deliberate difference: an entity Redis has never seen. Feast's Redis path answers it as
PRESENT empty values, which features.online then reads as 0.0; the raw read gives NaN (no
value), as Feast's SQLite path and training's point-in-time retrieval do — a never-seen item
is not an item with a 0 % click rate."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from feast import FeatureStore

from bench import synthetic
from feature_repo.store import FeastConfig, feature_store
from infra.redis_server import RedisEndpoint
from loopline.paths import PathsConfig
from models import features
from models.serving.online import OnlineFeatures
from tests.unit.models.conftest import START_MS, loopline_home

pytestmark = pytest.mark.integration


USER_COLS = [j for j, c in enumerate(features.COLUMNS) if c.startswith("user_")]
ITEM_COLS = [j for j, c in enumerate(features.COLUMNS) if c.startswith("item_")]
LAST_MS = START_MS + 2 * synthetic.HOUR_MS


def _store(redis: RedisEndpoint, paths: PathsConfig, n_items: int, seed: int
           ) -> tuple[FeatureStore, synthetic.World]:
    """A Redis Feast store with a synthetic world's newest feature rows written."""
    world = synthetic.make_world(n_items=n_items, seed=seed)
    frames = synthetic.feature_frames(world, START_MS, 2, seed=seed + 1)
    feast = FeastConfig(online_store="redis", redis_connection_string=redis.connection_string,
                        project=f"serving_{uuid.uuid4().hex[:8]}")
    store = feature_store(feast, paths, apply=True)
    for view, frame in synthetic.latest_rows(frames).items():
        store.write_to_online_store(view, frame)
    return store, world


def test_raw_redis_reads_equal_feasts_lookup(redis: RedisEndpoint, tmp_path: Path) -> None:
    with loopline_home(tmp_path) as paths:
        store, world = _store(redis, paths, 60, 3)
        known_users, items = list(world.users[:5]), [*world.items[:50], "never-seen-item"]
        for cache in (False, True):
            online = OnlineFeatures(store, refresh_ms=50, max_age_ms=200, cache=cache)
            try:
                for _ in range(2):  # the second round: item rows from the cache
                    for user in known_users:
                        expected = features.online(store, user, items)
                        got = online.matrix(user, items)
                        assert not np.isnan(expected[:50]).all()
                        np.testing.assert_allclose(got[:50], expected[:50], rtol=1e-12,
                                                   equal_nan=True)
                        assert np.isnan(got[50, ITEM_COLS]).all()  # never seen: no value
                        np.testing.assert_allclose(got[50, USER_COLS], expected[50, USER_COLS])
                        # each row's event time, for the feature log's staleness: the
                        # newest write (2 h after START_MS), the same on both read paths
                        rows, feast_rows = online.rows(user, items), \
                            features.online_rows(store, user, items)
                        assert rows.user_time_ms == feast_rows.user_time_ms == LAST_MS
                        assert (rows.item_time_ms[:50] == LAST_MS).all()
                        assert (feast_rows.item_time_ms[:50] == LAST_MS).all()
                        assert np.isnan(rows.item_time_ms[50])
                    got = online.matrix("never-seen-user", items)
                    assert np.isnan(got[:, USER_COLS]).all()
                    np.testing.assert_allclose(got[:50, ITEM_COLS], expected[:50, ITEM_COLS],
                                               rtol=1e-12, equal_nan=True)
            finally:
                online.close()


def test_an_error_reply_mid_read_leaves_no_reply_behind(redis: RedisEndpoint,
                                                        tmp_path: Path) -> None:
    """The raw read writes many HMGETs at once and reads one reply each: when one of them
    fails (here: WRONGTYPE, a key that is not a hash) the read raises, and the next read on
    the same reader gets its own replies, not the unread rest of the failed one's."""
    import redis as redis_client
    from feast.infra.online_stores.redis import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from feature_repo import names

    with loopline_home(tmp_path) as paths:
        store, world = _store(redis, paths, 20, 5)
        key = _redis_key(store.config.project, EntityKey(
            join_keys=[names.KEY_BY_VIEW[names.ITEM_PERFORMANCE]],
            entity_values=[Value(string_val="poison")]),
            entity_key_serialization_version=store.config.entity_key_serialization_version)
        client = redis_client.Redis(host=redis.host, port=redis.port)
        client.set(key, b"not a hash")
        client.close()
        items = list(world.items[:10])
        online = OnlineFeatures(store, cache=False)
        try:
            expected = online.reader.read(names.ITEM_PERFORMANCE, items)
            with pytest.raises(redis_client.ResponseError, match="WRONGTYPE"):
                online.reader.read(names.ITEM_PERFORMANCE, [*items[:5], "poison", *items[5:]])
            for _ in range(2):
                np.testing.assert_array_equal(
                    online.reader.read(names.ITEM_PERFORMANCE, items), expected)
            assert not np.isnan(expected).all()
        finally:
            online.close()
