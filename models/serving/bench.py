"""Serving latency: one user, N candidates, in-process and over HTTP, and where the time goes.

    python -m models.serving.bench [--requests 300] [--candidates 100] [--k 10]

Builds a throw-away home (synthetic slices, feature log, real SQLite Feast store with the
online features written), trains a version, then times each stage of a request and the
whole request in-process (SlateService.rank) and over HTTP (uvicorn + httpx keep-alive).
Every line shows p50/p99 and its p50 as a share of the in-process request, measured in the
same run. ServingEvents go to an in-memory sink (Kafka sending is off the request path).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable

import numpy as np


def _timed(fn: Callable[[], object], n: int, warm: int = 20) -> np.ndarray:
    for _ in range(warm):
        fn()
    out = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t
    return out * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="loopline-bench-") as home:
        os.environ["LOOPLINE_PATHS_HOME"] = home
        return _run(args)


def _run(args: argparse.Namespace) -> int:

    # imported after the home is set: feature_repo.definitions reads it on import
    import httpx
    import uvicorn

    from feature_repo import names
    from feature_repo.store import FeastConfig, feature_store
    from loopline.net import free_port
    from loopline.paths import load_paths
    from models import features, synthetic
    from models.registry import Registry
    from models.rollout import Rollout
    from models.serving.app import create_app
    from models.serving.config import ServingConfig
    from models.serving.service import SlateService
    from models.slices import SliceRange
    from models.training import TrainingConfig, train
    from schemas.codec import SERVING_EVENT, default_codec

    paths = load_paths()
    start = 1_767_261_600_000
    world = synthetic.make_world(n_users=50, n_items=max(args.candidates, 150))
    synthetic.write_slices(paths, synthetic.simulate(world, start, 2, 150, 20, 5))
    frames = synthetic.feature_frames(world, start, 2)
    synthetic.write_feature_log(paths, frames)
    store = feature_store(FeastConfig(), paths, apply=True)
    for view, frame in synthetic.latest_rows(frames).items():
        store.write_to_online_store(view, frame)
    rng = SliceRange.parse("2026-01-01T10..2026-01-01T12")
    version = train(paths, rng, store, TrainingConfig(num_boost_round=100)).version
    registry = Registry.from_paths(paths)
    Rollout(registry).full(version)

    events: list[dict[str, object]] = []
    cfg = ServingConfig(temperature=0.5, score_timeout_ms=5_000)
    service = SlateService(cfg, registry, store, events.append)
    service.warm()
    user, cands, k = world.users[0], list(world.items[: args.candidates]), args.k
    ranker = registry.ranker(version)
    matrix = features.online(store, user, cands)
    scores = ranker.score(matrix)
    gen = np.random.default_rng(0)
    user_refs = [r for r in features.FEATURE_REFS if r.startswith(f"{names.USER_ACTIVITY}:")]
    item_refs = [r for r in features.FEATURE_REFS if r.startswith(f"{names.ITEM_PERFORMANCE}:")]

    def split_lookup() -> None:
        store.get_online_features(features=user_refs, entity_rows=[{names.USER_KEY: user}])
        store.get_online_features(features=item_refs,
                                  entity_rows=[{names.ITEM_KEY: c} for c in cands]).to_dict()

    n = args.requests
    rows: list[tuple[str, np.ndarray]] = [
        ("in-process request (SlateService.rank)",
         _timed(lambda: service.rank(user, "s", cands, k), n)),
        ("  Feast online lookup (features.online)",
         _timed(lambda: features.online(store, user, cands), n)),
        ("    of which get_online_features only", _timed(lambda: store.get_online_features(
            features=list(features.FEATURE_REFS),
            entity_rows=[{names.USER_KEY: user, names.ITEM_KEY: c} for c in cands]), n)),
        ("    alt: user and item views as 2 calls", _timed(split_lookup, n)),
        ("  LightGBM scoring (Ranker.score)", _timed(lambda: ranker.score(matrix), n)),
        ("  Plackett-Luce sample + exact propensities", _timed(
            lambda: service.policy.propensities(scores, service.policy.sample(scores, k, gen)), n)),
        ("  (off path) Avro encode of the ServingEvent", _timed(
            lambda: default_codec().encode(SERVING_EVENT, events[-1]), n)),
    ]

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    body = {"user_id": user, "session_id": "s", "candidates": cands, "k": k}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        rows.insert(1, ("HTTP request (uvicorn, keep-alive)",
                        _timed(lambda: client.post("/rank", json=body).raise_for_status(), n)))
    server.should_exit = True
    thread.join(10)

    base = float(np.percentile(rows[0][1], 50))
    print(f"{args.candidates} candidates, k={k}, {n} requests each, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'':<46} {'p50 ms':>8} {'p99 ms':>8} {'p50 / in-process':>17}")
    for name, ms in rows:
        p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
        print(f"{name:<46} {p50:>8.2f} {p99:>8.2f} {p50 / base:>16.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
