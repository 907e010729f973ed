"""Feast online stores where the newest event time wins, atomically, at millisecond precision.

Feast's SQLite store upserts unconditionally (an older row replayed after a restart overwrites
a newer one) and stores event_ts in whole seconds; its Redis store compares timestamps in a
separate read before the write, so two concurrent writers race. These subclasses make the
comparison part of the write itself: a conditional UPSERT in SQLite, a Lua script in Redis.
Reads are inherited unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Literal

from feast import FeatureView, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.redis import (
    RedisOnlineStore,
    RedisOnlineStoreConfig,
    _mmh3,
    _redis_key,
    _versioned_fv_name,
)
from feast.infra.online_stores.sqlite import (
    SqliteOnlineStore,
    SqliteOnlineStoreConfig,
    _quote_id,
    _table_id,
    adapt_datetime_epoch,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp

Row = tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]

_MS_COLUMN = "event_ts_ms"


def epoch_ms(ts: datetime) -> int:
    """Milliseconds since the epoch; naive datetimes are taken as UTC (Feast's convention)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1000)


class NewestWinsSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """SQLite online store config; `type` selects NewestWinsSqliteOnlineStore."""

    type: Literal["feature_repo.online_stores.NewestWinsSqliteOnlineStore"] = (
        "feature_repo.online_stores.NewestWinsSqliteOnlineStore"  # type: ignore[assignment]
    )


class NewestWinsSqliteOnlineStore(SqliteOnlineStore):
    """SQLite online store whose upsert only replaces a value with one at least as new."""

    _ms_ready: set[str] | None = None

    def _get_conn(self, config: RepoConfig) -> sqlite3.Connection:
        first = self._conn is None
        conn: sqlite3.Connection = super()._get_conn(config)
        if first:
            # WAL lets serving read while the job writes; the timeout absorbs writer contention.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _ensure_ms_column(self, conn: sqlite3.Connection, table_name: str) -> None:
        if self._ms_ready is None:
            self._ms_ready = set()
        if table_name in self._ms_ready:
            return
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({_quote_id(table_name)})")}
        if _MS_COLUMN not in columns:
            try:
                with conn:
                    conn.execute(
                        f"ALTER TABLE {_quote_id(table_name)} ADD COLUMN {_MS_COLUMN} INTEGER"
                    )
            except sqlite3.OperationalError as exc:
                # Another writer (process) added it between our check and our ALTER: fine.
                if "duplicate column name" not in str(exc):
                    raise
        self._ms_ready.add(table_name)

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: Sequence[Row],
        progress: Callable[[int], Any] | None,
    ) -> None:
        conn = self._get_conn(config)
        table_name = _table_id(
            config.project, table, config.registry.enable_online_feature_view_versioning
        )
        self._ensure_ms_column(conn, table_name)
        quoted = _quote_id(table_name)
        # The WHERE on DO UPDATE is the whole point: an older event never replaces a newer one.
        sql = (
            f"INSERT INTO {quoted} (entity_key, feature_name, value, event_ts, created_ts, "
            f"{_MS_COLUMN}) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
            "event_ts = excluded.event_ts, created_ts = excluded.created_ts, "
            f"{_MS_COLUMN} = excluded.{_MS_COLUMN} "
            f"WHERE excluded.{_MS_COLUMN} >= COALESCE({quoted}.{_MS_COLUMN}, 0)"
        )
        rows = []
        version = config.entity_key_serialization_version
        for entity_key, values, timestamp, created_ts in data:
            key_bin = serialize_entity_key(entity_key, entity_key_serialization_version=version)
            ms = epoch_ms(timestamp)
            # event_ts as Feast's own datetime adapter stores it, once per entity rather than
            # once per feature row (the adapter ran ~13 times per entity).
            event_ts = adapt_datetime_epoch(
                datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None))
            created = created_ts.replace(tzinfo=None) if created_ts is not None else None
            for feature_name, value in values.items():
                rows.append(
                    (key_bin, feature_name, value.SerializeToString(), event_ts, created, ms)
                )
        # In primary-key order: neighbouring upserts touch the same B-tree pages (measured
        # ~15 % less CPU in executemany on a 50 K-entity table). Stable, so of two rows for
        # one key the later still comes later, and wins a tie, as unsorted.
        rows.sort(key=itemgetter(0, 1))
        with conn:
            conn.executemany(sql, rows)
        if progress:
            progress(len(data))


# KEYS[1] entity hash; ARGV: ms field, new ms, Feast's _ts field, its proto, then field/value
# pairs. Comparison and write happen inside Redis, so concurrent writers cannot interleave.
_REDIS_NEWEST_WINS = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and tonumber(current) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], unpack(ARGV, 5))
return 1
"""


class NewestWinsRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    """Redis online store config; `type` selects NewestWinsRedisOnlineStore."""

    type: Literal["feature_repo.online_stores.NewestWinsRedisOnlineStore"] = (
        "feature_repo.online_stores.NewestWinsRedisOnlineStore"  # type: ignore[assignment]
    )


class NewestWinsRedisOnlineStore(RedisOnlineStore):
    """Redis online store whose write is a compare-and-set on a millisecond timestamp."""

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: Sequence[Row],
        progress: Callable[[int], Any] | None,
    ) -> None:
        store_config = config.online_store
        client = self._get_client(store_config)
        script = client.register_script(_REDIS_NEWEST_WINS)
        view = _versioned_fv_name(table, config)
        ms_field = f"_ts_ms:{view}"
        ts_field = f"_ts:{view}"
        # Feast's hash field per feature, once per batch rather than once per entity row.
        fields = {f.name: _mmh3(f"{view}:{f.name}") for f in table.features}
        with client.pipeline(transaction=False) as pipe:
            for entity_key, values, timestamp, _ in data:
                key = _redis_key(
                    config.project,
                    entity_key,
                    entity_key_serialization_version=config.entity_key_serialization_version,
                )
                ms = epoch_ms(timestamp)
                proto = Timestamp()
                proto.FromMilliseconds(ms)
                args: list[Any] = [ms_field, ms, ts_field, proto.SerializeToString()]
                for feature_name, value in values.items():
                    field = fields.get(feature_name) or _mmh3(f"{view}:{feature_name}")
                    args += [field, value.SerializeToString()]
                script(keys=[key], args=args, client=pipe)
                if store_config.key_ttl_seconds:
                    pipe.expire(name=key, time=store_config.key_ttl_seconds)
            pipe.execute()
        if progress:
            progress(len(data))
