"""loopline.net: the loopback test that guards serving and local services, and free ports."""

from __future__ import annotations

import socket

import pytest

from loopline.net import free_port, is_loopback


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.10", "::1"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "::", "example.com", ""])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_free_port_prefers_the_given_port_and_skips_taken_and_avoided_ones() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        port = free_port(taken)
        assert port != taken
        assert free_port(port) == port
        assert free_port(port, avoid={port}) != port
