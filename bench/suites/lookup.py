"""Suite 3: online lookup latency, SQLite and Redis, beside a raw-client read of the same rows;
and the full serving request (Feast lookup + LightGBM scoring of 100 candidates + Kafka log).

Lookups (our path = `FeatureStore.get_online_features` through the project's newest-wins
stores, returning the response proto):
* 1 × 20: one entity row {user_id, item_id}, 8 user + 12 item features;
* 100 × 20: 100 entity rows, each a distinct user and item, the same 20 features.
Baseline = the floor under Feast: the same rows read with the store's own client (one SQLite
SELECT per view / one pipelined Redis HMGET round trip) and the values parsed from protobuf.
The store is filled first (`--entities` users, a tenth as many items) with
`write_to_online_store`; the fill rate is recorded too.

Serving (when models/serving exists) runs in a child process with its own home: a LightGBM
version trained on synthetic slices, `SlateService.rank` with a real `KafkaSink` (ours) vs the
same stages called in a straight line without the service (baseline).

Feature logging (bench/feature_log_child.py): the same `SlateService.rank` with every request's
FeatureLog sent to its own topic (ours) vs logging off (baseline), in alternating rounds; and
the bytes per request of a separate FeatureLog vs the vectors as a ServingEvent field.
"""

from __future__ import annotations

import importlib.util
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bench import jobspec, results, timing
from bench.context import BenchContext
from bench.errors import BenchUsageError
from feature_repo import names

STORES = ("sqlite", "redis")
USER_FEATURES = [f for f in names.USER_FEATURES if f != "user_last_clicked"]  # 8
ITEM_FEATURES = list(names.ITEM_FEATURES[:12])
FEATURES_20 = [f"{names.USER_ACTIVITY}:{f}" for f in USER_FEATURES] + [
    f"{names.ITEM_PERFORMANCE}:{f}" for f in ITEM_FEATURES]
TARGETS = {1: "p99 <= 5 ms", 100: "p99 <= 25 ms"}


@dataclass(frozen=True)
class Options:
    stores: tuple[str, ...] = STORES
    entities: int = 100_000
    requests: int = 2_000
    serving: bool = True
    serving_requests: int = 1_000
    candidates: int = 100
    smoke: bool = False

    def __post_init__(self) -> None:
        if self.entities < 200 or self.requests < 10:
            raise BenchUsageError(
                f"--entities must be >= 200 and --requests >= 10, got {self.entities} and "
                f"{self.requests}")
        bad = [s for s in self.stores if s not in STORES]
        if bad or not self.stores:
            raise BenchUsageError(f"--store must be among {STORES}, got {list(self.stores)}")


def serving_available() -> bool:
    return importlib.util.find_spec("models.serving.service") is not None


def _frames(users: list[str], items: list[str], now_ms: int, seed: int = 0
            ) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp(now_ms, unit="ms", tz="UTC")
    u = pd.DataFrame({names.USER_KEY: users})
    for f in USER_FEATURES:
        u[f] = rng.random(len(users)) * 10 if "revenue" in f else rng.integers(0, 50, len(users))
    u["user_last_clicked"] = ""
    u[names.TIMESTAMP_FIELD] = ts
    i = pd.DataFrame({names.ITEM_KEY: items})
    for f in names.ITEM_FEATURES:
        if any(x in f for x in ("ctr", "rate")):
            i[f] = rng.random(len(items))
        else:
            i[f] = rng.integers(0, 500, len(items))
    i[names.TIMESTAMP_FIELD] = ts
    return {names.USER_ACTIVITY: u, names.ITEM_PERFORMANCE: i}


def fill(store: Any, users: list[str], items: list[str], progress: bool,
         batch: int = 10_000) -> dict[str, float]:
    frames = _frames(users, items, int(time.time() * 1000))
    rows = sum(len(f) for f in frames.values())
    started = time.perf_counter()
    with tqdm(total=rows, desc="fill online store", unit="row", disable=not progress) as bar:
        for view, frame in frames.items():
            for start in range(0, len(frame), batch):
                part = frame.iloc[start:start + batch]
                store.write_to_online_store(view, part)
                bar.update(len(part))
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 1)}


