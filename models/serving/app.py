"""The HTTP face of serving (FastAPI): POST /rank, GET /healthz, GET /metrics (if enabled).

Requests are validated by pydantic plus the configured limits; anything malformed gets a 4xx
whose body says in one line what was expected and what arrived:
    {"error": "k: 12 exceeds the 10 candidates", "details": [...]}
Above the admission limit /rank answers 503 + Retry-After (models/serving/admission.py);
/healthz answers 503 while the ServingEvent log is at risk (models/serving/health.py).
"""

from __future__ import annotations

import hmac
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.serving import health
from models.serving.admission import ARRIVED, Admission, ASGIApp, Receive, Scope, Send
from models.serving.config import ServingConfig
from models.serving.service import Slate, SlateService


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


def _limits_problem(req: RankRequest, cfg: ServingConfig) -> str | None:
    """The configured limits a valid request may still exceed (answered 422)."""
    if len(req.candidates) > cfg.max_candidates:
        return f"candidates: {len(req.candidates)} exceed the limit of {cfg.max_candidates}"
    if req.k > cfg.max_k:
        return f"k: {req.k} exceeds the limit of {cfg.max_k}"
    return None


def _slate_body(slate: Slate) -> dict[str, Any]:
    """The /rank answer (RankResponse), built directly: valid by construction."""
    return {"request_id": slate.request_id, "model_version": slate.model_version,
            "arm": slate.arm, "policy": slate.policy, "fallback": slate.fallback,
            "slate": [{"item_id": i.item_id, "position": i.position, "score": i.score,
                       "propensity": i.propensity} for i in slate.items]}


def _invalid_body(errors: list[Any]) -> dict[str, Any]:
    """The 422 body of a request that failed validation: one line plus the details."""
    details = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]
    return {"error": _one_line(details), "details": details}


class RankEndpoint:
    """POST /rank as pure ASGI, inside auth and admission, in front of FastAPI's routing.

    FastAPI's per-request machinery (exception and exit-stack middlewares, routing,
    dependency solving, a json.loads pass before pydantic's, JSONResponse) cost about as
    much CPU as ranking itself once the rest was made cheap (bench/serving_profile.py). Here
    the raw body is validated by the same pydantic model in one pass, the same limits apply,
    errors get the same {"error", "details"} bodies (locations under "body", as FastAPI
    reports them), and the work runs on the same thread pool. Everything else, including
    the /rank route that documents this one in the OpenAPI schema, is FastAPI's."""

    def __init__(self, app: ASGIApp, service: SlateService) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/rank" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its request
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        content_type = next((v for k, v in scope["headers"] if k == b"content-type"), None)
        status, body = await anyio.to_thread.run_sync(
            self._answer, b"".join(chunks), content_type, scope.get(ARRIVED))
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _answer(self, raw: bytes, content_type: bytes | None,
                arrived: float | None) -> tuple[int, bytes]:
        try:
            req = _parse(raw, content_type)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            return 422, json.dumps(_invalid_body(errors)).encode()
        problem = _limits_problem(req, self.service.cfg)
        if problem is not None:
            return 422, json.dumps({"error": _printable(problem)}).encode()
        slate = self.service.rank(req.user_id, req.session_id, req.candidates, req.k)
        if arrived is not None:
            self.service.metrics.latency.labels("true" if slate.fallback else "false").observe(
                time.perf_counter() - arrived)
        return 200, orjson.dumps(_slate_body(slate))


def _parse(raw: bytes, content_type: bytes | None) -> RankRequest:
    """The request from its body, read as JSON when the content type is JSON or absent (what
    FastAPI does); any other content type is validated as the raw bytes, and refused."""
    if content_type is not None:
        kind = content_type.split(b";", 1)[0].strip().lower()
        if not (kind == b"application/json" or (kind.startswith(b"application/")
                                                 and kind.endswith(b"+json"))):
            return RankRequest.model_validate(raw)
    return RankRequest.model_validate_json(raw)


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
        return JSONResponse(status_code=422, content=_invalid_body(list(exc.errors())))

    # Starlette's own HTTPException too (FastAPI's subclasses it): a body that cannot be
    # parsed at all is raised as one, and must get the same {"error": ...} shape.
    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code,
                            content={"error": _printable(str(exc.detail))},
                            headers=getattr(exc, "headers", None))

    # Middlewares added later run first: auth, then admission (an unauthenticated caller
    # never takes a slot), then POST /rank, then the rest of the app.
    app.add_middleware(RankEndpoint, service=service)
    app.add_middleware(Admission, limit=cfg.max_in_flight, max_waiting=cfg.max_waiting,
                       wait_s=cfg.queue_wait_ms / 1000, retry_after_s=cfg.retry_after_s,
                       on_shed=service.count_shed)
    if cfg.auth_token is not None:
        app.add_middleware(BearerAuth, token=cfg.auth_token)

    @app.post("/rank", response_model=RankResponse)
    def rank(req: RankRequest) -> Response:
        """Documents POST /rank in the OpenAPI schema; RankEndpoint answers it, the same way."""
        problem = _limits_problem(req, cfg)
        if problem is not None:
            raise HTTPException(422, problem)
        slate = service.rank(req.user_id, req.session_id, req.candidates, req.k)
        return Response(orjson.dumps(_slate_body(slate)), media_type="application/json")

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
