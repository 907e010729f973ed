"""Out-of-order and replayed Feast writes from two concurrent writer processes: for 100 % of
keys the online store (SQLite and real Redis) serves the value with the newest event time.

Each writer owns every other millisecond (A even, B odd), so exactly one write per key is the
newest. Both write every key in shuffled order, in small batches, replay a third of their rows
(older after newer), and start together on a barrier so their batches interleave.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from feature_repo import names
from feature_repo.store import FeastConfig, feature_store
from infra.redis_server import RedisEndpoint
from loopline.paths import PathsConfig

pytestmark = pytest.mark.integration

KEYS = 300
VERSIONS = 5  # per key and writer
BATCH = 25
T0 = datetime(2026, 1, 1, 10, tzinfo=UTC)


def _plan(writer: int, seed: int) -> list[tuple[str, int]]:
    """(user, ms offset) rows of one writer: VERSIONS per key, shuffled, a third replayed."""
    rng = random.Random(seed * 31 + writer)
    rows = [(f"user-{k:04d}", 2 * rng.randrange(0, 50_000) + writer)
            for k in range(KEYS) for _ in range(VERSIONS)]
    rng.shuffle(rows)
    replays = rng.sample(rows, len(rows) // 3)
    return rows + replays


def _frame(rows: list[tuple[str, int]]) -> pd.DataFrame:
    """User-activity rows whose values encode their own event time (so the winner is visible)."""
    data = []
    for user, ms in rows:
        values: dict[str, Any] = {f: 0 for f in names.USER_FEATURES}
        values.update(user_clicks_1h=ms, user_revenue_1h=float(ms) / 1000,
                      user_last_clicked=f"ms-{ms}")
        data.append({names.USER_KEY: user,
                     names.TIMESTAMP_FIELD: T0 + timedelta(milliseconds=ms), **values})
    frame = pd.DataFrame(data)
    for f in names.USER_FEATURES:
        if "revenue" in f:
            frame[f] = frame[f].astype(float)
    return frame


def _writer(feast: dict[str, Any], home: str, writer: int, seed: int, barrier: Any,
            out: Any) -> None:
    """One writer process: open the store, wait for the other, write in small batches."""
    try:
        store = feature_store(FeastConfig(**feast), PathsConfig(home=Path(home)))
        rows = _plan(writer, seed)
        barrier.wait(timeout=120)
        started = time.monotonic()
        for i in range(0, len(rows), BATCH):
            store.write_to_online_store(names.USER_ACTIVITY, _frame(rows[i:i + BATCH]))
        out.put((writer, len(rows), round(time.monotonic() - started, 2), None))
    except Exception as exc:  # reported to the parent, which fails the test with it
        out.put((writer, 0, 0.0, f"{type(exc).__name__}: {exc}"))


@pytest.fixture(params=["sqlite", "redis"])
def feast(request: pytest.FixtureRequest) -> FeastConfig:
    if request.param == "sqlite":
        return FeastConfig()
    endpoint: RedisEndpoint = request.getfixturevalue("redis")
    return FeastConfig(online_store="redis", redis_connection_string=endpoint.connection_string,
                       project=f"t{uuid.uuid4().hex[:8]}")


def test_two_concurrent_writers_newest_event_time_wins_for_every_key(
    feast: FeastConfig, tmp_path: Path
) -> None:
    paths = PathsConfig(home=tmp_path)
    feature_store(feast, paths, apply=True)  # registry + online tables, as `feast apply` does
    seed = 3
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(asdict(feast), str(tmp_path), w, seed, barrier,
                                               out)) for w in (0, 1)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [r[3] for r in results if r[3]]
    assert not errors, errors

    newest: dict[str, int] = {}
    for w in (0, 1):
        for user, ms in _plan(w, seed):
            newest[user] = max(newest.get(user, -1), ms)
    users = sorted(newest)
    got = feature_store(feast, paths).get_online_features(
        features=[f"{names.USER_ACTIVITY}:{f}" for f in
                  ("user_clicks_1h", "user_revenue_1h", "user_last_clicked")],
        entity_rows=[{names.USER_KEY: u} for u in users],
    ).to_dict()
    wrong = [u for i, u in enumerate(users)
             if (got["user_clicks_1h"][i], got["user_last_clicked"][i])
             != (newest[u], f"ms-{newest[u]}")
             or got["user_revenue_1h"][i] != pytest.approx(newest[u] / 1000)]
    figures = {"store": feast.online_store, "keys": len(users),
               "writes": {f"writer{w}": n for w, n, _, _ in results},
               "seconds": {f"writer{w}": s for w, _, s, _ in results},
               "newest_wins_share": 1 - len(wrong) / len(users)}
    print("feast-newest-wins figures:", json.dumps(figures))
    assert wrong == [], f"{len(wrong)} keys do not serve their newest value, e.g. {wrong[:3]}"
