"""Child side of the feature-logging measurement (suite `lookup`, kind `feature_log`).

The same SlateService.rank (real Feast store, LightGBM version, ServingEvents to Kafka) with
feature logging off and on (every request logged to its own topic), in alternating rounds so
machine load drifts over both alike; plus the bytes per request of the two designs weighed
in the issue: a FeatureLog on its own topic, or the same vectors as a field of ServingEvent.
"""

from __future__ import annotations

import copy
import io
import json
import time
from typing import Any

import fastavro
import numpy as np

from bench import serving_child, timing

ROUNDS = 10


def _embedded_schema() -> Any:
    """ServingEvent with the FeatureLog's vectors as one more field: the rejected design,
    built in memory only for its size (never registered)."""
    from schemas.store import AVRO_DIR, _strip_logical_types

    serving = json.loads((AVRO_DIR / "serving_event.v1.avsc").read_text())
    feature_log = json.loads((AVRO_DIR / "feature_log.v1.avsc").read_text())
    entity = next(f for f in feature_log["fields"] if f["name"] == "user")["type"]
    extra = [
        {"name": "feature_service_version", "type": "string"},
        {"name": "user_features", "type": entity},
        {"name": "item_features", "type": {"type": "array", "items": "LoggedEntity"}},
    ]
    schema = copy.deepcopy(serving)
    schema["fields"] += extra
    return fastavro.parse_schema(_strip_logical_types(schema))


def bytes_per_request(event: dict[str, Any], log: dict[str, Any]) -> dict[str, Any]:
    """Encoded sizes (single-object header included) of one served request both ways."""
    from schemas.codec import FEATURE_LOG, HEADER_LEN, SERVING_EVENT, default_codec

    codec = default_codec()
    serving = len(codec.encode(SERVING_EVENT, event))
    separate = len(codec.encode(FEATURE_LOG, log))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, _embedded_schema(), event | {
        "feature_service_version": log["feature_service_version"],
        "user_features": log["user"], "item_features": log["items"]})
    embedded = HEADER_LEN + len(buf.getvalue())
    return {"serving_event": serving, "feature_log": separate,
            "separate_topic_total": serving + separate,
            "serving_event_with_features": embedded,
            "job_input_growth": round(embedded / serving, 2),
            "slate_items": len(event["slate"]), "user_values": len(log["user"]["values"]),
            "item_values": len(log["items"][0]["values"]) if log["items"] else 0}


def run_from_spec(spec: dict[str, Any]) -> dict[str, Any]:
    from feature_repo.store import FeastConfig, feature_store
    from loopline.kafka import KafkaConfig
    from loopline.paths import load_paths
    from models.registry import Registry
    from models.serving.config import ServingConfig
    from models.serving.events import KafkaSink
    from models.serving.feature_log import FeatureLogger
    from models.serving.service import SlateService
    from schemas.codec import FEATURE_LOG

    n_candidates, n, k = int(spec["candidates"]), int(spec["requests"]), int(spec.get("k", 10))
    made = serving_child.prepare({**spec, "items": n_candidates})
    paths = load_paths()
    store = feature_store(FeastConfig(**spec["feast"]), paths)
    kafka = KafkaConfig(bootstrap_servers=spec["bootstrap_servers"])
    cfg = ServingConfig(temperature=0.5, score_timeout_ms=5_000)  # no timeouts: see serving
    captured: dict[str, Any] = {}

    def service(log: bool) -> SlateService:
        events = KafkaSink(kafka, topic=spec["topic"])
        logger = None
        if log:
            sink = KafkaSink(kafka, topic=spec["feature_topic"], schema=FEATURE_LOG)

            def capture(record: dict[str, Any]) -> None:
                captured.setdefault("log", record)
                sink(record)

            capture.stats = sink.stats  # type: ignore[attr-defined]
            capture.close = sink.close  # type: ignore[attr-defined]
            logger = FeatureLogger(capture, 1.0)

        def keep_event(event: dict[str, Any]) -> None:
            captured.setdefault("event", event)
            events(event)

        keep_event.stats = events.stats  # type: ignore[attr-defined]
        keep_event.close = events.close  # type: ignore[attr-defined]
        built = SlateService(cfg, Registry.from_paths(paths), store, keep_event,
                             feature_log=logger)
        built.warm()
        return built

    off, on = service(False), service(True)
    users, cands = made["users"], made["items"][:n_candidates]
    per_round = max(1, n // ROUNDS)
    off_ms: list[np.ndarray] = []
    on_ms: list[np.ndarray] = []
    def ranker(svc: SlateService) -> Any:
        return lambda i: svc.rank(users[i % len(users)], "bench", cands, k)

    for r in range(ROUNDS):  # alternating order: neither side always runs second
        pairs = [(off, off_ms), (on, on_ms)]
        for svc, out in pairs if r % 2 == 0 else pairs[::-1]:
            out.append(timing.sample(ranker(svc), per_round, warmup=10 if r == 0 else 0))
    health = on.health()
    time.sleep(0.5)
    off.close()
    on.close()
    a, b = timing.summary(np.concatenate(off_ms)), timing.summary(np.concatenate(on_ms))
    return {
        "setup_s": made["setup_s"], "candidates": n_candidates, "k": k,
        "off_ms": a, "on_ms": b,
        "p99_cost_ms": round(float(b["p99"] or 0) - float(a["p99"] or 0), 3),
        "p50_cost_ms": round(float(b["p50"] or 0) - float(a["p50"] or 0), 3),
        "bytes": bytes_per_request(captured["event"], captured["log"]),
        "feature_log": health["feature_log"], "fallbacks": health["counts"]["fallback"],
    }
