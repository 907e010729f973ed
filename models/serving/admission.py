"""Admission control for /rank (pure ASGI middleware): overload is answered, not absorbed.

At most `limit` requests are worked on at once; up to `max_waiting` more wait at most
`wait_s` for a slot (first come, first served); anything beyond is refused at once with
503 + Retry-After, before its body is parsed. Above the knee this keeps the latency of
answered requests bounded (at most `limit` share the CPU) and makes the excess explicit and
counted, where an unbounded queue would let every request slow down until the lookup budget
ran out and popularity silently served everyone.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ARRIVED = "loopline.arrived"  # scope key: perf_counter() when the request reached serving


class Admission:
    """Bounded concurrency with a short, bounded wait for the paths it guards."""

    def __init__(self, app: ASGIApp, *, limit: int, max_waiting: int, wait_s: float,
                 retry_after_s: int, on_shed: Callable[[], None],
                 paths: frozenset[str] = frozenset({"/rank"})) -> None:
        self.app, self.paths = app, paths
        self.limit, self.max_waiting, self.wait_s = limit, max_waiting, wait_s
        self.retry_after_s, self.on_shed = retry_after_s, on_shed
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        scope[ARRIVED] = time.perf_counter()
        if not await self._acquire():
            self.on_shed()
            await self._refuse(send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    async def _acquire(self) -> bool:
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return True
        if len(self._waiters) >= self.max_waiting or self.wait_s <= 0:
            return False
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(slot)
        await asyncio.wait({slot}, timeout=self.wait_s)
        if slot.done() and not slot.cancelled():
            return True  # _release handed its slot over (in_flight unchanged)
        slot.cancel()
        self._waiters.remove(slot)
        return False

    def _release(self) -> None:
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                slot.set_result(None)
                return
        self.in_flight -= 1

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": f"overloaded: {self.in_flight} requests in flight and "
                                    f"{len(self._waiters)} waiting; retry after "
                                    f"{self.retry_after_s} s"}).encode()
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(self.retry_after_s).encode())]})
        await send({"type": "http.response.body", "body": body})
