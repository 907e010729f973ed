"""Benchmark input: realistic simulator events, encoded once, cached, and bulk-loaded to Kafka.

Events come from the shop simulator (simulator/), generated in parallel shards (one world per
shard with its own seed; shard k's user ids get the prefix "k-" so shards do not share users;
items are shared, like one catalogue). Each shard is encoded with the project's codec and cached
as Parquet (kind, key, value, event_time), so the same events feed the job and the baseline and
re-runs skip generation. Loading uses one kafka-python producer process per shard with large
batches; every record's Kafka timestamp is its event_time (the job's event-time contract), and
shard k goes to partition k of each topic, so every partition stays in event-time order.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing as mp
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from bench.errors import BenchRunError
from loopline.kafka import KafkaConfig

SERVING, INTERACTION = 0, 1
# Observed with the default simulator knobs: ~19 events per user per simulated day.
EVENTS_PER_USER_DAY = 19.0
SCHEMA = pa.schema([("kind", pa.int8()), ("key", pa.binary()), ("value", pa.binary()),
                    ("event_time", pa.int64())])
_CHUNK = 50_000


@dataclass(frozen=True)
class EventSet:
    """`events` simulator events over `days` simulated days, in `shards` parallel worlds."""

    events: int
    shards: int = 2
    days: int = 3
    seed: int = 11
    start_ms: int | None = None  # default: the simulator's (last event ~1 day before now)

    def shard_events(self, shard: int) -> int:
        base, extra = divmod(self.events, self.shards)
        return base + (1 if shard < extra else 0)

    def users_per_shard(self) -> int:
        per_shard = math.ceil(self.events / self.shards)
        return max(50, math.ceil(per_shard * 1.25 / (EVENTS_PER_USER_DAY * self.days)))

    def cache_key(self) -> str:
        from schemas.codec import INTERACTION_EVENT, SERVING_EVENT, default_codec

        store = default_codec().store
        fps = [store.latest(n).fingerprint.hex() for n in (SERVING_EVENT, INTERACTION_EVENT)]
        raw = f"{self.events}:{self.shards}:{self.days}:{self.seed}:{self.start_ms}:{fps}"
        return hashlib.sha256(raw.encode()).hexdigest()[:12]


def _start_ms(days: int) -> int:
    """Hour-aligned, with the last simulated day ending ~1 day ago (the simulator's rule)."""
    from simulator.world import default_start_ms

    return default_start_ms(days)


def _generate_shard(spec: EventSet, shard: int, start_ms: int, path: Path,
                    progress: Any) -> None:
    """Simulate one shard, encode each event, write Parquet (runs in a worker process)."""
    users = spec.users_per_shard()
    for _ in range(4):
        if _simulate_into(spec, shard, start_ms, users, path, progress):
            return
        # This world produced fewer events than planned: start again with more users.
        with progress.get_lock():
            progress.value = 0
        users = math.ceil(users * 1.5)
    raise BenchRunError(f"shard {shard}: the simulator did not produce enough events")


def _simulate_into(spec: EventSet, shard: int, start_ms: int, users: int, path: Path,
                   progress: Any) -> bool:
    from schemas.codec import INTERACTION_EVENT, SERVING_EVENT, default_codec
    from simulator import policies
    from simulator.config import load_simulator
    from simulator.simulation import Simulation
    from simulator.world import World

    codec = default_codec()
    serving_schema = codec.store.latest(SERVING_EVENT)
    interaction_schema = codec.store.latest(INTERACTION_EVENT)
    target = spec.shard_events(shard)
    prefix = f"{shard}-"
    rows: dict[str, list[Any]] = {"kind": [], "key": [], "value": [], "event_time": []}
    written = 0
    tmp = path.with_name(f".{path.name}.tmp")
    cfg = load_simulator(users=users, days=spec.days, seed=spec.seed * 1000 + shard,
                         start_ms=start_ms)
    world = World.build(cfg)
    with pq.ParquetWriter(tmp, SCHEMA) as writer:
        for kind, event in Simulation(world).run(policies.popularity(world)):
            event["user_id"] = prefix + event["user_id"]
            if kind == "serving":
                value = codec.encode_with(serving_schema, event)
                key = event["request_id"].encode()
                rows["kind"].append(SERVING)
            else:
                value = codec.encode_with(interaction_schema, event)
                key = (event.get("request_id") or event["user_id"]).encode()
                rows["kind"].append(INTERACTION)
            rows["key"].append(key)
            rows["value"].append(value)
            rows["event_time"].append(event["event_time"])
            written += 1
            if len(rows["kind"]) >= _CHUNK or written >= target:
                writer.write_table(pa.table(rows, schema=SCHEMA))
                with progress.get_lock():
                    progress.value += len(rows["kind"])
                rows = {k: [] for k in rows}
            if written >= target:
                break
    if written < target:
        tmp.unlink(missing_ok=True)
        return False
    tmp.replace(path)
    return True


def generate(spec: EventSet, cache_dir: Path, progress: bool = True) -> list[Path]:
    """The shard files of `spec`, generated now unless the cache has them."""
    if spec.events <= 0 or spec.shards <= 0:
        raise BenchRunError(f"expected events > 0 and shards > 0, got {spec}")
    start_ms = spec.start_ms if spec.start_ms is not None else _start_ms(spec.days)
    spec = EventSet(spec.events, spec.shards, spec.days, spec.seed, start_ms)
    folder = cache_dir / f"events-{spec.events}-{spec.cache_key()}"
    paths = [folder / f"shard-{k}.parquet" for k in range(spec.shards)]
    missing = [k for k, p in enumerate(paths) if not p.exists()]
    if not missing:
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("fork")
    counters = [ctx.Value("q", 0) for _ in missing]
    procs = [ctx.Process(target=_generate_shard, args=(spec, k, start_ms, paths[k], c),
                         name=f"bench-gen-{k}") for k, c in zip(missing, counters, strict=True)]
    for proc in procs:
        proc.start()
    total = sum(spec.shard_events(k) for k in missing)
    with tqdm(total=total, desc="simulate+encode", unit="ev", disable=not progress) as bar:
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            bar.n = sum(c.value for c in counters)
            bar.refresh()
        bar.n = sum(c.value for c in counters)
        bar.refresh()
    failed = [p.name for p in procs if p.exitcode != 0]
    if failed:
        raise BenchRunError(f"event generation failed in {failed} (see the traceback above)")
    return paths


def read_shard(path: Path) -> pa.Table:
    return pq.read_table(path)


def count(paths: list[Path]) -> dict[str, int]:
    """Events per kind across shard files."""
    serving = interactions = 0
    for path in paths:
        kinds = pq.read_table(path, columns=["kind"]).column("kind").to_numpy()
        serving += int((kinds == SERVING).sum())
        interactions += int((kinds == INTERACTION).sum())
    return {"serving": serving, "interactions": interactions, "total": serving + interactions}


def producer_settings(kafka: KafkaConfig, compression: str | None = None) -> dict[str, Any]:
    """Bulk-load settings: big batches, a little linger, leader-only acks (a benchmark
    load, not a durability path: the topic is checked for its full count afterwards)."""
    settings: dict[str, Any] = {
        **kafka.client_kwargs(),
        "acks": 1,
        "linger_ms": 50,
        "batch_size": 1024 * 1024,
        "max_request_size": 8 * 1024 * 1024,
        "retries": 5,
    }
    if compression:
        settings["compression_type"] = compression
    return settings


def _load_shard(path: Path, kafka: KafkaConfig, topics: tuple[str, str], partition: int,
                compression: str | None, progress: Any) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(**producer_settings(kafka, compression))
    errors: list[BaseException] = []
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=_CHUNK):
            kinds = batch.column("kind").to_pylist()
            keys = batch.column("key").to_pylist()
            values = batch.column("value").to_pylist()
            times = batch.column("event_time").to_pylist()
            for kind, key, value, ts in zip(kinds, keys, values, times, strict=True):
                producer.send(topics[kind], value=value, key=key, timestamp_ms=ts,
                              partition=partition).add_errback(errors.append)
            if errors:
                raise BenchRunError(f"Kafka refused a record: {errors[0]}")
            with progress.get_lock():
                progress.value += len(kinds)
        producer.flush(timeout=300)
        if errors:
            raise BenchRunError(f"Kafka refused a record: {errors[0]}")
    finally:
        producer.close()


