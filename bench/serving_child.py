"""Child side of the serving measurements: a trained version over a real Feast store.

    python -m bench.serving_child {prepare,raw} SPEC OUT

Runs in its own process because feature_repo.definitions reads the Loopline home when first
imported, and training reads the offline sources from there. `prepare` builds a home:
synthetic slices and feature log, a real Feast store (SQLite or Redis) with the online
features written, a LightGBM version rolled out to everyone; `loopline serve` then runs on
it (bench/suites/serving.py). `raw` is that suite's baseline: the store's own client plus
LightGBM in a loop, no service, no HTTP. `run_from_spec` (suite `lookup`, via bench.worker)
times SlateService.rank in-process beside the same stages in a straight line.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import timing

START_MS = 1_767_261_600_000  # 2026-01-01T10:00Z, the slice range below
SLICE = "2026-01-01T10..2026-01-01T12"


def prepare(spec: dict[str, Any]) -> dict[str, Any]:
    """A home with a trained version in production and its online features written."""
    from bench import synthetic
    from feature_repo.store import FeastConfig, feature_store
    from loopline.paths import load_paths
    from models.registry import Registry
    from models.rollout import Rollout
    from models.slices import SliceRange
    from models.training import TrainingConfig, train

    t0 = time.time()
    paths = load_paths()
    world = synthetic.make_world(n_users=int(spec.get("users", 50)),
                                 n_items=max(int(spec["items"]), 150))
    synthetic.write_slices(paths, synthetic.simulate(world, START_MS, 2, 150, 20, 5))
    frames = synthetic.feature_frames(world, START_MS, 2)
    synthetic.write_feature_log(paths, frames)
    store = feature_store(FeastConfig(**spec["feast"]), paths, apply=True)
    for view, frame in synthetic.latest_rows(frames).items():
        store.write_to_online_store(view, frame)
    version = train(paths, SliceRange.parse(SLICE), store,
                    TrainingConfig(num_boost_round=100)).version
    Rollout(Registry.from_paths(paths)).full(version)
    return {"setup_s": round(time.time() - t0, 1), "version": version,
            "users": list(world.users), "items": list(world.items)}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raw(spec: dict[str, Any]) -> dict[str, Any]:
    """Baseline: the store's own client (user row + every candidate's item row, no cache)
    and LightGBM on the whole candidate matrix, in a loop on one thread."""
    from feature_repo.store import FeastConfig, feature_store
    from loopline.paths import load_paths
    from models.registry import Registry
    from models.serving.online import OnlineFeatures

    paths = load_paths()
    store = feature_store(FeastConfig(**spec["feast"]), paths)
    registry = Registry.from_paths(paths)
    version = registry.latest()
    assert version is not None
    ranker = registry.ranker(version)
    reader = OnlineFeatures(store, cache=False)
    users, requests = spec["users"], spec["requests"]
    gen = np.random.default_rng(0)
    cands = [list(gen.choice(spec["items"], int(spec["candidates"]), replace=False))
             for _ in range(64)]

    def once(i: int) -> Any:
        return ranker.score(reader.matrix(users[i % len(users)], cands[i % len(cands)]))

    nan_share = float(np.isnan(reader.matrix(users[0], cands[0])).mean())
    cpu, wall = _cpu_s(), time.perf_counter()
    ms = timing.sample(once, int(requests), warmup=0)
    cpu, wall = _cpu_s() - cpu, time.perf_counter() - wall
    return {"ms": timing.summary(ms), "per_s": round(len(ms) / wall, 1),
            "cpu_ms_per_call": round(cpu / len(ms) * 1000, 3), "missing_share": nan_share}


def run_from_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Suite `lookup`: SlateService.rank in-process vs the same stages in a straight line."""
    from feature_repo.store import FeastConfig, feature_store
    from loopline.kafka import KafkaConfig
    from loopline.paths import load_paths
    from models.registry import Registry
    from models.serving.config import ServingConfig
    from models.serving.events import KafkaSink, serving_event
    from models.serving.service import SlateService

    n_candidates, n = int(spec["candidates"]), int(spec["requests"])
    made = prepare({**spec, "items": n_candidates})
    paths = load_paths()
    store = feature_store(FeastConfig(**spec["feast"]), paths)
    registry = Registry.from_paths(paths)
    version = made["version"]
    sink = KafkaSink(KafkaConfig(bootstrap_servers=spec["bootstrap_servers"]),
                     topic=spec["topic"])
    # A generous budget: a request that times out would fall back to popularity and be faster,
    # which would flatter the figure; fallbacks are counted below and must stay at zero.
    cfg = ServingConfig(temperature=0.5, score_timeout_ms=5_000)
    service = SlateService(cfg, registry, store, sink)
    service.warm()
    users = made["users"]
    cands = made["items"][:n_candidates]
    ranker = registry.ranker(version)
    gen = np.random.default_rng(0)

    def via_service(i: int) -> Any:
        return service.rank(users[i % len(users)], "bench", cands, 10)

    def stages(i: int) -> Any:
        user = users[i % len(users)]
        matrix = service.lookup(user, cands)
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
        "setup_s": made["setup_s"],
        "version": version,
        "candidates": n_candidates,
        "service_ms": timing.summary(service_ms),
        "stages_ms": timing.summary(stages_ms),
        "counts": health["counts"],
        "fallback_reasons": health["fallback_reasons"],
        "events": health["events"],
    }


def main(argv: list[str] | None = None) -> int:
    mode, spec_path, out_path = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(spec_path).read_text())
    out = {"prepare": prepare, "raw": raw}[mode](spec)
    Path(out_path).write_text(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