class RawReader:
    """Reads the same rows as get_online_features with the store's own client (the floor)."""

    def __init__(self, store: Any, kind: str) -> None:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self.kind = kind
        self.config = store.config
        self.project = store.config.project
        self._value = Value
        self._entity_key = EntityKey
        self._serialize = serialize_entity_key
        if kind == "sqlite":
            from feast.infra.online_stores.sqlite import _table_id

            self.conn = sqlite3.connect(store.config.online_store.path, check_same_thread=False)
            views = {v.name: v for v in store.list_feature_views()}
            self.tables = {name: _table_id(self.project, views[name]) for name in views}
        else:
            import redis
            from feast.infra.online_stores.redis import _mmh3, _redis_key

            host, port = store.config.online_store.connection_string.split(":")[:2]
            self.client = redis.Redis(host=host, port=int(port))
            self._redis_key = _redis_key
            self.fields = {
                names.USER_ACTIVITY: [_mmh3(f"{names.USER_ACTIVITY}:{f}")
                                      for f in USER_FEATURES],
                names.ITEM_PERFORMANCE: [_mmh3(f"{names.ITEM_PERFORMANCE}:{f}")
                                         for f in ITEM_FEATURES],
            }

    def _key(self, join_key: str, value: str) -> Any:
        return self._entity_key(join_keys=[join_key],
                                entity_values=[self._value(string_val=value)])

    def _parse(self, raw: bytes | None) -> Any:
        if raw is None:
            return None
        value = self._value.FromString(raw)
        kind = value.WhichOneof("val")
        return getattr(value, kind) if kind else None

    def read(self, users: list[str], items: list[str]) -> list[list[Any]]:
        if self.kind == "sqlite":
            return self._read_sqlite(users, items)
        return self._read_redis(users, items)

    def _read_sqlite(self, users: list[str], items: list[str]) -> list[list[Any]]:
        out: list[list[Any]] = []
        version = self.config.entity_key_serialization_version
        for view, key, ids, feats in ((names.USER_ACTIVITY, names.USER_KEY, users, USER_FEATURES),
                                      (names.ITEM_PERFORMANCE, names.ITEM_KEY, items,
                                       ITEM_FEATURES)):
            keys = [self._serialize(self._key(key, i), entity_key_serialization_version=version)
                    for i in ids]
            sql = (f'SELECT entity_key, feature_name, value FROM "{self.tables[view]}" '
                   f"WHERE entity_key IN ({','.join('?' * len(keys))}) "
                   f"AND feature_name IN ({','.join('?' * len(feats))})")
            got: dict[bytes, dict[str, Any]] = {}
            for entity_key, feature, value in self.conn.execute(sql, [*keys, *feats]):
                got.setdefault(entity_key, {})[feature] = self._parse(value)
            out += [[got.get(k, {}).get(f) for f in feats] for k in keys]
        return out

    def _read_redis(self, users: list[str], items: list[str]) -> list[list[Any]]:
        version = self.config.entity_key_serialization_version
        pipe = self.client.pipeline(transaction=False)
        for view, key, ids in ((names.USER_ACTIVITY, names.USER_KEY, users),
                               (names.ITEM_PERFORMANCE, names.ITEM_KEY, items)):
            for i in ids:
                redis_key: Any = self._redis_key(self.project, self._key(key, i),
                                                 entity_key_serialization_version=version)
                pipe.hmget(redis_key, self.fields[view])
        return [[self._parse(v) for v in row] for row in pipe.execute()]


