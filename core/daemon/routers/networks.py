"""``/networks/*``: create, list, inspect, remove, connect, disconnect, prune."""

from __future__ import annotations

from typing import Iterator, Protocol

from aiohttp import web

from ...errors import InvalidParameter
from ..bodies import json_body
from ..context import blocking
from ..listing import json_array
from ..query import qfilters


class NetworksBackend(Protocol):
    """What ``/networks/*`` call (:class:`dockyard.engine.networks.service.NetworkService`)."""

    def matching(self, filters: dict[str, list[str]]) -> Iterator[dict]: ...
    def inspect(self, ref: str) -> dict: ...
    def create(self, body: dict) -> str: ...
    def remove(self, ref: str) -> None: ...
    def connect(self, net_ref: str, container_ref: str, endpoint_config: dict | None) -> None: ...
    def disconnect(self, net_ref: str, container_ref: str, force: bool = False) -> None: ...
    def prune(self) -> list[str]: ...


BACKEND = web.AppKey("networks", NetworksBackend)


def backend(request: web.Request) -> NetworksBackend:
    return request.app[BACKEND]


async def list_(request: web.Request) -> web.StreamResponse:
    networks, filters = backend(request), qfilters(request)
    return await json_array(request, lambda: networks.matching(filters))


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(await blocking(request, backend(request).inspect, request.match_info["id"]))


async def create(request: web.Request) -> web.Response:
    body = await json_body(request, "NetworkCreate")
    nid = await blocking(request, backend(request).create, body)
    return web.json_response({"Id": nid, "Warning": ""}, status=201)


async def delete(request: web.Request) -> web.Response:
    await blocking(request, backend(request).remove, request.match_info["id"])
    return web.Response(status=204)


async def connect(request: web.Request) -> web.Response:
    body = await json_body(request, "NetworkConnect")
    if not body.get("Container"):
        raise InvalidParameter("a container (Container) is required")
    await blocking(request, backend(request).connect, request.match_info["id"], body["Container"],
                   body.get("EndpointConfig"))
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    body = await json_body(request, "NetworkDisconnect")
    if not body.get("Container"):
        raise InvalidParameter("a container (Container) is required")
    await blocking(request, backend(request).disconnect, request.match_info["id"], body["Container"],
                   bool(body.get("Force")))
    return web.Response(status=200)


async def prune(request: web.Request) -> web.Response:
    return web.json_response({"NetworksDeleted": await blocking(request, backend(request).prune)})


ROUTES = [
    ("GET", "/networks", list_),
    ("POST", "/networks/create", create),
    ("POST", "/networks/prune", prune),
    ("GET", "/networks/{id}", inspect),
    ("DELETE", "/networks/{id}", delete),
    ("POST", "/networks/{id}/connect", connect),
    ("POST", "/networks/{id}/disconnect", disconnect),
]
