"""The aiohttp application: routing, Docker-shaped errors, the engine's events.

Handlers never block the event loop: engine calls go through :func:`blocking`,
which runs them on the daemon's thread pool.
"""

import asyncio
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from .. import __version__
from ..errors import DockyardError, InvalidParameter, NoSpace, full_disk_code
from ..engine.containers import NotModified

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
log = logging.getLogger("dockyard.api")
ENGINE = web.AppKey("engine", object)
HUB = web.AppKey("hub", object)
POOL = web.AppKey("pool", object)
#: the threads that read the store for list answers (see listing.py)
LIST_POOL = web.AppKey("list_pool", object)
_VERSIONED = re.compile(r"^/v(?P<v>[0-9]+\.[0-9]+)(?P<rest>/.*)$")


def _vtuple(v):
    return tuple(int(x) for x in v.split("."))


class EventHub:
    """Fans engine events (emitted in worker threads) out to asyncio listeners."""

    def __init__(self, loop):
        self.loop = loop
        self.listeners = set()

    def __call__(self, type_, action, id_, attributes):  # engine thread
        self.loop.call_soon_threadsafe(self._dispatch, (type_, action, id_, dict(attributes)))

    def _dispatch(self, event):
        for queue in list(self.listeners):
            queue.put_nowait(event)

    def listen(self):
        queue = asyncio.Queue()
        self.listeners.add(queue)
        return queue

    def close(self, queue):
        self.listeners.discard(queue)


async def blocking(request, fn, *args, pool=POOL, **kwargs):
    """Run a blocking engine call on the daemon's pool (or the one ``pool`` names)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[pool], lambda: fn(*args, **kwargs))


def engine(request):
    return request.app[ENGINE]


def error(status, message):
    # exactly "application/json": the docker CLI shows the message only then
    return web.Response(body=json.dumps({"message": message}).encode(), status=status,
                        content_type="application/json")


@web.middleware
async def docker_errors(request, handler):
    m = _VERSIONED.match(request.path)
    if m:
        v = m.group("v")
        if _vtuple(v) < _vtuple(MIN_API_VERSION):
            return error(400, f"client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                              "please upgrade your client to a newer version")
        if _vtuple(v) > _vtuple(API_VERSION):
            return error(400, f"client version {v} is too new. Maximum supported API version is {API_VERSION}")
    try:
        resp = await handler(request)
    except NotModified:
        resp = web.Response(status=304)
    except DockyardError as exc:
        resp = error(exc.status, str(exc))
    except json.JSONDecodeError as exc:
        resp = error(400, f"invalid JSON in request body: {exc}")
    except web.HTTPRequestEntityTooLarge as exc:  # aiohttp's own bound (client_max_size)
        resp = error(413, exc.text)
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
            full = NoSpace(f"{request.method} {m.group('rest') if m else request.path}", engine(request).data_root)
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


async def not_found(request):
    return error(404, f"page not found: {request.method} {request.path}")


def add_routes(app, routes):
    """Register each ``(method, path, handler)`` plain and under ``/v{version}``."""
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, r"/{version:v[0-9]+\.[0-9]+}" + path, handler)


def make_app(eng):
    from . import (archive_api, build_api, containers_api, containers_more_api, events_api, exec_api, images_api,
                   networks_api, registry_api, storage_api, swarm_api, system_api, system_more_api, volumes_api)

    from .bodies import JSON_LIMIT

    # a body is read whole only through bodies.json_body; this bounds any other reader too
    app = web.Application(middlewares=[docker_errors], client_max_size=JSON_LIMIT)
    app[ENGINE] = eng
    app[POOL] = ThreadPoolExecutor(max_workers=64, thread_name_prefix="api")
    app[LIST_POOL] = ThreadPoolExecutor(max_workers=2, thread_name_prefix="list")

    async def on_startup(app):
        hub = EventHub(asyncio.get_running_loop())
        app[HUB] = hub
        eng.subscribe(hub)

    async def on_cleanup(app):
        eng.unsubscribe(app[HUB])
        app[POOL].shutdown(wait=False, cancel_futures=True)
        app[LIST_POOL].shutdown(wait=False, cancel_futures=True)

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    add_routes(app, system_api.ROUTES + system_more_api.ROUTES + images_api.ROUTES + build_api.ROUTES
               + registry_api.ROUTES + containers_api.ROUTES + containers_more_api.ROUTES + archive_api.ROUTES
               + events_api.ROUTES + exec_api.ROUTES + networks_api.ROUTES + volumes_api.ROUTES + swarm_api.ROUTES
               + storage_api.install(app))
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


def qbool(request, name, default=False):
    value = request.query.get(name)
    if value is None:
        return default
    return value.lower() in ("1", "true", "yes")


def qint(request, name, default=None, lo=-2 ** 63, hi=2 ** 63 - 1):
    """An integer query parameter within ``lo``..``hi`` (by default Go's int, as
    dockerd's ``strconv.Atoi``); anything else is a 400 naming the parameter."""
    value = request.query.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(value.strip(), 10)
    except ValueError:
        raise InvalidParameter(f"invalid value for {name}: {value[:64]!r} (an integer is expected)") from None
    if not lo <= number <= hi:
        raise InvalidParameter(f"invalid value for {name}: {value[:64]} is out of range ({lo} to {hi})")
    return number


def qfloat(request, name, default=0.0):
    """A number query parameter (``since``/``until`` of logs: seconds, maybe with a fraction)."""
    value = request.query.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidParameter(f"invalid value for {name}: {value[:64]!r} (a number is expected)")
    return number


def qfilters(request):
    """``filters`` (``{"key": ["v"]}`` or the legacy ``{"key": {"v": true}}``) → ``{"key": ["v"]}``;
    any other shape is a 400, as dockerd's ``filters.FromJSON``."""
    from .bodies import json_query

    out = {}
    for key, wanted in json_query(request, "filters", dict).items():
        if isinstance(wanted, dict) and all(isinstance(v, bool) for v in wanted.values()):
            values = [v for v, on in wanted.items() if on]
        elif isinstance(wanted, list) and all(isinstance(v, str) for v in wanted):
            values = list(wanted)
        else:
            raise InvalidParameter(f"invalid filter '{key}': a list of strings or an object of booleans "
                                   "is expected")
        out[key] = values
    return out


async def spool_body(request, eng, suffix):
    """Write the request body to a spool file in the image store (off the loop);
    return its path.  A body cut short leaves no file behind."""
    fd, path = eng.images.spool_path(suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.content.iter_chunked(1 << 20):
                await blocking(request, fh.write, chunk)
    except BaseException:
        os.unlink(path)
        raise
    return path
