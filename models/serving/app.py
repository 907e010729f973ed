"""The HTTP face of serving (FastAPI): POST /rank, GET /healthz.

Requests are validated by pydantic plus the configured limits; anything malformed gets a 4xx
whose body says in one line what was expected and what arrived:
    {"error": "k: 12 exceeds the 10 candidates", "details": [...]}
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def create_app(service: SlateService) -> FastAPI:
    """The app around one SlateService (its lifetime is the app's)."""
    cfg = service.cfg

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

    if cfg.auth_token is not None:
        expected = cfg.auth_token.encode()

        # A middleware, not a route dependency: every path but /healthz is guarded, including
        # /docs, /openapi.json and unknown paths (401 before 404, so nothing can be probed).
        @app.middleware("http")
        async def _authorised(request: Request, call_next: Any) -> Any:
            if request.url.path == "/healthz":
                return await call_next(request)
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                     expected):
                return JSONResponse(status_code=401,
                                    content={"error": "missing or wrong bearer token"},
                                    headers={"WWW-Authenticate": "Bearer"})
            return await call_next(request)

    @app.post("/rank", response_model=RankResponse)
    def rank(req: RankRequest) -> RankResponse:
        if len(req.candidates) > cfg.max_candidates:
            raise HTTPException(422, f"candidates: {len(req.candidates)} exceed the limit of "
                                     f"{cfg.max_candidates}")
        if req.k > cfg.max_k:
            raise HTTPException(422, f"k: {req.k} exceeds the limit of {cfg.max_k}")
        slate = service.rank(req.user_id, req.session_id, req.candidates, req.k)
        return RankResponse(
            request_id=slate.request_id, model_version=slate.model_version, arm=slate.arm,
            policy=slate.policy, fallback=slate.fallback,
            slate=[SlateItemOut(item_id=i.item_id, position=i.position, score=i.score,
                                propensity=i.propensity) for i in slate.items],
        )

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return service.health()

    return app
