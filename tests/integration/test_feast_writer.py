"""The Feast writer against the session's real Kafka and real Feast stores (SQLite and Redis).

Every test gets its own topics, consumer groups and Loopline home (Redis: its own Feast
project). Values encode their own version (`user_clicks_1h = n`, `user_last_clicked = "i<n>"`)
and newer versions have later event times, so the version a key serves shows who won.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from feature_repo import names
from feature_repo.store import FeastConfig, feature_store
from infra.topics import TopicSpec, create_topics
from jobs.writer import FeatureWriter, WriterConfig, WriterProcess
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from schemas.codec import DEAD_LETTER, FEATURE_UPDATE, LINEAGE_RECORD, default_codec
from tests.conftest import REPO_ROOT
from tests.unit.jobs.writer.records import update

pytestmark = pytest.mark.integration

U = names.USER_ACTIVITY
T0 = (int(time.time() * 1000) - 3_600_000) // 1000 * 1000  # recent past: Kafka keeps it


class Crash(Exception):
    """Stands in for the process dying between the Feast write and the offset commit."""


@pytest.fixture(params=["sqlite", "redis"])
def feast(request: pytest.FixtureRequest) -> FeastConfig:
    if request.param == "sqlite":
        return FeastConfig()
    endpoint = request.getfixturevalue("redis")
    return FeastConfig(online_store="redis", redis_connection_string=endpoint.connection_string,
                       project=f"t{uuid.uuid4().hex[:8]}")


@pytest.fixture
def paths(tmp_path: Path) -> PathsConfig:
    return PathsConfig(home=tmp_path, jars=PathsConfig().jars).resolved()


@pytest.fixture
def config(kafka: KafkaConfig) -> WriterConfig:
    """Fresh topics (updates: 2 partitions) and group for one test."""
    tag = uuid.uuid4().hex[:8]
    cfg = WriterConfig(topic=f"t.{tag}.updates", dead_letter_topic=f"t.{tag}.dlq",
                       lineage_topic=f"t.{tag}.lineage", group_id=f"g-{tag}")
    create_topics(kafka, [TopicSpec(cfg.topic, 2), TopicSpec(cfg.dead_letter_topic),
                          TopicSpec(cfg.lineage_topic)])
    return cfg


def versions(users: int, per_user: int, seed: int) -> list[dict[str, Any]]:
    """`per_user` versions of each user (version n at T0 + n s), shuffled: out of order."""
    events = [update(U, f"u{k:03d}", T0 + n * 1000, n) for k in range(users)
              for n in range(1, per_user + 1)]
    random.Random(seed).shuffle(events)
    return events


def produce(kafka: KafkaConfig, topic: str, events: list[dict[str, Any]],
            raw: list[tuple[bytes | None, bytes]] = ()) -> list[tuple[int, int]]:
    """Events as the job writes them, then `raw` (key, value) records; their coordinates."""
    producer = KafkaProducer(**kafka.producer_kwargs())
    codec = default_codec()
    futures = [producer.send(topic, value=codec.encode(FEATURE_UPDATE, e),
                             key=f"{e['view']}:{e['entity_id']}".encode(),
                             timestamp_ms=e["event_time"]) for e in events]
    futures += [producer.send(topic, value=value, key=key, timestamp_ms=T0)
                for key, value in raw]
    producer.flush()
    meta = [f.get(timeout=30) for f in futures]
    producer.close()
    return [(m.partition, m.offset) for m in meta]


def newest(events: list[dict[str, Any]]) -> dict[str, int]:
    best: dict[str, int] = {}
    for e in events:
        best[e["entity_id"]] = max(best.get(e["entity_id"], 0), e["values"]["user_clicks_1h"])
    return best


def served(feast: FeastConfig, paths: PathsConfig, users: list[str]) -> dict[str, Any]:
    """user → (user_clicks_1h, user_last_clicked) as the online store serves them."""
    got = feature_store(feast, paths).get_online_features(
        features=[f"{U}:user_clicks_1h", f"{U}:user_last_clicked"],
        entity_rows=[{names.USER_KEY: u} for u in users]).to_dict()
    return {u: (got["user_clicks_1h"][i], got["user_last_clicked"][i])
            for i, u in enumerate(users)}


def assert_newest_served(feast: FeastConfig, paths: PathsConfig,
                         events: list[dict[str, Any]]) -> None:
    want = {u: (n, f"i{n}") for u, n in newest(events).items()}
    got = served(feast, paths, sorted(want))
    wrong = {u: (got[u], want[u]) for u in want if got[u] != want[u]}
    assert wrong == {}, f"{len(wrong)} of {len(want)} users serve an older version: " \
                        f"{dict(list(wrong.items())[:3])}"


def wait_until_serving(feast: FeastConfig, paths: PathsConfig, events: list[dict[str, Any]],
                       timeout_s: float = 120.0) -> None:
    """Until some of `events` are served (the writer is mid-stream), or fail after timeout_s."""
    users = sorted({e["entity_id"] for e in events})
    deadline = time.monotonic() + timeout_s
    while not any(v[0] is not None for v in served(feast, paths, users).values()):
        assert time.monotonic() < deadline, f"nothing served after {timeout_s} s"
        time.sleep(0.1)


def committed(kafka: KafkaConfig, cfg: WriterConfig) -> dict[int, int | None]:
    consumer = KafkaConsumer(**kafka.client_kwargs(), group_id=cfg.group_id,
                             enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(cfg.topic, p)) for p in (0, 1)}
    finally:
        consumer.close()


def end_offsets(kafka: KafkaConfig, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(**kafka.client_kwargs())
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in (0, 1)])
        return {tp.partition: o for tp, o in ends.items()}
    finally:
        consumer.close()


def read_all(kafka: KafkaConfig, topic: str, name: str) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[dict[str, Any]] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=1000).values():
                out += [default_codec().decode(r.value, name)[1] for r in records]
        return out
    finally:
        consumer.close()


def test_out_of_order_updates_end_newest_wins_and_offsets_are_committed(
        kafka: KafkaConfig, feast: FeastConfig, paths: PathsConfig, config: WriterConfig
) -> None:
    events = versions(users=30, per_user=4, seed=1)
    produce(kafka, config.topic, events)
    # Small batches: a user's versions span batches, so older ones reach the store after
    # newer ones and the store's own newest-wins is exercised, not only compaction.
    cfg = WriterConfig(**{**config.__dict__, "max_batch_rows": 7})
    with FeatureWriter(cfg, kafka, feast, paths) as writer:
        stats = writer.drain()
    assert (stats.records_in, stats.dead_letters, stats.complete) == (120, 0, True)
    assert 30 <= stats.rows_written[U] < 120  # compacted within batches, never below one each
    assert_newest_served(feast, paths, events)
    assert committed(kafka, config) == end_offsets(kafka, config.topic)
    lineage = read_all(kafka, config.lineage_topic, LINEAGE_RECORD)
    assert len(lineage) == stats.batches and {e["event_type"] for e in lineage} == {"RUNNING"}

    with FeatureWriter(config, kafka, feast, paths) as again:
        assert again.drain().records_in == 0  # the commits hold: nothing is written twice


def test_a_writer_killed_before_its_commit_is_replayed_and_newest_still_wins(
        kafka: KafkaConfig, feast: FeastConfig, paths: PathsConfig, config: WriterConfig
) -> None:
    events = versions(users=20, per_user=3, seed=2)
    produce(kafka, config.topic, events)

    def die(offsets: dict[int, int]) -> None:
        raise Crash(f"killed before committing {offsets}")

    with FeatureWriter(config, kafka, feast, paths, before_commit=die) as writer, \
            pytest.raises(Crash):
        writer.drain()  # one batch: everything written (newest per user), nothing committed
    assert_newest_served(feast, paths, events)
    assert committed(kafka, config) == {0: None, 1: None}

    # The restart replays every record one by one, in topic order: older versions of a user
    # arrive after its newest is already in the store, and must not replace it.
    replay = WriterConfig(**{**config.__dict__, "max_batch_rows": 1})
    with FeatureWriter(replay, kafka, feast, paths) as writer:
        stats = writer.drain()
    assert (stats.records_in, stats.batches, stats.rows_written[U]) == (60, 60, 60)
    assert_newest_served(feast, paths, events)
    assert committed(kafka, config) == end_offsets(kafka, config.topic)


def test_two_writers_on_different_groups_write_concurrently_and_newest_wins(
        kafka: KafkaConfig, feast: FeastConfig, paths: PathsConfig, config: WriterConfig
) -> None:
    events = versions(users=40, per_user=3, seed=3)
    produce(kafka, config.topic, events)
    configs = [WriterConfig(**{**config.__dict__, "group_id": f"{config.group_id}-{i}",
                               "max_batch_rows": size}) for i, size in enumerate((3, 11))]
    barrier = threading.Barrier(2)
    results: dict[int, Any] = {}

    def write(i: int) -> None:
        try:
            with FeatureWriter(configs[i], kafka, feast, paths) as writer:
                barrier.wait(timeout=120)
                results[i] = writer.drain()
        except Exception as exc:  # reported below, with the other writer's outcome
            results[i] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(getattr(results.get(i), "records_in", None) == 120 for i in (0, 1)), results
    assert_newest_served(feast, paths, events)
    for cfg in configs:
        assert committed(kafka, cfg) == end_offsets(kafka, config.topic)


def test_malformed_records_are_dead_lettered_once_and_the_rest_written(
        kafka: KafkaConfig, feast: FeastConfig, paths: PathsConfig, config: WriterConfig
) -> None:
    events = versions(users=10, per_user=2, seed=4)
    wrong_key = update(U, "u000", T0 + 60_000, 99)
    bad = [(b"user_activity:u001", b"garbage, not Avro"),
           (b"user_activity:u999", default_codec().encode(FEATURE_UPDATE, wrong_key))]
    coords = produce(kafka, config.topic, events, raw=bad)
    with FeatureWriter(config, kafka, feast, paths) as writer:
        stats = writer.drain()
    assert (stats.records_in, stats.dead_letters, stats.rows_written) == (22, 2, {U: 10})
    assert_newest_served(feast, paths, events)  # u000 did not take the wrongly keyed 99

    letters = read_all(kafka, config.dead_letter_topic, DEAD_LETTER)
    assert sorted((d["partition"], d["offset"]) for d in letters) == sorted(coords[-2:])
    by_raw = {d["raw"]: d for d in letters}
    assert by_raw[bad[0][1]]["stage"] == "decode"
    assert "no Avro single-object header" in by_raw[bad[0][1]]["reason"]
    assert "Kafka key must be 'user_activity:u000'" in by_raw[bad[1][1]]["reason"]
    assert {d["topic"] for d in letters} == {config.topic}

    with FeatureWriter(config, kafka, feast, paths) as again:
        assert again.drain().records_in == 0  # committed past them: never retried


def test_background_process_killed_and_restarted_ends_newest_wins(
        kafka: KafkaConfig, feast: FeastConfig, paths: PathsConfig, config: WriterConfig
) -> None:
    # The dead writer stays in the group until a rebalance gives up on it (max poll
    # interval): short here, where batches take milliseconds, so the restart waits seconds.
    cfg = WriterConfig(**{**config.__dict__, "max_batch_rows": 5,
                          "max_poll_interval_ms": 12_000})
    first = WriterProcess.start(cfg, kafka, feast, paths)
    events = versions(users=20, per_user=3, seed=5)
    produce(kafka, config.topic, events[:30])
    wait_until_serving(feast, paths, events[:30])
    first.kill()  # SIGKILL wherever it is: mid-batch, mid-write or between write and commit
    produce(kafka, config.topic, events[30:])
    second = WriterProcess.start(cfg, kafka, feast, paths)
    stats = second.stop(drain=True)
    assert stats.complete and stats.dead_letters == 0
    assert_newest_served(feast, paths, events)
    assert committed(kafka, config) == end_offsets(kafka, config.topic)


def test_cli_drain_writes_and_reports_stats(kafka: KafkaConfig, paths: PathsConfig,
                                            config: WriterConfig) -> None:
    events = versions(users=5, per_user=2, seed=6)
    produce(kafka, config.topic, events)
    env = {**os.environ, "LOOPLINE_PATHS_HOME": str(paths.home),
           "LOOPLINE_WRITER_DEAD_LETTER_TOPIC": config.dead_letter_topic,
           "LOOPLINE_WRITER_LINEAGE_TOPIC": config.lineage_topic}
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "job", "write-features", "--drain",
         "--topic", config.topic, "--group", config.group_id, "--store", "sqlite"],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert (stats["records_in"], stats["rows_total"], stats["complete"]) == (10, 5, True)
    assert_newest_served(FeastConfig(), paths, events)


def test_background_process_stops_on_sigterm_after_committing_its_batches(
        kafka: KafkaConfig, paths: PathsConfig, config: WriterConfig) -> None:
    feast = FeastConfig()
    events = versions(users=5, per_user=2, seed=7)
    child = WriterProcess.start(config, kafka, feast, paths)
    produce(kafka, config.topic, events)
    ends = end_offsets(kafka, config.topic)
    deadline = time.monotonic() + 120
    while committed(kafka, config) != ends:  # written and committed as they arrive
        assert time.monotonic() < deadline, "updates not committed within 120 s"
        time.sleep(0.2)
    stats = child.stop(drain=False)  # SIGTERM: finish the batch in hand, commit, exit 0
    assert stats.complete and stats.records_in == 10 and not child.alive
    assert_newest_served(feast, paths, events)
