"""``/containers/*`` beside the lifecycle: top, rename, update, changes, prune
(the engine half is :mod:`dockyard.engine.container_ops`)."""

from aiohttp import web

from ..engine import container_ops
from .app import blocking, engine
from .bodies import json_body
from .images_api import parse_filters


async def top(request):
    eng = engine(request)
    out = await blocking(request, container_ops.top, eng, request.match_info["id"], request.query.get("ps_args"))
    return web.json_response(out)


async def rename(request):
    eng = engine(request)
    await blocking(request, container_ops.rename, eng, request.match_info["id"], request.query.get("name"))
    return web.Response(status=204)


async def update(request):
    eng = engine(request)
    body = await json_body(request, "ContainerUpdate")
    warnings = await blocking(request, container_ops.update, eng, request.match_info["id"], body)
    return web.json_response({"Warnings": warnings})


async def changes(request):
    eng = engine(request)
    out = await blocking(request, container_ops.changes, eng, request.match_info["id"])
    return web.json_response(out or None)


async def prune(request):
    eng = engine(request)
    filters = parse_filters(request)
    return web.json_response(await blocking(request, container_ops.prune, eng, filters))


ROUTES = [
    ("POST", "/containers/prune", prune),
    ("GET", "/containers/{id}/top", top),
    ("POST", "/containers/{id}/rename", rename),
    ("POST", "/containers/{id}/update", update),
    ("GET", "/containers/{id}/changes", changes),
]
