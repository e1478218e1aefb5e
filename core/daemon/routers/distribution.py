"""Registries: ``POST /images/{name}/push``, ``POST /auth`` and
``GET /distribution/{name}/json`` (pulling is ``POST /images/create``, :mod:`.images`).

Push answers Docker's JSON progress stream.  As dockerd does, an error before the
first progress message (a reference that does not parse, an image that does not
exist, refused credentials) is a plain HTTP error with its status; an error after
it is the stream's last message, ``{"error", "errorDetail"}``.  A client that
hangs up cancels the transfer; what finished is kept for a rerun.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from ...errors import InvalidParameter
from ..bodies import auth_header, json_body
from ..context import blocking
from ..jsonstream import stream_json


class DistributionBackend(Protocol):
    """What these routes call (:class:`dockyard.registry.service.Registry`)."""

    def push_all(self, name: str, tag: str | None = None, auth: dict[str, Any] | None = None,
                 progress: Any = None, cancel: Any = None) -> None: ...
    def login(self, auth: dict[str, Any] | None) -> dict[str, str]: ...
    def inspect(self, ref: str, auth: dict[str, Any] | None = None) -> dict[str, Any]: ...


BACKEND = web.AppKey("distribution", DistributionBackend)


def backend(request: web.Request) -> DistributionBackend:
    return request.app[BACKEND]


async def push(request: web.Request) -> web.StreamResponse:
    return await stream_json(request, backend(request).push_all, request.match_info["name"],
                             tag=request.query.get("tag") or None, auth=auth_header(request))


async def auth(request: web.Request) -> web.Response:
    body = await json_body(request, "SystemAuth")
    if not isinstance(body, dict):
        raise InvalidParameter("POST /auth: the body must be a JSON object (username, password, serveraddress)")
    return web.json_response(await blocking(request, backend(request).login, body))


async def distribution_inspect(request: web.Request) -> web.Response:
    out = await blocking(request, backend(request).inspect, request.match_info["name"], auth_header(request))
    return web.json_response(out)


ROUTES = [
    ("POST", "/images/{name:.+}/push", push),
    ("POST", "/auth", auth),
    ("GET", "/distribution/{name:.+}/json", distribution_inspect),
]