def load(paths: list[Path], kafka: KafkaConfig, serving_topic: str, interactions_topic: str,
         partitions: int, compression: str | None = None, progress: bool = True
         ) -> dict[str, float]:
    """Produce every shard (one process each, shard k → partition k % partitions)."""
    ctx = mp.get_context("fork")
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    counters = [ctx.Value("q", 0) for _ in paths]
    topics = (serving_topic, interactions_topic)
    procs = [ctx.Process(target=_load_shard, name=f"bench-load-{k}",
                         args=(p, kafka, topics, k % partitions, compression, c))
             for k, (p, c) in enumerate(zip(paths, counters, strict=True))]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    with tqdm(total=total, desc="load into Kafka", unit="ev", disable=not progress) as bar:
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            bar.n = sum(c.value for c in counters)
            bar.refresh()
        bar.n = sum(c.value for c in counters)
        bar.refresh()
    seconds = time.perf_counter() - started
    failed = [p.name for p in procs if p.exitcode != 0]
    if failed:
        raise BenchRunError(f"loading events into Kafka failed in {failed}")
    return {"events": total, "seconds": round(seconds, 2),
            "events_per_s": round(total / seconds, 1) if seconds else 0.0}


def topic_count(kafka: KafkaConfig, topic: str) -> int:
    """Records in `topic` (end minus beginning offsets over its partitions)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        end = consumer.end_offsets(tps)
        begin = consumer.beginning_offsets(tps)
        return int(sum(end[tp] - begin[tp] for tp in tps))
    finally:
        consumer.close()


def iter_events(paths: list[Path]) -> Iterator[tuple[int, bytes, bytes, int]]:
    """(kind, key, value, event_time) of every cached event, shard after shard."""
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=_CHUNK):
            yield from zip(batch.column("kind").to_pylist(), batch.column("key").to_pylist(),
                           batch.column("value").to_pylist(),
                           batch.column("event_time").to_pylist(), strict=True)
