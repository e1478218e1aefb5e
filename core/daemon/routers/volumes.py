"""``/volumes*``: create, list, inspect, remove, prune (Docker Engine API 1.41)."""

from __future__ import annotations

from typing import Iterator, Protocol

from aiohttp import web

from ...errors import InvalidParameter
from ..bodies import json_body
from ..context import blocking
from ..listing import json_array
from ..query import qbool, qfilters


class VolumesBackend(Protocol):
    """What ``/volumes*`` call (:class:`dockyard.engine.volumes.service.VolumeService`)."""

    def matching(self, filters: dict[str, list[str]]) -> Iterator[dict]: ...
    def create(self, name: str | None = None, driver: str | None = None, options: dict | None = None,
               labels: dict | None = None, anonymous: bool = False) -> dict: ...
    def view(self, rec: dict) -> dict: ...
    def inspect(self, name: str) -> dict: ...
    def remove(self, name: str, force: bool = False) -> None: ...
    def prune(self, filters: dict | None = None) -> tuple[list[str], int]: ...


BACKEND = web.AppKey("volumes", VolumesBackend)


def backend(request: web.Request) -> VolumesBackend:
    return request.app[BACKEND]


async def list_(request: web.Request) -> web.StreamResponse:
    volumes, filters = backend(request), qfilters(request)
    return await json_array(request, lambda: volumes.matching(filters), head=b'{"Volumes": ',
                            tail=b', "Warnings": null}')


async def create(request: web.Request) -> web.Response:
    body = await json_body(request, "VolumeCreate")
    if not isinstance(body, dict):
        raise InvalidParameter("invalid volume create request: not an object")
    volumes = backend(request)
    rec = await blocking(request, volumes.create, body.get("Name") or None, body.get("Driver") or None,
                         body.get("DriverOpts") or {}, body.get("Labels") or {})
    return web.json_response(volumes.view(rec), status=201)


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(await blocking(request, backend(request).inspect, request.match_info["name"]))


async def delete(request: web.Request) -> web.Response:
    await blocking(request, backend(request).remove, request.match_info["name"], qbool(request, "force"))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    filters = qfilters(request)
    for key in filters:
        if key not in ("label", "label!", "all"):
            raise InvalidParameter(f"invalid filter '{key}'")
    filters.pop("all", None)  # API 1.42's "named ones too": 1.41 prunes every unused volume anyway
    removed, reclaimed = await blocking(request, backend(request).prune, filters)
    return web.json_response({"VolumesDeleted": removed, "SpaceReclaimed": reclaimed})


ROUTES = [
    ("GET", "/volumes", list_),
    ("POST", "/volumes/create", create),
    ("POST", "/volumes/prune", prune),
    ("GET", "/volumes/{name}", inspect),
    ("DELETE", "/volumes/{name}", delete),
]
