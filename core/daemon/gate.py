"""Storage maintenance: while a storage migration runs, the daemon holds off every
request that could touch storage.

Requests in flight are drained first (at most :data:`DRAIN_TIMEOUT` seconds, else
409), then every request that could touch storage is answered 503 until the end;
reads of state that do not (``/_ping``, ``/version``, ``/info``, ``/events``,
listing and inspecting, logs, wait) go on.  The storage router
(:mod:`.routers.storage`) closes and opens the gate.
"""

from __future__ import annotations

import asyncio
import re
from typing import Awaitable, Callable

from aiohttp import web

from ..errors import Conflict
from .middleware import error

DRAIN_TIMEOUT = 30.0
MIGRATE_PATH = "/dockyard/storage/migrate"
_VERSION = re.compile(r"^/v[0-9]+\.[0-9]+(?=/)")
#: requests served during a migration (they never touch storage)
_ALLOWED = [re.compile(p) for p in (
    r"(GET|HEAD) /_ping", r"GET /version", r"GET /info", r"GET /events", r"GET /images/json",
    r"GET /images/.+/json", r"GET /containers/json", r"GET /containers/[^/]+/json",
    r"GET /containers/[^/]+/logs", r"POST /containers/[^/]+/wait")]


class Gate:
    """Counts requests that may touch storage; closes to drain and hold them off."""

    def __init__(self) -> None:
        self.busy = 0
        self.closed: str | None = None  # the reason, while closed

    async def close(self, reason: str) -> None:
        if self.closed:
            raise Conflict(f"storage maintenance in progress: {self.closed}")
        self.closed = reason
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT
        while self.busy:
            if loop.time() > deadline:
                self.closed = None
                raise Conflict(f"the daemon is busy ({self.busy} requests in progress); try again")
            await asyncio.sleep(0.05)

    def open(self) -> None:
        self.closed = None


GATE = web.AppKey("storage_gate", Gate)


@web.middleware
async def gate_middleware(request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    gate = request.app[GATE]
    path = _VERSION.sub("", request.path)
    line = f"{request.method} {path}"
    if path == MIGRATE_PATH or any(p.fullmatch(line) for p in _ALLOWED):
        return await handler(request)
    if gate.closed:
        return error(503, f"storage maintenance in progress ({gate.closed}); try again when it is done")
    gate.busy += 1
    try:
        return await handler(request)
    finally:
        gate.busy -= 1


def install(app: web.Application) -> None:
    """Add the gate (call before the app is started)."""
    app[GATE] = Gate()
    app.middlewares.append(gate_middleware)
