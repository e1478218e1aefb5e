"""The aiohttp application: the engine's services behind the routers' keys, the
middlewares (errors, the storage gate), the worker pools and the event hub.

This module imports the routers and the helpers; none of them imports it.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from aiohttp import web

from . import gate
from .bodies import JSON_LIMIT
from .context import DATA_ROOT, HUB, LIST_POOL, POOL, EventHub
from .middleware import add_routes, docker_errors, not_found
from .routers import build, containers, distribution, exec, images, networks, plugins, storage, swarm, system, volumes

if TYPE_CHECKING:  # type-only: mypy checks each service against its router's backend Protocol
    from ..engine.engine import Engine


def make_app(eng: Engine) -> web.Application:
    """The application serving the services of ``eng``, the composition root."""
    # a body is read whole only through bodies.json_body; this bounds any other reader too
    app = web.Application(middlewares=[docker_errors], client_max_size=JSON_LIMIT)
    app[DATA_ROOT] = eng.data_root
    app[POOL] = ThreadPoolExecutor(max_workers=64, thread_name_prefix="api")
    app[LIST_POOL] = ThreadPoolExecutor(max_workers=2, thread_name_prefix="list")
    app[containers.BACKEND] = eng.containers
    app[exec.BACKEND] = eng.containers
    app[images.BACKEND] = eng.images
    app[distribution.BACKEND] = eng.registry
    app[build.BACKEND] = eng.builder
    app[networks.BACKEND] = eng.networks
    app[volumes.BACKEND] = eng.volumes
    app[system.BACKEND] = eng.system
    app[storage.BACKEND] = eng.storage

    async def on_startup(app: web.Application) -> None:
        hub = EventHub(asyncio.get_running_loop())
        app[HUB] = hub
        eng.events.subscribe(hub)

    async def on_cleanup(app: web.Application) -> None:
        eng.events.unsubscribe(app[HUB])
        app[POOL].shutdown(wait=False, cancel_futures=True)
        app[LIST_POOL].shutdown(wait=False, cancel_futures=True)

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    gate.install(app)
    add_routes(app, system.ROUTES + images.ROUTES + build.ROUTES + distribution.ROUTES + containers.ROUTES
               + exec.ROUTES + networks.ROUTES + volumes.ROUTES + swarm.ROUTES + plugins.ROUTES + storage.ROUTES)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
