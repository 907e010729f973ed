"""Small network helpers shared by services, serving, benchmarks and tests."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from loopline.errors import LooplineError


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1); names are not resolved."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(preferred: int = 0, avoid: Iterable[int] = (), host: str = "127.0.0.1") -> int:
    """`preferred` if it can be bound now, else an ephemeral port; never one in `avoid`.

    The port is free when this returns, not reserved: a caller starting a service on it
    should be ready to pick again if something else took it meanwhile."""
    taken = set(avoid)
    for candidate in (preferred, 0, 0, 0):
        if candidate in taken and candidate != 0:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port
    raise LooplineError(f"no free TCP port on {host}")
