"""``POST /dockyard/storage/migrate``: move every layer to another storage driver, live.

Query: ``to`` (driver name), ``keep_old`` (keep the old driver's layers), ``abort``
(undo an unfinished migration).  The answer streams JSON progress lines (Docker's
``{"status", "id", "progressDetail"}``; an ``{"error", "errorDetail"}`` line ends a
failed run); refusals that come before any work (running containers, unknown or
unsupported driver, another migration) are plain JSON errors (409/400/404/500).

While it runs the daemon is in *storage maintenance* (:mod:`dockyard.daemon.gate`).
At the switch the storage service swaps the active driver in place (the layer
store, the containers and images all see the new driver; extensions that wrapped
the old driver wrap the new one), so no restart is needed.  The daemon keeps no
container running across a migration: they are refused, as offline.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractContextManager
from typing import Any, Callable, Protocol

from aiohttp import web

from ...errors import InvalidParameter
from ..context import POOL
from ..gate import GATE, MIGRATE_PATH
from ..query import qbool


class StorageBackend(Protocol):
    """What the route calls (:class:`dockyard.engine.layers.service.StorageService`)."""

    def migration_lock(self) -> AbstractContextManager[None]: ...
    def plan_migration(self, to: str | None, keep_old: bool = False, abort: bool = False,
                       progress: Callable[[dict], None] | None = None) -> Callable[[], Any]: ...


BACKEND = web.AppKey("storage", StorageBackend)


def backend(request: web.Request) -> StorageBackend:
    return request.app[BACKEND]


async def storage_migrate(request: web.Request) -> web.StreamResponse:
    storage = backend(request)
    to, keep_old, abort = request.query.get("to", ""), qbool(request, "keep_old"), qbool(request, "abort")
    if not to and not abort:
        raise InvalidParameter("to: name the storage driver to move the layers to")
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def progress(msg: dict) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, msg)

    gate = request.app[GATE]
    await gate.close(f"migrating storage to {to}" if to else "aborting a storage migration")
    lock, job = storage.migration_lock(), None

    def release(_job: object = None) -> None:
        lock.__exit__(None, None, None)
        gate.open()

    try:
        await loop.run_in_executor(request.app[POOL], lock.__enter__)
    except BaseException:
        gate.open()
        raise
    try:
        run = await loop.run_in_executor(request.app[POOL], storage.plan_migration, to or None, keep_old, abort,
                                         progress)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        job = loop.run_in_executor(request.app[POOL], run)
        # from here the job's end releases the lock and the gate, even if this handler
        # is cancelled or its client goes away mid-migration
        job.add_done_callback(release)
        await _stream(resp, queue, job)
        return resp
    finally:
        if job is None:
            release()


async def _stream(resp: web.StreamResponse, queue: asyncio.Queue, job: asyncio.Future) -> None:
    """Write progress lines until ``job`` ends, then its error line if it failed.
    A client that went away stops the writing, not the migration."""

    async def send(msg: dict) -> None:
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
