"""Where a served request's CPU goes, in one process: `python -m bench.serving_profile OUT`.

Runs against a home prepared by `bench.serving_child prepare` (LOOPLINE_* environment as the
serving bench sets it, Kafka up). Builds the worker's service and app the way `loopline
serve` does and drives /rank through the ASGI app in-process (no sockets: HTTP parsing by
uvicorn is not in these figures; the bench's server CPU per request has it), one request at a
time, for each variant (feature log on/off, Kafka log on/off). CPU is the whole process'
(every thread: the Kafka sender and I/O threads, the item refresher), counted until every
queued record was acknowledged, divided by the requests. Then each stage of the request is
timed alone on the same inputs (thread CPU, so other threads do not leak in).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

TOKEN = "profile-token-0123456789"


def _body(users: list[str], items: list[str], i: int, gen: np.random.Generator) -> bytes:
    return json.dumps({"user_id": users[i % len(users)], "session_id": f"p-{i}",
                       "candidates": [str(c) for c in gen.choice(items, 100, replace=False)],
                       "k": 10}).encode()


async def _call(app: Any, body: bytes) -> tuple[int, bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/rank", "raw_path": b"/rank",
             "query_string": b"", "root_path": "", "server": ("127.0.0.1", 8000),
             "client": ("127.0.0.1", 50000),
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()),
                         (b"authorization", f"Bearer {TOKEN}".encode())]}
    sent = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def _thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by thread name."""
    import threading

    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        parts = fields.rsplit(")", 1)[1].split()
        name = thread.name.split("(")[0].rstrip("_0123456789-") or thread.name
        out[name] = out.get(name, 0.0) + (int(parts[11]) + int(parts[12])) / tick
    return out


def _drain(service: Any, timeout_s: float = 30.0) -> None:
    sinks = [service.sink, getattr(service.feature_log, "sink", None)]
    deadline = time.monotonic() + timeout_s
    for sink in sinks:
        stats = getattr(sink, "stats", None)
        while callable(stats) and stats()["pending"] and time.monotonic() < deadline:
            time.sleep(0.002)


def _variant(name: str, cfg: Any, kafka: Any, bodies: list[bytes], warmup: int
             ) -> dict[str, Any]:
    from feature_repo.store import load_feast
    from loopline.paths import load_paths
    from models.serving.app import create_app
    from models.serving.server import build_service

    service = build_service(cfg, load_paths(), load_feast(), kafka)
    app = create_app(service)
    timed = bodies[warmup:]
    measured: dict[str, Any] = {}

    async def drive() -> None:
        # One event loop task throughout, as under uvicorn: anyio keeps its worker threads
        # per root task, so a loop per request would start a thread per request.
        for body in bodies[:warmup]:
            await _call(app, body)
        _drain(service)
        measured["threads"] = _thread_cpu()
        cpu, wall = time.process_time(), time.perf_counter()
        for body in timed:
            status, out = await _call(app, body)
            if status != 200:
                raise RuntimeError(f"{name}: {status} {out[:200]!r}")
        _drain(service)
        measured["cpu"], measured["wall"] = (time.process_time() - cpu,
                                             time.perf_counter() - wall)
        measured["after"] = _thread_cpu()

    asyncio.run(drive())
    cpu, wall, threads, after = (measured["cpu"], measured["wall"], measured["threads"],
                                 measured["after"])
    health = service.health()
    service.close()
    return {"variant": name, "requests": len(timed),
            "cpu_ms_per_request": round(cpu / len(timed) * 1000, 3),
            "wall_ms_per_request": round(wall / len(timed) * 1000, 3),
            "fallback": health["counts"]["fallback"],
            "fallback_reasons": health["fallback_reasons"],
            "thread_cpu_ms_per_request": {
                name: round((after[name] - threads.get(name, 0.0)) / len(timed) * 1000, 3)
                for name in sorted(after)}}


def _stage(fn: Callable[[int], Any], n: int) -> float:
    for i in range(min(n, 20)):
        fn(i)
    cpu = time.thread_time()
    for i in range(n):
        fn(i)
    return round((time.thread_time() - cpu) / n * 1000, 4)


