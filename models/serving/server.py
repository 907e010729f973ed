"""`loopline serve`: wire config → Feast store, registry, Kafka sink → app → uvicorn.

Start-up refuses to serve when the ServingEvent topic is missing or not writable (a clear
error, exit 1): slates whose impressions never reach Kafka break the loop silently.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace

import uvicorn

from feature_repo.store import FeastConfig, feature_store
from loopline.errors import ConfigError, LooplineError
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from models.registry import Registry
from models.serving.app import create_app
from models.serving.config import ServingConfig
from models.serving.events import KafkaSink, check_topic
from models.serving.service import SlateService

log = logging.getLogger(__name__)


def check_event_log(cfg: ServingConfig, kafka: KafkaConfig | None) -> None:
    """Raise EventLogError unless ServingEvents can be written (skipped without Kafka or
    with serving.check_topics = false)."""
    if kafka is not None and cfg.check_topics:
        check_topic(kafka, cfg.event_topic)


def build_service(cfg: ServingConfig, paths: PathsConfig, feast: FeastConfig,
                  kafka: KafkaConfig | None) -> SlateService:
    """A ready service; a Feast store that cannot be opened means popularity-only serving."""
    try:
        store = feature_store(feast, paths)
    except LooplineError as exc:
        log.error("serving without features (popularity only): %s", exc)
        store = None
    sink = (KafkaSink(kafka, cfg.event_queue_size, topic=cfg.event_topic)
            if kafka is not None else None)
    service = SlateService(cfg, Registry.from_paths(paths), store, sink)
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


def run(cfg: ServingConfig, service: SlateService) -> None:
    """Serve until interrupted; queued events are flushed on shutdown."""
    _refuse_open(service.cfg)
    uvicorn.run(create_app(service), host=cfg.host, port=cfg.port, log_level="info",
                access_log=False, http="httptools", loop="uvloop")
