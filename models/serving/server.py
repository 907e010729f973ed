"""`loopline serve`: wire config → Feast store, registry, Kafka sink → app → uvicorn."""

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
from models.serving.events import KafkaSink
from models.serving.service import SlateService

log = logging.getLogger(__name__)


def build_service(cfg: ServingConfig, paths: PathsConfig, feast: FeastConfig,
                  kafka: KafkaConfig | None) -> SlateService:
    """A ready service; a Feast store that cannot be opened means popularity-only serving."""
    try:
        store = feature_store(feast, paths)
    except LooplineError as exc:
        log.error("serving without features (popularity only): %s", exc)
        store = None
    sink = KafkaSink(kafka, cfg.event_queue_size) if kafka is not None else None
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


def run(cfg: ServingConfig, service: SlateService) -> None:
    """Serve until interrupted; queued events are flushed on shutdown."""
    if service.cfg.auth_token is None and not service.cfg.allow_unauthenticated:
        raise ConfigError(
            "serving: refusing to listen without an auth token; set serving.auth_token (or "
            "serving.allow_unauthenticated=true for local development), or use with_auth()"
        )
    uvicorn.run(create_app(service), host=cfg.host, port=cfg.port, log_level="info",
                access_log=False)
