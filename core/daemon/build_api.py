"""``POST /build`` (Docker Engine API 1.41, the classic builder).

The body is the build context tar (plain, gzip, bzip2 or xz), spooled to a file
under the data root before the build starts; the build itself
(:func:`dockyard.builder.build.build`) runs on the daemon's pool and streams
Docker's JSON messages.  A bad query (tag, JSON of ``buildargs``/``labels``,
``remote``) is a plain 400 before the body is read.
"""

import base64
import os

from ..builder.build import BuildOptions, build
from ..engine import reference
from ..errors import InvalidParameter
from .app import engine, qbool, qint, spool_body
from . import schema
from .bodies import json_query, loads
from .jsonstream import stream_json

_RESOURCES = {"shmsize": "ShmSize", "memory": "Memory", "memswap": "MemorySwap", "cpushares": "CpuShares",
              "cpuperiod": "CpuPeriod", "cpuquota": "CpuQuota"}


def _registry_config(header):
    """``X-Registry-Config``: base64url JSON ``{registry: AuthConfig}`` → ``{host: AuthConfig}``."""
    if not header:
        return {}
    from ..registry.names import registry_host

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
    return {registry_host(k): v for k, v in data.items() if isinstance(v, dict)}


def options(request, eng):
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
        ref = reference.normalize(t)
        if "@" in ref:
            raise InvalidParameter(f"refusing to tag with a digest reference: {t}")
        tags.append(ref)
    buildargs = json_query(request, "buildargs", dict)
    labels = json_query(request, "labels", dict)
    for name, value in list(buildargs.items()) + list(labels.items()):
        if value is not None and not isinstance(value, str):
            raise InvalidParameter(f"build arg and label values must be strings: {name}={value!r}")
    json_query(request, "cachefrom", list)  # accepted; the classic builder's local cache is used
    mode = q.get("networkmode") or "default"
    eng.network_mode(mode)  # an unknown network is refused before the build starts
    host = {"NetworkMode": mode}
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
        rm=qbool(request, "rm", True), forcerm=qbool(request, "forcerm"), host_config=host,
        auth=_registry_config(request.headers.get("X-Registry-Config")))


async def post_build(request):
    eng = engine(request)
    opts = options(request, eng)
    path = await spool_body(request, eng, ".context")

    def job(progress, cancel):
        try:
            return build(eng, path, opts, progress, cancel)
        finally:
            os.unlink(path)

    return await stream_json(request, job)


ROUTES = [("POST", "/build", post_build)]
