"""`loopline serve`: wire config → Feast store, registry, Kafka sink → app → uvicorn.

Start-up refuses to serve when the ServingEvent topic (or, with feature logging on, the
FeatureLog topic) is missing or not writable (a clear error, exit 1): slates whose
impressions never reach Kafka break the loop silently.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from feature_repo.store import FeastConfig, feature_store
from loopline.errors import ConfigError, LooplineError
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from models.registry import Registry
from models.serving.app import create_app
from models.serving.config import ServingConfig
from models.serving.events import KafkaSink, SharedProducer, check_topic
from models.serving.feature_log import FeatureLogger
from models.serving.metrics import SHARED_DIR_ENV
from models.serving.service import SlateService
from schemas.codec import FEATURE_LOG

log = logging.getLogger(__name__)


def check_event_log(cfg: ServingConfig, kafka: KafkaConfig | None) -> None:
    """Raise EventLogError unless ServingEvents can be written (skipped without Kafka or
    with serving.check_topics = false)."""
    if kafka is not None and cfg.check_topics:
        check_topic(kafka, cfg.event_topic)
        if cfg.feature_log_sample_rate > 0:
            check_topic(kafka, cfg.feature_log_topic, "FeatureLog")


def build_service(cfg: ServingConfig, paths: PathsConfig, feast: FeastConfig,
                  kafka: KafkaConfig | None) -> SlateService:
    """A ready service; a Feast store that cannot be opened means popularity-only serving."""
    try:
        store = feature_store(feast, paths)
    except LooplineError as exc:
        log.error("serving without features (popularity only): %s", exc)
        store = None
    sink, feature_log = None, None
    if kafka is not None:  # both logs through one producer (events.SharedProducer says why)
        producer = SharedProducer(kafka, linger_ms=cfg.event_linger_ms)
        sink = KafkaSink(kafka, cfg.event_queue_size, topic=cfg.event_topic, producer=producer)
        if cfg.feature_log_sample_rate > 0:
            feature_log = FeatureLogger(
                KafkaSink(kafka, cfg.event_queue_size, topic=cfg.feature_log_topic,
                          schema=FEATURE_LOG, producer=producer),
                cfg.feature_log_sample_rate)
    service = SlateService(cfg, Registry.from_paths(paths), store, sink,
                           feature_log=feature_log)
    service.warm()
    return service


def with_auth(cfg: ServingConfig) -> tuple[ServingConfig, str | None]:
    """`cfg` with an auth token; the token when one was generated (to print once).

    No configured token and no explicit `allow_unauthenticated` (local development): a random
    token for this run, so the HTTP port is never open by accident.
    """
    if cfg.auth_token is not None or cfg.allow_unauthenticated:
        return cfg, None
    token = secrets.token_urlsafe(24)
    return replace(cfg, auth_token=token), token


def _refuse_open(cfg: ServingConfig) -> None:
    if cfg.auth_token is None and not cfg.allow_unauthenticated:
        raise ConfigError(
            "serving: refusing to listen without an auth token; set serving.auth_token (or "
            "serving.allow_unauthenticated=true for local development), or use with_auth()"
        )


def worker_count(cfg: ServingConfig) -> int:
    return cfg.workers or os.cpu_count() or 1


def run(cfg: ServingConfig, service: SlateService) -> None:
    """Serve until interrupted (one process); queued events are flushed on shutdown."""
    _refuse_open(service.cfg)
    uvicorn.run(create_app(service), host=cfg.host, port=cfg.port, log_level="info",
                access_log=False)  # uvloop + httptools when installed


def run_workers(cfg: ServingConfig) -> None:
    """Serve with worker_count(cfg) processes on one port (uvicorn's supervisor binds it and
    restarts a worker that dies). Workers read their config from the environment, like any
    `loopline` process: the effective serving settings (host, port, token, Kafka switch) are
    exported first, so every worker runs exactly what was checked here."""
    _refuse_open(cfg)
    shared = Path(tempfile.mkdtemp(prefix="loopline-serving-"))
    (shared / "metrics").mkdir()
    env = {SHARED_DIR_ENV: str(shared),
           # prometheus-client's (and Feast's) multiprocess folder: ours, before any import
           "PROMETHEUS_MULTIPROC_DIR": str(shared / "metrics"),
           "PROMETHEUS_MULTIPROCESS_DIR": str(shared / "metrics"),
           "LOOPLINE_SERVING_HOST": cfg.host, "LOOPLINE_SERVING_PORT": str(cfg.port),
           "LOOPLINE_SERVING_KAFKA_ENABLED": str(cfg.kafka_enabled).lower()}
    if cfg.auth_token is not None:
        env["LOOPLINE_SERVING_AUTH_TOKEN"] = cfg.auth_token
    os.environ.update(env)
    try:
        uvicorn.run("models.serving.server:worker_app", factory=True,
                    workers=worker_count(cfg), host=cfg.host, port=cfg.port, log_level="info",
                    access_log=False)  # uvloop + httptools when installed
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def worker_app() -> FastAPI:
    """One worker's app (uvicorn factory): config from the environment run_workers set."""
    from feature_repo.store import load_feast
    from loopline.kafka import load_kafka
    from loopline.paths import load_paths
    from models.serving.config import load_serving
    from models.serving.workers import WorkerBoard

    cfg = load_serving()
    service = build_service(cfg, load_paths(), load_feast(),
                            load_kafka() if cfg.kafka_enabled else None)
    board = WorkerBoard(Path(os.environ[SHARED_DIR_ENV]) / "health",
                        loss_hold_s=cfg.event_loss_hold_s)
    board.start(service.health)
    return create_app(service, health_view=lambda: board.merged(service.health))
