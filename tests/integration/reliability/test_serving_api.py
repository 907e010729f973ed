"""Serving API under fuzzing (hypothesis) and its access rules.

* No input — arbitrary JSON, arbitrary bytes, near-valid requests with hostile values (huge or
  negative numbers, lone surrogates, NUL bytes, duplicates) — gets a 5xx; malformed input gets
  a 4xx whose body says what was wrong in one line.
* With a token configured every path but /healthz (docs, OpenAPI schema, unknown paths too)
  answers 401 without `Authorization: Bearer <token>`.
* `loopline serve` binds to loopback by default and, with no token configured and no explicit
  `serving.allow_unauthenticated` (local development), generates a token and prints it; the
  open mode is refused on a non-loopback host.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra import process
from loopline.errors import ConfigError
from loopline.net import free_port
from models.registry import Registry
from models.serving.app import create_app
from models.serving.config import ServingConfig
from models.serving.server import run as serve_forever
from models.serving.server import with_auth
from models.serving.service import SlateService
from models.training import TrainingConfig, train
from tests.unit.models.conftest import SLICE, build_shop, loopline_home

pytestmark = pytest.mark.integration

TOKEN = "fuzz-token-" + "x" * 20
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, list[str]]]:
    """The real app over a trained LightGBM version and a real SQLite Feast store."""
    from models.rollout import Rollout
    from models.slices import SliceRange

    with loopline_home(tmp_path_factory.mktemp("serving-home")) as paths:
        shop = build_shop(paths)
        version = train(paths, SliceRange.parse(SLICE), shop.store,
                        TrainingConfig(num_boost_round=20)).version
        registry = Registry.from_paths(paths)
        Rollout(registry).full(version)
        cfg = ServingConfig(seed=1, auth_token=TOKEN, score_timeout_ms=10_000, max_k=20,
                            max_candidates=200)
        service = SlateService(cfg, registry, shop.store, lambda _event: None)
        service.warm()
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            yield client, list(shop.world.items[:40])


def _check(response: Any) -> None:
    """Never a 5xx; a 4xx says what was wrong, in one line."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("error"), str) and body["error"], body
        assert "\n" not in body["error"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=5),
    max_leaves=20,
)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40), st.just(""), st.just(" "), st.just("\x00"), st.just("a" * 300),
    st.just("\ud800"), st.just("👩‍💻"), st.just("' OR 1=1 --"), st.just("../../etc/passwd"),
)
NUMBERS = st.one_of(st.integers(), st.just(10**40), st.just(-1), st.just(0),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                    st.none(), st.booleans())


@st.composite
def _near_valid(draw: st.DrawFn, items: list[str]) -> dict[str, Any]:
    """A valid request with none, one or two fields swapped for hostile values."""
    candidates = draw(st.lists(st.sampled_from(items), min_size=1, max_size=30, unique=True))
    body: dict[str, Any] = {
        "user_id": draw(st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]),
                                min_size=1, max_size=30).filter(str.strip)),
        "session_id": f"s-{draw(st.integers(0, 99))}",
        "candidates": candidates,
        "k": draw(st.integers(1, min(len(candidates), 20))),
    }
    hostile = {
        "user_id": HOSTILE_TEXT, "session_id": HOSTILE_TEXT, "k": NUMBERS,
        "candidates": st.one_of(
            st.lists(st.sampled_from(items), min_size=0, max_size=30),  # repeats, empty
            st.lists(HOSTILE_TEXT, max_size=10), st.lists(JSON, max_size=5), JSON,
            st.lists(st.sampled_from(items), min_size=201, max_size=260)),  # > max_candidates
        "extra": JSON,
    }
    for field in draw(st.lists(st.sampled_from(sorted(hostile)), max_size=2, unique=True)):
        body[field] = draw(hostile[field])
    if draw(st.booleans()) and draw(st.booleans()):
        body.pop(draw(st.sampled_from(sorted(body))))  # a missing field
    return body


def test_arbitrary_json_never_gets_a_5xx(served: tuple[TestClient, list[str]]) -> None:
    client, _ = served

    @FUZZ
    @given(body=JSON)
    def check(body: Any) -> None:
        _check(client.post("/rank", content=json.dumps(body, allow_nan=True),
                           headers={**AUTH, "content-type": "application/json"}))

    check()


def test_near_valid_requests_get_a_slate_or_a_clear_4xx(
    served: tuple[TestClient, list[str]]
) -> None:
    client, items = served
    outcomes: dict[int, int] = {}

    @FUZZ
    @given(body=_near_valid(items))
    def check(body: dict[str, Any]) -> None:
        # json.dumps keeps lone surrogates as \\ud800 escapes, as a hostile client would send.
        response = client.post("/rank", content=json.dumps(body, allow_nan=True),
                               headers={**AUTH, "content-type": "application/json"})
        _check(response)
        outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1
        if response.status_code == 200:
            slate = response.json()["slate"]
            k = int(body["k"])
            assert len(slate) == k and [s["position"] for s in slate] == list(range(k))
            assert {s["item_id"] for s in slate} <= set(body["candidates"])

    check()
    print("serving fuzz outcomes:", outcomes)
    assert outcomes.get(200) and sum(v for k, v in outcomes.items() if 400 <= k < 500)