def _stages(cfg: Any, users: list[str], items: list[str], n: int) -> dict[str, float]:
    """Each stage of one request on its own, thread CPU ms per call."""
    from feature_repo.store import load_feast
    from loopline.paths import load_paths
    from models.serving import feature_log
    from models.serving.events import serving_event
    from models.serving.server import build_service
    from schemas.codec import FEATURE_LOG, SERVING_EVENT, default_codec

    service = build_service(replace(cfg, feature_log_sample_rate=0.0), load_paths(),
                            load_feast(), None)
    gen = np.random.default_rng(1)
    cands = [[str(c) for c in gen.choice(items, 100, replace=False)] for _ in range(64)]
    version = service.registry.latest()
    assert version is not None
    ranker = service._ranker(version)
    assert ranker is not None
    rng = np.random.default_rng(2)
    rows = [service.lookup_rows(users[i % len(users)], cands[i]) for i in range(64)]
    scores = [ranker.score(r.matrix) for r in rows]
    chosen = [service.policy.sample(s, 10, rng) for s in scores]
    codec = default_codec()
    slates = [service._slate(cands[i], scores[i], chosen[i], None, version, "default", f"r{i}")
              for i in range(64)]
    events = [serving_event(s.request_id, 1, users[i], "s", s.model_version, s.arm, s.policy,
                            False, [{"item_id": x.item_id, "position": x.position,
                                     "score": x.score, "propensity": x.propensity}
                                    for x in s.items]) for i, s in enumerate(slates)]
    logs = [feature_log.record(f"r{i}", 1, users[i], version, rows[i], list(chosen[i]),
                               cands[i], 1.0) for i in range(64)]
    out = {
        "lookup (user row from Redis + item cache)":
            _stage(lambda i: service.lookup_rows(users[i % len(users)], cands[i % 64]), n),
        "LightGBM score": _stage(lambda i: ranker.score(rows[i % 64].matrix), n),
        "sample (Gumbel-top-k)": _stage(lambda i: service.policy.sample(scores[i % 64], 10,
                                                                        rng), n),
        "propensities": _stage(lambda i: service.policy.propensities(scores[i % 64],
                                                                     chosen[i % 64]), n),
        "whole rank(), no logs": _stage(lambda i: service.rank(users[i % len(users)], "s",
                                                               cands[i % 64], 10), n),
        "ServingEvent record + encode": _stage(lambda i: codec.encode(SERVING_EVENT,
                                                                      events[i % 64]), n),
        "FeatureLog record": _stage(lambda i: feature_log.record(
            f"r{i}", 1, users[0], version, rows[i % 64], list(chosen[i % 64]), cands[i % 64],
            1.0), n),
        "FeatureLog encode": _stage(lambda i: codec.encode(FEATURE_LOG, logs[i % 64]), n),
    }
    service.close()
    return out


def main(argv: list[str]) -> int:
    from loopline.kafka import load_kafka
    from models.serving.config import load_serving

    out_path = Path(argv[0])
    prepared = json.loads(Path(os.environ["PROFILE_PREPARED"]).read_text())
    n = int(os.environ.get("PROFILE_REQUESTS", "600"))
    users, items = prepared["users"], prepared["items"]
    gen = np.random.default_rng(7)
    bodies = [_body(users, items, i, gen) for i in range(n + 100)]
    cfg = load_serving(temperature=0.5, metrics_enabled=True, auth_token=TOKEN)
    kafka = load_kafka()
    only = os.environ.get("PROFILE_VARIANTS", "full,no-feature-log,no-kafka").split(",")
    variants = {"full": (cfg, kafka),
                "no-feature-log": (replace(cfg, feature_log_sample_rate=0.0), kafka),
                "no-kafka": (cfg, None)}
    result: dict[str, Any] = {"variants": [], "loadavg_before": os.getloadavg()}
    for name in only:
        if name in variants:
            result["variants"].append(_variant(name, *variants[name], bodies, 100))
            print(json.dumps(result["variants"][-1]), flush=True)
    if os.environ.get("PROFILE_STAGES", "1") == "1":
        result["stages_cpu_ms"] = _stages(cfg, users, items, n)
        print(json.dumps(result["stages_cpu_ms"], indent=1), flush=True)
    result["loadavg_after"] = os.getloadavg()
    out_path.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
