"""Child side of the serving measurement (suite 3): a trained version behind SlateService.

Runs in its own process because feature_repo.definitions reads the Loopline home when first
imported, and training reads the offline sources from there. Set-up follows
models/serving/bench.py: synthetic slices and feature log, a real Feast store (SQLite or
Redis) with the online features written, a LightGBM version rolled out to everyone.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench import timing


def run_from_spec(spec: dict[str, Any]) -> dict[str, Any]:
    from bench import synthetic
    from feature_repo.store import FeastConfig, feature_store
    from loopline.kafka import KafkaConfig
    from loopline.paths import load_paths
    from models import features
    from models.registry import Registry
    from models.rollout import Rollout
    from models.serving.config import ServingConfig
    from models.serving.events import KafkaSink, serving_event
    from models.serving.service import SlateService
    from models.slices import SliceRange
    from models.training import TrainingConfig, train

    t0 = time.time()
    n_candidates, n = int(spec["candidates"]), int(spec["requests"])
    paths = load_paths()
    start = 1_767_261_600_000  # 2026-01-01T10:00Z, the slice range below
    world = synthetic.make_world(n_users=50, n_items=max(n_candidates, 150))
    synthetic.write_slices(paths, synthetic.simulate(world, start, 2, 150, 20, 5))
    frames = synthetic.feature_frames(world, start, 2)
    synthetic.write_feature_log(paths, frames)
    store = feature_store(FeastConfig(**spec["feast"]), paths, apply=True)
    for view, frame in synthetic.latest_rows(frames).items():
        store.write_to_online_store(view, frame)
    rng = SliceRange.parse("2026-01-01T10..2026-01-01T12")
    version = train(paths, rng, store, TrainingConfig(num_boost_round=100)).version
    registry = Registry.from_paths(paths)
    Rollout(registry).full(version)
    kafka = KafkaConfig(bootstrap_servers=spec["bootstrap_servers"])
    sink = KafkaSink(kafka, topic=spec["topic"])
    # A generous budget: a request that times out would fall back to popularity and be faster,
    # which would flatter the figure; fallbacks are counted below and must stay at zero.
    cfg = ServingConfig(temperature=0.5, score_timeout_ms=5_000)
    service = SlateService(cfg, registry, store, sink)
    service.warm()
    setup_s = time.time() - t0
    users = list(world.users)
    cands = list(world.items[:n_candidates])
    ranker = registry.ranker(version)
    gen = np.random.default_rng(0)

    def via_service(i: int) -> Any:
        return service.rank(users[i % len(users)], "bench", cands, 10)

    def stages(i: int) -> Any:
        user = users[i % len(users)]
        matrix = features.online(store, user, cands)
        scores = ranker.score(matrix)
        chosen = service.policy.sample(scores, 10, gen)
        props = service.policy.propensities(scores, chosen)
        slate = [{"item_id": cands[c], "position": j, "score": float(scores[c]),
                  "propensity": float(p)} for j, (c, p) in enumerate(zip(chosen, props,
                                                                         strict=True))]
        sink(serving_event(f"stage-{i}", int(time.time() * 1000), user, "bench", version,
                           "default", service.policy.name, False, slate))

    service_ms = timing.sample(via_service, n, warmup=30)
    stages_ms = timing.sample(stages, n, warmup=30)
    health = service.health()
    service.close()
    return {
        "setup_s": round(setup_s, 1),
        "version": version,
        "candidates": n_candidates,
        "service_ms": timing.summary(service_ms),
        "stages_ms": timing.summary(stages_ms),
        "counts": health["counts"],
        "fallback_reasons": health["fallback_reasons"],
        "events": health["events"],
    }
