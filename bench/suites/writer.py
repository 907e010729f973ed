"""Writer suite: FeatureUpdate records/s from Kafka into Feast (SQLite, Redis) through the Feast
writer (jobs/writer: batch decode + validate, compact newest per entity, write, commit, dead
letters, lineage), beside a naive writer (decode everything, write everything, commit).

Per store: a pre-loaded updates topic (2 partitions) → each writer's drain() in a fresh child
process, from an empty online store (own Feast project). Rates are input records per second
of the drain (imports and Feast set-up excluded) and Feast rows written per second.
Entities are drawn uniformly, so how much compaction saves depends on --updates/--entities.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from bench import jobspec, results
from bench.context import BenchContext
from bench.errors import BenchRunError, BenchUsageError

STORES = ("sqlite", "redis")


@dataclass(frozen=True)
class Options:
    updates: int = 100_000
    entities: int = 50_000
    stores: tuple[str, ...] = STORES
    batch_rows: int = 20_000
    baseline: bool = True
    timeout_s: float = 3600.0
    smoke: bool = False

    def __post_init__(self) -> None:
        if self.updates < 100 or self.entities < 1:
            raise BenchUsageError(f"writer: --events must be >= 100 and entities >= 1, got "
                                  f"{self.updates} / {self.entities}")
        bad = [s for s in self.stores if s not in STORES]
        if bad or not self.stores:
            raise BenchUsageError(f"--store must be among {STORES}, got {list(self.stores)}")


def _values(view: str, n: int) -> dict[str, Any]:
    from feature_repo import names

    out: dict[str, Any] = {}
    for name in names.FEATURES_BY_VIEW[view]:
        if name == "user_last_clicked":
            out[name] = f"i{n % 997},i{n % 991}"
        elif any(k in name for k in ("ctr", "rate", "revenue")):
            out[name] = (n % 1000) / 1000
        else:
            out[name] = n % 10_000
    return out


def load(kafka: Any, topic: str, updates: int, entities: int, seed: int = 7) -> dict[str, Any]:
    """`updates` FeatureUpdates over `entities` (half users, half items), as the job writes
    them: key <view>:<entity>, record timestamp = event time, later records newer."""
    from kafka import KafkaProducer

    from bench.events import producer_settings
    from feature_repo import names
    from schemas.codec import FEATURE_UPDATE, default_codec

    codec = default_codec()
    rng = random.Random(seed)
    t0 = (int(time.time() * 1000) - 6 * 3_600_000)  # recent past: inside Kafka's window
    producer = KafkaProducer(**producer_settings(kafka))
    started = time.perf_counter()
    views = (names.USER_ACTIVITY, names.ITEM_PERFORMANCE)
    drawn: set[int] = set()
    for i in range(updates):
        k = rng.randrange(entities)
        drawn.add(k)
        view = views[k % 2]
        event = {"view": view, "entity_id": f"e{k}", "event_time": t0 + i,
                 "values": _values(view, i), "job_run_id": "bench"}
        producer.send(topic, value=codec.encode(FEATURE_UPDATE, event),
                      key=f"{view}:e{k}".encode(), timestamp_ms=t0 + i)
    producer.flush()
    producer.close()
    return {"records": updates, "entities": entities, "distinct_entities": len(drawn),
            "seconds": round(time.perf_counter() - started, 2)}


def run(ctx: BenchContext, opts: Options) -> dict[str, Any]:
    doc = results.new_document("writer", {
        "updates": opts.updates, "entities": opts.entities, "stores": list(opts.stores),
        "batch_rows": opts.batch_rows, "smoke": opts.smoke,
        "baseline": "kafka-python loop → decode every record → write_to_online_store (all rows)",
    })
    tag = jobspec.new_tag()
    topic, dlq, lineage_topic = (f"bench.{tag}.updates", f"bench.{tag}.dlq",
                                 f"bench.{tag}.lineage")
    ctx.services.create_topics([topic], 2)
    ctx.services.create_topics([dlq, lineage_topic], 1)
    try:
        doc["details"]["input"] = load(ctx.services.kafka, topic, opts.updates, opts.entities)
        for store in opts.stores:
            if store == "redis" and ctx.services.redis is None:
                doc["notes"].append("redis: skipped (no Redis server available)")
                continue
            detail = _one_store(ctx, opts, store, tag, topic, dlq, lineage_topic)
            doc["details"][store] = detail
            _figures(doc, store, detail, opts)
    finally:
        ctx.services.delete_topics([topic, dlq, lineage_topic])
    doc["notes"] += [
        f"{opts.updates:,} updates over {opts.entities:,} entities (uniform), 2 partitions; "
        f"batches of up to {opts.batch_rows:,} records",
        "ours validates every record and writes dead letters and a lineage event per batch; "
        "the baseline does neither",
        "rates exclude child start-up (imports, Feast registry); a fresh process per run",
        "both consume with check_crcs=False (kafka-python's pure-Python CRC32C cost ~70 µs "
        "CPU per record here; the writer's default, see jobs/writer/config.py)",
    ]
    return results.finish(doc)


def _one_store(ctx: BenchContext, opts: Options, store: str, tag: str, topic: str, dlq: str,
               lineage_topic: str) -> dict[str, Any]:
    kafka = ctx.services.kafka.bootstrap_servers
    writer = {"topic": topic, "group_id": f"bench-{tag}-{store}-writer",
              "dead_letter_topic": dlq, "lineage_topic": lineage_topic,
              "max_batch_rows": opts.batch_rows, "schema_registry": False}
    spec = {"writer": writer, "bootstrap_servers": kafka, "expected_input": opts.updates,
            "feast": jobspec.feast_fields(store, ctx.services, f"bench_{tag}_{store[0]}_w")}
    ours = ctx.run_child("writer", f"writer-{store}", spec, timeout_s=opts.timeout_s)
    if ours.get("status") != "FINISHED":
        raise BenchRunError(f"writer-{store}: {ours.get('records_in')} of {opts.updates} "
                            f"records written (log {ours.get('log')})")
    detail: dict[str, Any] = {"writer": ours}
    if opts.baseline:
        naive = {"topic": topic, "group_id": f"bench-{tag}-{store}-naive",
                 "bootstrap_servers": kafka, "expected_input": opts.updates,
                 "batch_rows": opts.batch_rows,
                 "feast": jobspec.feast_fields(store, ctx.services,
                                               f"bench_{tag}_{store[0]}_n")}
        detail["baseline"] = ctx.run_child("naive_writer", f"naive-writer-{store}", naive,
                                           timeout_s=opts.timeout_s)
    return detail


def _rate(out: dict[str, Any], key: str) -> float | None:
    seconds = out.get("seconds")
    return out[key] / seconds if out.get("status") == "FINISHED" and seconds else None


def _per_cpu(out: dict[str, Any], component: str) -> float | None:
    cpu = out.get("memory", {}).get("cpu_seconds_by_component", {}).get(component)
    return out["records_in"] / cpu if cpu and out.get("status") == "FINISHED" else None


def _figures(doc: dict[str, Any], store: str, detail: dict[str, Any], opts: Options) -> None:
    ours, base = detail["writer"], detail.get("baseline", {})
    common: dict[str, Any] = {"store": store, "updates": opts.updates,
                              "ours_label": "Feast writer (jobs/writer)",
                              "baseline_label": "naive writer (no compaction)"}
    doc["figures"] += [
        results.figure(f"writer updates/s, {store}", "records/s", _rate(ours, "records_in"),
                       _rate(base, "records_in"), True, **common),
        results.figure(f"writer Feast rows/s, {store}", "rows/s", _rate(ours, "rows_total"),
                       _rate(base, "rows_total"), True,
                       note="entity rows written: ours after compaction", **common),
        results.figure(f"writer updates per CPU-second, {store}", "records/cpu-s",
                       _per_cpu(ours, "job"), _per_cpu(base, "baseline"), True, **common),
    ]
