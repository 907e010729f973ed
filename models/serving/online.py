"""Online features for serving: raw store reads plus an in-process item-feature cache.

Why not `features.online` (Feast's get_online_features) on every request: for 100 candidates
it costs ~10-14 ms of CPU per call building Feast's response, against well under a
millisecond for the same rows read with the store's own client. And item features are shared
by every user, so they need not be read per request at all.

* User row: read on every request (one Redis HMGET / one SQLite SELECT).
* Item rows: served from a cache that a background thread refreshes from the store every
  `item_refresh_ms`; a row older than `item_max_age_ms` (the refresher fell behind) or never
  seen is read on the request itself. So a served item feature is never older than
  item_max_age_ms, and the age actually served is measured (`max_item_age_s`).

The result is the same matrix `features.online` builds (columns in features.COLUMNS order,
NaN = missing); tests/unit/models/test_serving_online.py and the Redis integration test
compare the two on real stores. Values are read from the layouts Feast 0.67 writes (the
newest-wins stores in feature_repo/online_stores.py inherit them).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Container, Sequence

import numpy as np
import redis
from feast import FeatureStore
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.redis import _mmh3, _redis_key
from feast.infra.online_stores.sqlite import _table_id
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from google.protobuf.timestamp_pb2 import Timestamp

from feature_repo import names
from models import features

log = logging.getLogger(__name__)

_USER, _ITEM = names.USER_ACTIVITY, names.ITEM_PERFORMANCE
# Column positions of each view's features in the model's matrix (features.COLUMNS order).
_VIEW_COLUMNS: dict[str, list[tuple[str, int]]] = {
    view: [(ref.split(":", 1)[1], j) for j, ref in enumerate(features.FEATURE_REFS)
           if ref.startswith(f"{view}:")]
    for view in (_USER, _ITEM)
}


def _number(raw: bytes | None) -> float:
    """A stored Value proto as a float; NaN when absent or null (what features.online does)."""
    if not raw:
        return np.nan
    value = Value.FromString(raw)
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return np.nan
    return float(getattr(value, kind))


def _stamp_ms(raw: bytes | None) -> float:
    """Redis' `_ts:<view>` field (a Timestamp proto) as epoch ms; NaN when absent."""
    if not raw:
        return np.nan
    stamp = Timestamp.FromString(raw)
    return float(stamp.seconds * 1000 + stamp.nanos // 1_000_000)


class RawReader:
    """Reads one view's feature values for many entities with the online store's own client."""

    def __init__(self, store: FeatureStore) -> None:
        self.config = store.config
        self.project = store.config.project
        self.version = store.config.entity_key_serialization_version
        self.kind = type(store.config.online_store).__name__.lower()
        online = store._get_provider().online_store  # the store's own client
        self._memo: dict[str, dict[str, bytes]] = {view: {} for view in _VIEW_COLUMNS}
        self._plain = False
        if "redis" in self.kind:
            self.client = online._get_client(store.config.online_store)  # type: ignore[attr-defined]
            self._plain = type(self.client) is redis.Redis  # one server, not a cluster
            # the view's row event time last: the logged staleness of a served value
            self.fields = {view: [*(_mmh3(f"{view}:{name}") for name, _ in cols),
                                  f"_ts:{view}".encode()]
                           for view, cols in _VIEW_COLUMNS.items()}
        elif "sqlite" in self.kind:
            self.path = store.config.online_store.path
            views = {v.name: v for v in store.list_feature_views()}
            self.tables = {view: _table_id(self.project, views[view]) for view in _VIEW_COLUMNS}
            self._local = threading.local()
            self._time_sql: dict[str, str] = {}
        else:
            raise TypeError(f"no raw reader for online store {self.kind}")

    def read(self, view: str, entities: Sequence[str]) -> np.ndarray:
        """(len(entities), features of `view`) floats, NaN where missing."""
        return decode(self.read_raw(view, entities), len(_VIEW_COLUMNS[view]))

    def read_raw(self, view: str, entities: Sequence[str]) -> list[tuple[bytes | None, ...]]:
        """The stored Value protos of each entity's features (None where absent), undecoded:
        the cache compares these bytes and decodes only rows that changed."""
        return self.read_timed(view, entities)[0]

    def read_timed(self, view: str, entities: Sequence[str], remember: bool = False
                   ) -> tuple[list[tuple[bytes | None, ...]], np.ndarray]:
        """read_raw's rows and each entity row's event time in epoch ms (NaN = no row).
        `remember`: keep each entity's encoded request for the next read (the item cache
        reads the same entities every refresh; users are too many to keep)."""
        memo = self._memo[view] if remember else {}
        requests = []
        for entity in entities:
            request = memo.get(entity)
            if request is None:
                request = memo[entity] = self._request(view, entity)
            requests.append(request)
        if "redis" in self.kind:
            return self._redis(view, requests)
        return self._sqlite(view, requests)

    def forget(self, view: str, keep: Container[str]) -> None:
        """Drop the remembered requests of entities not in `keep` (the cache evicted them)."""
        memo = self._memo[view]
        self._memo[view] = {e: r for e, r in memo.items() if e in keep}

    def _request(self, view: str, entity: str) -> bytes:
        """What is sent for one entity: its HMGET, packed (a plain Redis client), its Redis
        key (a cluster: redis-py's pipeline routes by key) or its SQLite entity key."""
        proto = EntityKey(join_keys=[names.KEY_BY_VIEW[view]],
                          entity_values=[Value(string_val=entity)])
        if "redis" not in self.kind:
            return serialize_entity_key(proto, entity_key_serialization_version=self.version)
        key = _redis_key(self.project, proto, entity_key_serialization_version=self.version)
        return _resp(b"HMGET", key, *self.fields[view]) if self._plain else key

    def _redis(self, view: str, requests: list[bytes]
               ) -> tuple[list[tuple[bytes | None, ...]], np.ndarray]:
        if self._plain:
            rows = self._exchange(requests)
        else:
            pipe = self.client.pipeline(transaction=False)
            for key in requests:
                pipe.hmget(key, self.fields[view])
            rows = pipe.execute()
        return ([tuple(row[:-1]) for row in rows],
                np.array([_stamp_ms(row[-1]) for row in rows], dtype=float))

    def _exchange(self, packed: list[bytes]) -> list[list[bytes | None]]:
        """What a redis-py pipeline (transaction=False) of these HMGETs does, without its
        per-command Python (~10 µs a command: most of an item refresh's CPU): one write of
        the packed commands, one reply read per command, the client's retry policy, and a
        connection in doubt is closed rather than returned with replies still unread."""
        pool = self.client.connection_pool
        conn = pool.get_connection()

        def exchange() -> list[list[bytes | None]]:
            conn.send_packed_command([b"".join(packed)])
            return [conn.read_response() for _ in packed]

        def failed(error: Exception) -> None:
            conn.disconnect()
            if conn.retry_on_error is None or not isinstance(error,
                                                             tuple(conn.retry_on_error)):
                raise error

        try:
            rows: list[list[bytes | None]] = conn.retry.call_with_retry(exchange, failed)
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
        return rows

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                   check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=5000")
            self._local.conn = conn
        return conn

    def _time_column(self, view: str) -> str:
        """The row's event time in ms: the newest-wins store's `event_ts_ms` column, else
        Feast's own `event_ts` (whole seconds) converted."""
        if view not in self._time_sql:
            table = self.tables[view]
            cols = {r[1] for r in self._conn().execute(f'PRAGMA table_info("{table}")')}
            self._time_sql[view] = ("event_ts_ms" if "event_ts_ms" in cols else
                                    "CAST(strftime('%s', event_ts) AS INTEGER) * 1000")
        return self._time_sql[view]

    def _sqlite(self, view: str, keys: list[bytes]
                ) -> tuple[list[tuple[bytes | None, ...]], np.ndarray]:
        columns = {name: j for j, (name, _) in enumerate(_VIEW_COLUMNS[view])}
        out: list[list[bytes | None]] = [[None] * len(columns) for _ in keys]
        times = np.full(len(keys), np.nan)
        where = {k: i for i, k in enumerate(keys)}
        sql = (f"SELECT entity_key, feature_name, value, {self._time_column(view)} "
               f'FROM "{self.tables[view]}" '
               f"WHERE entity_key IN ({','.join('?' * len(keys))})")
        for key, name, raw, ms in self._conn().execute(sql, keys):
            j = columns.get(name)
            if j is not None:
                i = where[key]
                out[i][j] = raw
                if ms is not None:  # one write sets every feature of the row: one time
                    times[i] = float(ms)
        return [tuple(row) for row in out], times


def _resp(*parts: bytes) -> bytes:
    """One Redis command in the RESP wire format (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out += [b"$%d\r\n" % len(part), part, b"\r\n"]
    return b"".join(out)


def decode(rows: list[tuple[bytes | None, ...]], width: int) -> np.ndarray:
    """Stored Value protos → (len(rows), width) floats, NaN where absent or null."""
    return np.array([[_number(v) for v in row] for row in rows], dtype=float).reshape(
        len(rows), width)


class OnlineFeatures:
    """features.online's matrix, from raw reads and the item cache (thread-safe)."""

    def __init__(self, store: FeatureStore, refresh_ms: int = 250, max_age_ms: int = 1000,
                 capacity: int = 200_000, cache: bool = True) -> None:
        self.reader = RawReader(store)
        self.refresh_s, self.max_age_s = refresh_ms / 1000, max_age_ms / 1000
        self.capacity, self.cache = capacity, cache
        # item -> (feature row, monotonic time read, stored bytes, row event time ms); replaced
        # whole, so readers never see half a row. `_used` remembers when an item was last
        # asked for (eviction).
        self._items: dict[str, tuple[np.ndarray, float, tuple[bytes | None, ...], float]] = {}
        self._used: dict[str, float] = {}
        self.max_item_age_s = 0.0  # oldest cached row served since the last refresh
        self.refresh_error: str | None = None
        self._stop = threading.Event()
        self._n_user, self._n_item = len(_VIEW_COLUMNS[_USER]), len(_VIEW_COLUMNS[_ITEM])
        self._user_cols = [j for _, j in _VIEW_COLUMNS[_USER]]
        self._item_cols = [j for _, j in _VIEW_COLUMNS[_ITEM]]
        self._thread: threading.Thread | None = None
        if cache:
            self._thread = threading.Thread(target=self._refresh_loop, name="item-features",
                                            daemon=True)
            self._thread.start()

    def matrix(self, user_id: str, items: Sequence[str]) -> np.ndarray:
        """(len(items), len(features.COLUMNS)) floats of the newest online values, NaN = missing."""
        return self.rows(user_id, items).matrix

    def rows(self, user_id: str, items: Sequence[str]) -> features.OnlineRows:
        """matrix() plus the event time of the user row and of each item row served."""
        out = np.empty((len(items), len(features.COLUMNS)))
        raw, user_times = self.reader.read_timed(_USER, [user_id])
        out[:, self._user_cols] = decode(raw, self._n_user)[0]
        item_rows, item_times = self._item_rows(items)
        out[:, self._item_cols] = item_rows
        return features.OnlineRows(out, float(user_times[0]), item_times)

    def _item_rows(self, items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if not self.cache:
            raw, times = self.reader.read_timed(_ITEM, items)
            return decode(raw, self._n_item), times
        now = time.monotonic()
        rows = np.empty((len(items), self._n_item))
        times = np.empty(len(items))
        stale: list[int] = []
        oldest = 0.0
        cached, used = self._items, self._used
        for i, item in enumerate(items):
            hit = cached.get(item)
            used[item] = now
            if hit is None or now - hit[1] > self.max_age_s:
                stale.append(i)
            else:
                rows[i] = hit[0]
                times[i] = hit[3]
                oldest = max(oldest, now - hit[1])
        if stale:
            raw, stamps = self.reader.read_timed(_ITEM, [items[i] for i in stale],
                                                 remember=True)
            fresh = decode(raw, self._n_item)
            for i, row, stored, ms in zip(stale, fresh, raw, stamps, strict=True):
                rows[i] = row
                times[i] = ms
                cached[items[i]] = (row, now, stored, float(ms))
        self.max_item_age_s = max(self.max_item_age_s, oldest)
        return rows, times

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
                self.refresh_error = None
            except Exception as exc:  # a failing store: requests read inline and fall back
                self.refresh_error = f"{type(exc).__name__}: {exc}"
                log.warning("item feature refresh failed: %s", self.refresh_error)

    def refresh(self) -> None:
        """Re-read every cached item (evicting the least recently used beyond capacity);
        only rows whose stored bytes changed are decoded again (most do not, and decoding
        is most of a refresh's CPU)."""
        if len(self._used) > self.capacity:
            keep = sorted(self._used.items(), key=lambda kv: kv[1])[-self.capacity:]
            self._used = dict(keep)
            self._items = {k: v for k, v in self._items.items() if k in self._used}
            self.reader.forget(_ITEM, self._used)
        items = list(self._items)
        self.max_item_age_s = 0.0
        if not items:
            return
        started = time.monotonic()
        for start in range(0, len(items), 2_000):
            chunk = items[start:start + 2_000]
            raw, stamps = self.reader.read_timed(_ITEM, chunk, remember=True)
            for item, stored, ms in zip(chunk, raw, stamps, strict=True):
                old = self._items.get(item)
                row = old[0] if old is not None and old[2] == stored else \
                    decode([stored], self._n_item)[0]
                self._items[item] = (row, started, stored, float(ms))

    @property
    def cached_items(self) -> int:
        return len(self._items)

    def close(self) -> None:
        self._stop.set()
