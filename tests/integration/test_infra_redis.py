"""The local Redis: idempotent up, loopback only, usable, no persistence."""

from __future__ import annotations

import pytest
import redis as redis_client

from infra import process
from infra.redis_server import RedisEndpoint, RedisServer

pytestmark = pytest.mark.integration


def test_up_again_keeps_the_same_server(redis_server: RedisServer) -> None:
    before = redis_server.status()
    after = redis_server.up()
    assert after.running and after.pids == before.pids


def test_answers_and_stores(redis: RedisEndpoint) -> None:
    client = redis_client.Redis(host=redis.host, port=redis.port)
    try:
        client.set("loopline:test", b"value")
        assert client.get("loopline:test") == b"value"
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        client.close()


def test_listens_on_loopback_only(redis: RedisEndpoint) -> None:
    assert process.listen_addresses(redis.port) == {"127.0.0.1"}