def _measure_store(ctx: BenchContext, opts: Options, store_kind: str) -> dict[str, Any]:
    from feature_repo.store import FeastConfig, feature_store
    from loopline.paths import PathsConfig

    home = ctx.run_home(f"lookup-{store_kind}") / "loopline"
    project = f"bench_{ctx.run_tag}_lookup"
    cfg = FeastConfig(**jobspec.feast_fields(store_kind, ctx.services, project))
    store = feature_store(cfg, PathsConfig(home=home).resolved(), apply=True)
    n_users, n_items = opts.entities, max(100, opts.entities // 10)
    users = [f"u{k:07d}" for k in range(n_users)]
    items = [f"i{k:06d}" for k in range(n_items)]
    filled = fill(store, users, items, ctx.progress)
    raw = RawReader(store, store_kind)
    rng = np.random.default_rng(1)
    out: dict[str, Any] = {"fill": filled, "users": n_users, "items": n_items}
    for rows in (1, 100):
        picks_u = rng.integers(0, n_users, (opts.requests + 100, rows))
        picks_i = rng.integers(0, n_items, (opts.requests + 100, rows))

        def ours(k: int, pu: np.ndarray = picks_u, pi: np.ndarray = picks_i,
                 n: int = rows) -> Any:
            entity_rows = [{names.USER_KEY: users[pu[k, j]], names.ITEM_KEY: items[pi[k, j]]}
                           for j in range(n)]
            return store.get_online_features(features=FEATURES_20, entity_rows=entity_rows).proto

        def base(k: int, pu: np.ndarray = picks_u, pi: np.ndarray = picks_i,
                 n: int = rows) -> Any:
            return raw.read([users[pu[k, j]] for j in range(n)],
                            [items[pi[k, j]] for j in range(n)])

        check = ours(0)
        missing = sum(1 for r in check.results for s in r.statuses if s != 1)
        ours_ms = timing.sample(ours, opts.requests, warmup=100)
        base_ms = timing.sample(base, opts.requests, warmup=100)
        out[f"{rows}x20"] = {"ours_ms": timing.summary(ours_ms),
                             "baseline_ms": timing.summary(base_ms),
                             "values_not_present_in_check": missing}
    return out


def run(ctx: BenchContext, opts: Options) -> dict[str, Any]:
    doc = results.new_document("lookup", {
        "stores": list(opts.stores), "entities": opts.entities, "requests": opts.requests,
        "features": "8 user + 12 item", "serving_candidates": opts.candidates,
        "smoke": opts.smoke,
        "baseline": "raw store client (SQLite SELECT / Redis pipelined HMGET) + protobuf parse",
    })
    for store_kind in opts.stores:
        if store_kind == "redis" and ctx.services.redis is None:
            doc["notes"].append("redis: skipped (no Redis server available)")
            continue
        detail = _measure_store(ctx, opts, store_kind)
        doc["details"][store_kind] = detail
        for rows in (1, 100):
            d = detail[f"{rows}x20"]
            for pct in ("p50", "p99"):
                doc["figures"].append(results.figure(
                    f"lookup {rows}x20 {pct}, {store_kind}", "ms", d["ours_ms"][pct],
                    d["baseline_ms"][pct], False, ours_label="Feast get_online_features",
                    baseline_label="raw client read", store=store_kind,
                    target=TARGETS[rows] if pct == "p99" else None))
    if opts.serving:
        if serving_available():
            _serving(ctx, opts, doc)
            _feature_log(ctx, opts, doc)
        else:
            doc["notes"].append("serving request: not available yet (models/serving missing)")
    doc["notes"] += [
        f"lookups: {opts.requests} timed calls each after 100 warm-up calls, single thread, "
        "random entities from the filled set",
        "ratio = Feast / raw read: what the Feast SDK adds on top of the store's own client",
    ]
    return results.finish(doc)


def _serving(ctx: BenchContext, opts: Options, doc: dict[str, Any]) -> None:
    for store_kind in opts.stores:
        if store_kind == "redis" and ctx.services.redis is None:
            continue
        topic = f"bench.{ctx.run_tag}.{store_kind}.served"
        ctx.services.create_topics([topic], 1)
        spec = {
            "feast": jobspec.feast_fields(store_kind, ctx.services,
                                          f"bench_{ctx.run_tag}_serving"),
            "bootstrap_servers": ctx.services.kafka.bootstrap_servers,
            "topic": topic, "requests": opts.serving_requests, "candidates": opts.candidates,
        }
        out = ctx.run_child("serving", f"serving-{store_kind}", spec, timeout_s=3600)
        ctx.services.delete_topics([topic])
        doc["details"][f"serving_{store_kind}"] = out
        for pct in ("p50", "p99"):
            doc["figures"].append(results.figure(
                f"serving request {pct} ({opts.candidates} candidates), {store_kind}", "ms",
                out["service_ms"][pct], out["stages_ms"][pct], False,
                ours_label="SlateService.rank (lookup + LightGBM + Kafka log)",
                baseline_label="same stages in a straight line, no service",
                store=store_kind, target="p99 <= 30 ms" if pct == "p99" else None))


def _feature_log(ctx: BenchContext, opts: Options, doc: dict[str, Any]) -> None:
    """Serving p99 with feature logging on (rate 1.0) vs off; bytes per request both ways."""
    store_kind = opts.stores[0]
    if store_kind == "redis" and ctx.services.redis is None:
        return
    topic = f"bench.{ctx.run_tag}.{store_kind}.served-fl"
    feature_topic = f"bench.{ctx.run_tag}.{store_kind}.features-logged"
    ctx.services.create_topics([topic, feature_topic], 1)
    spec = {
        "feast": jobspec.feast_fields(store_kind, ctx.services, f"bench_{ctx.run_tag}_fl"),
        "bootstrap_servers": ctx.services.kafka.bootstrap_servers, "topic": topic,
        "feature_topic": feature_topic, "requests": opts.serving_requests,
        "candidates": opts.candidates,
    }
    out = ctx.run_child("feature_log", f"feature-log-{store_kind}", spec, timeout_s=3600)
    ctx.services.delete_topics([topic, feature_topic])
    doc["details"][f"feature_log_{store_kind}"] = out
    for pct in ("p50", "p99"):
        doc["figures"].append(results.figure(
            f"serving request {pct} with feature logging ({opts.candidates} candidates), "
            f"{store_kind}", "ms", out["on_ms"][pct], out["off_ms"][pct], False,
            ours_label="SlateService.rank + FeatureLog of every request",
            baseline_label="SlateService.rank, feature logging off", store=store_kind))
    size = out["bytes"]
    doc["figures"].append(results.figure(
        f"bytes per request, {size['slate_items']} slate items: FeatureLog on its own topic vs "
        "the vectors on ServingEvent", "bytes", size["feature_log"],
        size["serving_event_with_features"], False,
        ours_label="FeatureLog (separate topic; ServingEvent unchanged)",
        baseline_label="ServingEvent with the vectors embedded (the job's input grows "
                       f"{size['job_input_growth']}x)"))