def test_arbitrary_bytes_and_content_types_never_get_a_5xx(
    served: tuple[TestClient, list[str]]
) -> None:
    client, _ = served

    @FUZZ
    @given(body=st.binary(max_size=300),
           content_type=st.sampled_from(["application/json", "text/plain", "",
                                         "application/x-www-form-urlencoded",
                                         "multipart/form-data; boundary=x"]))
    def check(body: bytes, content_type: str) -> None:
        _check(client.post("/rank", content=body,
                           headers={**AUTH, "content-type": content_type}))

    check()


def test_without_the_token_only_healthz_answers(served: tuple[TestClient, list[str]]) -> None:
    client, items = served
    good = {"user_id": "u1", "session_id": "s1", "candidates": items[:5], "k": 2}
    assert client.get("/healthz").status_code == 200
    assert client.post("/rank", json=good, headers=AUTH).status_code == 200
    for headers in ({}, {"Authorization": TOKEN}, {"Authorization": "Bearer wrong"},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"},
                    {"Authorization": f"Bearer {TOKEN}x"}, {"X-Token": TOKEN}):
        for method, path in (("POST", "/rank"), ("GET", "/docs"), ("GET", "/openapi.json"),
                             ("GET", "/redoc"), ("GET", "/nope"), ("DELETE", "/rank")):
            response = client.request(method, path, json=good, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.status_code)
            assert response.headers["www-authenticate"] == "Bearer"
    # The scheme is case-insensitive (RFC 7235); unknown paths with the token are plain 404s.
    assert client.post("/rank", json=good, headers={"Authorization": f"bearer {TOKEN}"}
                       ).status_code == 200
    assert client.get("/nope", headers=AUTH).status_code == 404

    @FUZZ
    @given(header=st.text(max_size=60).filter(lambda h: h.strip() != f"Bearer {TOKEN}"),
           path=st.sampled_from(["/rank", "/docs", "/openapi.json", "/x", "/rank/"]))
    def check(header: str, path: str) -> None:
        try:
            response = client.post(path, json=good, headers={"Authorization": header})
        except Exception:  # not a header value HTTP can carry: the client refuses to send it
            return
        assert response.status_code == 401

    check()


def test_open_serving_takes_the_explicit_local_development_switch() -> None:
    default = ServingConfig()
    assert default.host == "127.0.0.1" and default.auth_token is None
    assert not default.allow_unauthenticated
    secured, generated = with_auth(default)
    assert generated and secured.auth_token == generated and len(generated) >= 16
    assert with_auth(replace(default, auth_token="k" * 16)) == (replace(default,
                                                                        auth_token="k" * 16),
                                                                None)
    dev = ServingConfig(allow_unauthenticated=True)
    assert with_auth(dev) == (dev, None)
    with pytest.raises(ConfigError, match="loopback"):
        ServingConfig(host="0.0.0.0", allow_unauthenticated=True)
    with pytest.raises(ConfigError, match="auth token"):  # run() refuses an open service
        serve_forever(default, _service_with(default))


def _service_with(cfg: ServingConfig) -> SlateService:
    return SlateService(cfg, Registry(Path("/nonexistent-registry")), None, lambda _e: None)


def test_loopline_serve_binds_loopback_and_prints_a_generated_token(tmp_path: Path) -> None:
    port = free_port(18000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_SERVING_")}
    env.update(LOOPLINE_PATHS_HOME=str(tmp_path), LOOPLINE_SERVING_PORT=str(port))
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--no-kafka"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        token = None
        for line in proc.stdout:
            lines.append(line)
            if match := re.search(r"auth token for this run.*: (\S+)$", line.strip()):
                token = match.group(1)
            if "Uvicorn running" in line or "Application startup complete" in line:
                break
        assert token, "".join(lines)
        assert process.wait_until(lambda: process.port_open("127.0.0.1", port), 60,
                                  lambda: proc.poll() is None)
        assert process.listen_addresses(port) == {"127.0.0.1"}
        import httpx

        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
        body = {"user_id": "u1", "session_id": "s1", "candidates": ["a", "b", "c"], "k": 2}
        assert httpx.post(f"{base}/rank", json=body, timeout=10).status_code == 401
        ok = httpx.post(f"{base}/rank", json=body, timeout=30,
                        headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200, ok.text  # popularity fallback: no model registered
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
