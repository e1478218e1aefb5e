"""``/_ping``, ``/version``, ``/info``, ``/system/df``, ``/events`` and
``/dockyard/system/check``.

``GET /events`` streams the engine's events as JSON lines (Docker's EventMessage):
``since`` replays what the bus kept; ``until`` ends the stream once that time has
passed (at once when it is in the past); without it the stream runs until the
client goes away.  Delivery from engine threads is one ``call_soon_threadsafe``
per event: nothing here blocks the loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable, Protocol

from aiohttp import web

from ...engine.system.service import DataUsage
from ...errors import InvalidParameter
from ..bodies import json_query
from ..context import HUB, blocking
from ..middleware import API_VERSION

IDLE = 1.0  # seconds between looks at a quiet stream's connection and clock


class SystemBackend(Protocol):
    """What these routes call (:class:`dockyard.engine.system.service.SystemService`)."""

    def version(self) -> dict: ...
    def info(self, listeners: int = 0) -> dict: ...
    def data_usage(self) -> DataUsage: ...
    def check(self) -> dict: ...
    def subscribe_events(self, listener: Callable[[dict], None], since_ns: int | None = None) -> list[dict]: ...
    def unsubscribe_events(self, listener: Callable[[dict], None]) -> None: ...
    def event_filters(self, raw: dict | None) -> dict[str, list[str]]: ...
    def event_time(self, value: object) -> int | None: ...
    def event_matches(self, message: dict, filters: dict[str, list[str]]) -> bool: ...


BACKEND = web.AppKey("system", SystemBackend)


def backend(request: web.Request) -> SystemBackend:
    return request.app[BACKEND]


async def ping(request: web.Request) -> web.Response:
    headers = {"Api-Version": API_VERSION, "Ostype": "linux", "Docker-Experimental": "false",
               "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
               "Builder-Version": "1"}
    if request.method == "HEAD":
        return web.Response(status=200, headers=headers)
    return web.Response(text="OK", headers=headers)


async def version(request: web.Request) -> web.Response:
    return web.json_response(await blocking(request, backend(request).version))


async def info(request: web.Request) -> web.Response:
    hub: Any = request.app.get(HUB)
    listeners = len(hub.listeners) if hub is not None else 0
    return web.json_response(await blocking(request, backend(request).info, listeners))


async def system_df(request: web.Request) -> web.Response:
    usage = await blocking(request, backend(request).data_usage)
    containers = []
    for c in usage.containers:
        summary = c.record.summary().to_api()
        summary["SizeRw"], summary["SizeRootFs"] = c.size_rw, c.size_root_fs
        containers.append(summary)
    return web.json_response({"LayersSize": usage.layers_size, "Images": usage.images, "Containers": containers,
                              "Volumes": usage.volumes, "BuildCache": usage.build_cache})


async def system_check(request: web.Request) -> web.Response:
    return web.json_response(await blocking(request, backend(request).check))


def _events_query(request: web.Request, system: SystemBackend) -> tuple[dict, int | None, int | None]:
    raw = json_query(request, "filters", dict)
    try:
        filters = system.event_filters(raw)
    except ValueError as exc:
        raise InvalidParameter(f"invalid filters: {exc}") from None
    times = {}
    for key in ("since", "until"):
        try:
            times[key] = system.event_time(request.query.get(key))
        except ValueError as exc:
            raise InvalidParameter(f"{key}: {exc}") from None
    since, until = times["since"], times["until"]
    if since is not None and until is not None and until < since:
        raise InvalidParameter(f"`since` time ({request.query['since']}) cannot be after "
                               f"`until` time ({request.query['until']})")
    return filters, since, until


async def events(request: web.Request) -> web.StreamResponse:
    system = backend(request)
    filters, since, until = _events_query(request, system)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def deliver(msg: dict) -> None:  # an engine thread, under the bus's lock
        loop.call_soon_threadsafe(queue.put_nowait, msg)

    past = system.subscribe_events(deliver, since)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    try:
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for msg in past:
            if until is not None and msg["timeNano"] > until:
                break
            if system.event_matches(msg, filters):
                await resp.write(json.dumps(msg).encode() + b"\n")
        while True:
            now = time.time_ns()
            if until is not None and now > until:
                break
            wait = IDLE if until is None else min(IDLE, max(0.0, (until - now) / 1e9))
            try:
                msg = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    break  # the client went away
                continue
            if until is not None and msg["timeNano"] > until:
                break
            if system.event_matches(msg, filters):
                await resp.write(json.dumps(msg).encode() + b"\n")
        try:
            await resp.write_eof()
        except ConnectionError:
            pass
        return resp
    except ConnectionError:
        return resp
    finally:
        system.unsubscribe_events(deliver)


ROUTES = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
    ("GET", "/system/df", system_df),
    ("GET", "/events", events),
    ("GET", "/dockyard/system/check", system_check),
]
