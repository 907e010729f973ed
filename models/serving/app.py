"""The HTTP face of serving (FastAPI): POST /rank, GET /healthz, GET /metrics (if enabled).

Requests are validated by pydantic plus the configured limits; anything malformed gets a 4xx
whose body says in one line what was expected and what arrived:
    {"error": "k: 12 exceeds the 10 candidates", "details": [...]}
Above the admission limit /rank answers 503 + Retry-After (models/serving/admission.py);
/healthz answers 503 while the ServingEvent log is at risk (models/serving/health.py).
"""

from __future__ import annotations

import hmac
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.serving import health
from models.serving.admission import ARRIVED, Admission, ASGIApp, Receive, Scope, Send
from models.serving.service import SlateService


class RankRequest(BaseModel):
    """One ranking request: who, in which session, which candidates, how many to show."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    user_id: str = Field(min_length=1, max_length=256)
    session_id: str = Field(min_length=1, max_length=256)
    candidates: list[str] = Field(min_length=1, description="candidate item ids, distinct")
    k: int = Field(ge=1, description="slate size")

    @model_validator(mode="after")
    def _consistent(self) -> RankRequest:
        if any(not c or len(c) > 256 for c in self.candidates):
            raise ValueError("candidates must be non-empty item ids of at most 256 characters")
        dupes = sorted(c for c, n in Counter(self.candidates).items() if n > 1)
        if dupes:
            raise ValueError(f"candidates must be distinct, got duplicates {dupes[:5]}")
        if self.k > len(self.candidates):
            raise ValueError(f"k={self.k} exceeds the {len(self.candidates)} candidates")
        return self


class SlateItemOut(BaseModel):
    item_id: str
    position: int
    score: float
    propensity: float


class RankResponse(BaseModel):
    request_id: str
    model_version: str
    arm: str
    policy: str
    fallback: bool
    slate: list[SlateItemOut]


def _printable(text: str) -> str:
    """Control characters (a newline in a client's field name, say) escaped: one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _one_line(errors: list[Any]) -> str:
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return _printable("; ".join(parts))


class BearerAuth:
    """Every path but /healthz needs the bearer token, including /docs, /openapi.json,
    /metrics and unknown paths (401 before 404, so nothing can be probed). Pure ASGI: it runs
    on every request, and Starlette's BaseHTTPMiddleware costs a task and a stream per call."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.expected = app, token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, given = header.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("latin-1"),
                                                             self.expected):
            await self.app(scope, receive, send)
            return
        body = b'{"error":"missing or wrong bearer token"}'
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})


def create_app(service: SlateService,
               health_view: Callable[[], dict[str, Any]] | None = None) -> FastAPI:
    """The app around one SlateService (its lifetime is the app's). `health_view` replaces
    service.health for /healthz (several workers: every worker's view, models/serving/workers)."""
    cfg = service.cfg
    view = health_view or service.health

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()  # flush queued ServingEvents to Kafka

    app = FastAPI(title="Loopline ranker", version="1", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse(status_code=422,
                            content={"error": _one_line(errors), "details": errors})

    # Starlette's own HTTPException too (FastAPI's subclasses it): a body that cannot be
    # parsed at all is raised as one, and must get the same {"error": ...} shape.
    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code,
                            content={"error": _printable(str(exc.detail))},
                            headers=getattr(exc, "headers", None))

    # Middlewares added later run first: auth, then admission (an unauthenticated caller
    # never takes a slot), then the app.
    app.add_middleware(Admission, limit=cfg.max_in_flight, max_waiting=cfg.max_waiting,
                       wait_s=cfg.queue_wait_ms / 1000, retry_after_s=cfg.retry_after_s,
                       on_shed=service.count_shed)
    if cfg.auth_token is not None:
        app.add_middleware(BearerAuth, token=cfg.auth_token)

    @app.post("/rank", response_model=RankResponse)
    def rank(req: RankRequest, request: Request) -> JSONResponse:
        if len(req.candidates) > cfg.max_candidates:
            raise HTTPException(422, f"candidates: {len(req.candidates)} exceed the limit of "
                                     f"{cfg.max_candidates}")
        if req.k > cfg.max_k:
            raise HTTPException(422, f"k: {req.k} exceeds the limit of {cfg.max_k}")
        slate = service.rank(req.user_id, req.session_id, req.candidates, req.k)
        arrived = request.scope.get(ARRIVED)
        if arrived is not None:
            service.metrics.latency.labels("true" if slate.fallback else "false").observe(
                time.perf_counter() - arrived)
        # The body is built here, already valid by construction: returning the model would
        # have FastAPI validate and serialise it a second time on every request.
        return JSONResponse({
            "request_id": slate.request_id, "model_version": slate.model_version,
            "arm": slate.arm, "policy": slate.policy, "fallback": slate.fallback,
            "slate": [{"item_id": i.item_id, "position": i.position, "score": i.score,
                       "propensity": i.propensity} for i in slate.items],
        })

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        body = view()
        return JSONResponse(status_code=health.HTTP_CODE[body["status"]], content=body)

    if cfg.metrics_enabled:
        @app.get("/metrics")
        def metrics() -> Response:
            service.health()  # refresh the gauges read from the log and the item cache
            return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app
