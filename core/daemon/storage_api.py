"""``POST /dockyard/storage/migrate``: move every layer to another storage driver, live.

Query: ``to`` (driver name), ``keep_old`` (keep the old driver's layers), ``abort``
(undo an unfinished migration).  The answer streams JSON progress lines (Docker's
``{"status", "id", "progressDetail"}``; an ``{"error", "errorDetail"}`` line ends a
failed run); refusals that come before any work (running containers, unknown or
unsupported driver, another migration) are plain JSON errors (409/400/404/500).

While it runs the daemon is in *storage maintenance*: requests in flight are
drained first (at most :data:`DRAIN_TIMEOUT` seconds, else 409), then every request
that could touch storage is answered 503 until the end; reads of state that do not
(``/_ping``, ``/version``, ``/info``, ``/events``, listing and inspecting, logs,
wait) go on.  At the switch the engine's storage slot is replaced in place (the
layer store, the containers and images all see the new driver; extensions that
wrapped the old driver wrap the new one), so no restart is needed.  The daemon
keeps no container running across a migration: they are refused, as offline.
"""

import asyncio
import json
import os
import re

from aiohttp import web

from ..errors import Conflict, InvalidParameter, NotFound
from .app import POOL, engine, error, qbool

DRAIN_TIMEOUT = 30.0
GATE = web.AppKey("storage_gate", object)
MIGRATE_PATH = "/dockyard/storage/migrate"
_VERSION = re.compile(r"^/v[0-9]+\.[0-9]+(?=/)")
#: requests served during a migration (they never touch storage)
_ALLOWED = [re.compile(p) for p in (
    r"(GET|HEAD) /_ping", r"GET /version", r"GET /info", r"GET /events", r"GET /images/json",
    r"GET /images/.+/json", r"GET /containers/json", r"GET /containers/[^/]+/json",
    r"GET /containers/[^/]+/logs", r"POST /containers/[^/]+/wait")]


class Gate:
    """Counts requests that may touch storage; closes to drain and hold them off."""

    def __init__(self):
        self.busy = 0
        self.closed = None  # the reason, while closed

    async def close(self, reason):
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

    def open(self):
        self.closed = None


@web.middleware
async def gate_middleware(request, handler):
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


def install(app):
    """Add the gate (call before the app is started) and return this module's routes."""
    app[GATE] = Gate()
    app.middlewares.append(gate_middleware)
    return ROUTES


def _swap(eng, new):
    """Make ``new`` the engine's storage slot, wrappers included."""
    old = eng.storage_slot
    for name, plugin in old.pm.list_name_plugin():
        if plugin is not old.driver and name != "naive-diff" and new.pm.get_plugin(name) is None:
            new.pm.register(plugin, name=name)
    eng.storage_slot = new
    eng.layers.slot, eng.layers.hook = new, new.hook


def _prepare(eng, to, keep_old, progress):
    from ..engine import migrate

    home_root = os.path.join(eng.data_root, "storage")
    options = eng.config.options.get("storage", {})
    raw = eng.store.get_meta(migrate.META_STATE)
    state = json.loads(raw) if raw else None
    if not to and state is None:
        raise NotFound("no storage migration to abort")
    source = migrate.source_slot(state, eng.storage_slot, home_root, options, eng.config.source)
    mig = migrate.Migration(eng.store, source, to or (state or {}).get("to"), home_root=home_root, options=options,
                            config_source=eng.config.source, keep_old=keep_old, progress=progress,
                            on_switch=lambda slot: _swap(eng, slot))
    if to or state:
        mig.check()
    return mig


async def storage_migrate(request):
    eng = engine(request)
    to, keep_old, abort = request.query.get("to", ""), qbool(request, "keep_old"), qbool(request, "abort")
    if not to and not abort:
        raise InvalidParameter("to: name the storage driver to move the layers to")
    from ..engine.migrate import migration_lock

    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    def progress(msg):
        loop.call_soon_threadsafe(queue.put_nowait, msg)

    gate = request.app[GATE]
    await gate.close(f"migrating storage to {to}" if to else "aborting a storage migration")
    lock, job = migration_lock(eng.data_root), None

    def release(_job=None):
        lock.__exit__(None, None, None)
        gate.open()

    try:
        await loop.run_in_executor(request.app[POOL], lock.__enter__)
    except BaseException:
        gate.open()
        raise
    try:
        mig = await loop.run_in_executor(request.app[POOL], _prepare, eng, to, keep_old, progress)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        job = loop.run_in_executor(request.app[POOL], mig.abort if abort else mig.run)
        # from here the job's end releases the lock and the gate, even if this handler
        # is cancelled or its client goes away mid-migration
        job.add_done_callback(release)
        await _stream(resp, queue, job)
        return resp
    finally:
        if job is None:
            release()


async def _stream(resp, queue, job):
    """Write progress lines until ``job`` ends, then its error line if it failed.
    A client that went away stops the writing, not the migration."""

    async def send(msg):
        try:
            await resp.write(json.dumps(msg).encode() + b"\n")
        except (ConnectionError, RuntimeError):
            pass

    while True:
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, job}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            await send(getter.result())
            continue
        getter.cancel()
        while not queue.empty():
            await send(queue.get_nowait())
        break
    exc = job.exception()
    if exc is not None:
        message = f"storage migration failed: {exc}"
        await send({"error": message, "errorDetail": {"message": message}})
    try:
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass


ROUTES = [("POST", MIGRATE_PATH, storage_migrate)]
