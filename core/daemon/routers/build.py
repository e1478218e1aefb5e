"""``POST /build`` (Docker Engine API 1.41, the classic builder) and ``POST /build/prune``.

The body is the build context tar (plain, gzip, bzip2 or xz), spooled to a file
under the data root before the build starts; the build itself runs on the
daemon's pool and streams Docker's JSON messages.  A bad query (tag, JSON of
``buildargs``/``labels``, ``remote``) is a plain 400 before the body is read.
"""

from __future__ import annotations

import base64
import os
from typing import Any, Callable, Protocol

from aiohttp import web

from ...builder.service import BuildOptions
from ...errors import InvalidParameter
from .. import schema
from ..bodies import json_query, loads
from ..context import blocking
from ..jsonstream import stream_json
from ..query import qbool, qfilters, qint
from ..tarstream import spool_body

_RESOURCES = {"shmsize": "ShmSize", "memory": "Memory", "memswap": "MemorySwap", "cpushares": "CpuShares",
              "cpuperiod": "CpuPeriod", "cpuquota": "CpuQuota"}


class BuildBackend(Protocol):
    """What the build routes call (:class:`dockyard.builder.service.BuildService`)."""

    def check_network_mode(self, mode: str) -> None: ...
    def tag_reference(self, tag: str) -> str: ...
    def auth_by_registry(self, configs: dict[str, dict]) -> dict[str, dict]: ...
    def spool_path(self, suffix: str = ".context") -> tuple[int, str]: ...
    def build(self, context_path: str, opts: BuildOptions, progress: Callable[[dict], None],
              cancel: Any = None) -> str: ...
    def prune(self, filters: dict[str, list[str]]) -> dict: ...


BACKEND = web.AppKey("build", BuildBackend)


def backend(request: web.Request) -> BuildBackend:
    return request.app[BACKEND]


def _registry_config(builder: BuildBackend, header: str | None) -> dict:
    """``X-Registry-Config``: base64url JSON ``{registry: AuthConfig}`` → ``{host: AuthConfig}``."""
    if not header:
        return {}
    raw = header.strip()
    try:
        data = base64.b64decode(raw.replace("-", "+").replace("_", "/") + "=" * (-len(raw) % 4)) or b"{}"
    except ValueError:
        raise InvalidParameter("X-Registry-Config is not base64-encoded JSON") from None
    data = loads(data, "the X-Registry-Config header")
    if not isinstance(data, dict):
        raise InvalidParameter("X-Registry-Config must encode a JSON object")
    for value in data.values():
        if isinstance(value, dict):
            schema.check("SystemAuth", value)
    return builder.auth_by_registry({k: v for k, v in data.items() if isinstance(v, dict)})


def options(request: web.Request, builder: BuildBackend) -> BuildOptions:
    """The checked :class:`BuildOptions` of a request."""
    q = request.query
    if q.get("remote"):
        raise InvalidParameter("remote build contexts (remote=URL or a git repository) are not supported by "
                               "dockyard: send the context as the request body")
    if qbool(request, "squash"):
        raise InvalidParameter("squash is only supported with experimental mode")
    tags = []
    for t in q.getall("t", []):
        if not t:
            continue
        tags.append(builder.tag_reference(t))
    buildargs = json_query(request, "buildargs", dict)
    labels = json_query(request, "labels", dict)
    for name, value in list(buildargs.items()) + list(labels.items()):
        if value is not None and not isinstance(value, str):
            raise InvalidParameter(f"build arg and label values must be strings: {name}={value!r}")
    cache_from = json_query(request, "cachefrom", list)
    if not all(isinstance(ref, str) for ref in cache_from):
        raise InvalidParameter("cachefrom must be a JSON array of image names")
    mode = q.get("networkmode") or "default"
    builder.check_network_mode(mode)  # an unknown network is refused before the build starts
    host: dict[str, Any] = {"NetworkMode": mode}
    extra = [h for v in q.getall("extrahosts", []) for h in v.split(",") if h.strip()]
    if extra:
        host["ExtraHosts"] = extra
    for key, field in _RESOURCES.items():
        value = qint(request, key, 0)
        if value:
            host[field] = value
    for key, field in (("cpusetcpus", "CpusetCpus"), ("cpusetmems", "CpusetMems")):
        if q.get(key):
            host[field] = q[key]
    return BuildOptions(
        tags=tags, dockerfile=q.get("dockerfile") or "Dockerfile", buildargs=buildargs,
        labels={k: v or "" for k, v in labels.items()}, target=q.get("target") or "",
        nocache=qbool(request, "nocache"), pull=qbool(request, "pull"), quiet=qbool(request, "q"),
        rm=qbool(request, "rm", True), forcerm=qbool(request, "forcerm"), host_config=host, cache_from=cache_from,
        auth=_registry_config(builder, request.headers.get("X-Registry-Config")))


async def post_build(request: web.Request) -> web.StreamResponse:
    builder = backend(request)
    opts = options(request, builder)
    path = await spool_body(request, builder.spool_path, ".context")

    def job(progress: Callable[[dict], None], cancel: Any) -> str:
        try:
            return builder.build(path, opts, progress, cancel)
        finally:
            os.unlink(path)

    return await stream_json(request, job)


async def build_prune(request: web.Request) -> web.Response:
    return web.json_response(await blocking(request, backend(request).prune, qfilters(request)))


ROUTES = [("POST", "/build", post_build), ("POST", "/build/prune", build_prune)]
