"""Every answer's frame: the API version check, Docker-shaped errors (the engine's
errors to their statuses, a full disk to 507, a client that hung up logged at
debug), Docker's headers, and 404 for an unknown path."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, Awaitable, Callable

from aiohttp import web

from .. import __version__
from ..engine.containers.service import NotModified
from ..errors import DockyardError, NoSpace, full_disk_code
from .context import DATA_ROOT

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
log = logging.getLogger("dockyard.api")
_VERSIONED = re.compile(r"^/v(?P<v>[0-9]+\.[0-9]+)(?P<rest>/.*)$")


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def error(status: int, message: str) -> web.Response:
    # exactly "application/json": the docker CLI shows the message only then
    return web.Response(body=json.dumps({"message": message}).encode(), status=status,
                        content_type="application/json")


@web.middleware
async def docker_errors(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    m = _VERSIONED.match(request.path)
    if m:
        v = m.group("v")
        if _vtuple(v) < _vtuple(MIN_API_VERSION):
            return error(400, f"client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                              "please upgrade your client to a newer version")
        if _vtuple(v) > _vtuple(API_VERSION):
            return error(400, f"client version {v} is too new. Maximum supported API version is {API_VERSION}")
    resp: web.StreamResponse
    try:
        resp = await handler(request)
    except NotModified:
        resp = web.Response(status=304)
    except DockyardError as exc:
        resp = error(exc.status, str(exc))
    except json.JSONDecodeError as exc:
        resp = error(400, f"invalid JSON in request body: {exc}")
    except web.HTTPRequestEntityTooLarge as exc:  # aiohttp's own bound (client_max_size)
        resp = error(413, exc.text or "")
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug: say so, keep serving (a full disk is no bug: say so)
        if isinstance(exc, ConnectionError) and (request.transport is None or request.transport.is_closing()):
            # a client that hung up on a stream (logs -f, stats, cp, a build): no failure of ours
            log.debug("%s %s: the client went away (%s)", request.method, request.path, exc)
            resp = error(499, "the client went away")  # never sent: aiohttp drops the connection
        elif full_disk_code(exc) is not None:
            full = NoSpace(f"{request.method} {m.group('rest') if m else request.path}",
                           request.app.get(DATA_ROOT, ""))
            resp = error(full.status, str(full))
        else:
            log.exception("%s %s failed", request.method, request.path)
            resp = error(500, f"internal error: {type(exc).__name__}: {exc}")
    if not resp.prepared:
        resp.headers["Api-Version"] = API_VERSION
        resp.headers["Server"] = f"Dockyard/{__version__} (linux)"
        resp.headers["Ostype"] = "linux"
        resp.headers["Docker-Experimental"] = "false"
    return resp


async def not_found(request: web.Request) -> web.Response:
    return error(404, f"page not found: {request.method} {request.path}")


def add_routes(app: web.Application, routes: list[tuple[str, str, Any]]) -> None:
    """Register each ``(method, path, handler)`` plain and under ``/v{version}``."""
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, r"/{version:v[0-9]+\.[0-9]+}" + path, handler)
