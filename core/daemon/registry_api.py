"""Registry routes: pulling (the handler ``POST /images/create?fromImage=`` calls),
``POST /images/{name}/push`` and ``POST /auth``.

Pull and push answer Docker's JSON progress stream.  As dockerd does, an error
before the first progress message (a reference that does not parse, a manifest
that does not exist, refused credentials) is a plain HTTP error with its status;
an error after it is the stream's last message, ``{"error", "errorDetail"}``.  A
client that hangs up cancels the transfer; what finished is kept for a rerun.
"""

import logging

from aiohttp import web

from ..errors import ImageNotFound
from .app import blocking, engine
from .bodies import auth_header, json_body
from .jsonstream import stream_json as _stream  # shared with POST /build

log = logging.getLogger("dockyard.api")


async def pull(request, image, tag):
    """Pull ``image`` (``tag`` apart, or a digest in it) with the request's
    ``X-Registry-Auth`` and ``platform``; streams progress."""
    eng = engine(request)
    auth = auth_header(request)
    return await _stream(request, eng.registry.pull, image, auth=auth, tag=tag or None,
                         platform=request.query.get("platform") or None)


def _tags_of(eng, familiar):
    """Every local ``familiar:tag`` (``docker push NAME`` without a tag pushes them all)."""
    out = []
    for row in eng.images.all():
        out += [t for t in eng.images.tags(row["id"]) if t.rpartition(":")[0] == familiar]
    return sorted(out)


async def push(request):
    eng = engine(request)
    name, tag = request.match_info["name"], request.query.get("tag") or None
    auth = auth_header(request)
    from ..registry import names

    parsed = names.parse(name, tag)
    if tag or ":" in name.rpartition("/")[2]:
        refs = [str(parsed)]
    else:
        refs = await blocking(request, _tags_of, eng, parsed.familiar)
        if not refs:
            raise ImageNotFound(f"An image does not exist locally with the tag: {parsed.familiar}")

    def push_all(progress, cancel):
        for ref in refs:
            eng.registry.push(ref, auth=auth, progress=progress, cancel=cancel)

    return await _stream(request, push_all)


async def auth(request):
    eng = engine(request)
    body = await json_body(request, "SystemAuth")
    if not isinstance(body, dict):
        from ..errors import InvalidParameter

        raise InvalidParameter("POST /auth: the body must be a JSON object (username, password, serveraddress)")
    return web.json_response(await blocking(request, eng.registry.login, body))


ROUTES = [
    ("POST", "/images/{name:.+}/push", push),
    ("POST", "/auth", auth),
]
