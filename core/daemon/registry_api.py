"""Registry routes: pulling (the handler ``POST /images/create?fromImage=`` calls),
``POST /images/{name}/push`` and ``POST /auth``.

Pull and push answer Docker's JSON progress stream.  As dockerd does, an error
before the first progress message (a reference that does not parse, a manifest
that does not exist, refused credentials) is a plain HTTP error with its status;
an error after it is the stream's last message, ``{"error", "errorDetail"}``.  A
client that hangs up cancels the transfer; what finished is kept for a rerun.
"""

import asyncio
import json
import logging
import threading

from aiohttp import web

from ..errors import DockyardError, ImageNotFound
from ..registry.progress import error_message
from ..registry.service import decode_auth
from .app import POOL, blocking, engine, json_body

log = logging.getLogger("dockyard.api")


async def _stream(request, run, *args, **kwargs):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    cancel = threading.Event()

    def sink(msg):  # worker threads
        loop.call_soon_threadsafe(queue.put_nowait, msg)

    job = loop.run_in_executor(request.app[POOL], lambda: run(*args, progress=sink, cancel=cancel, **kwargs))
    resp = None

    async def send(msg):
        nonlocal resp
        if resp is None:
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
        await resp.write(json.dumps(msg).encode() + b"\r\n")

    try:
        while not job.done() or not queue.empty():
            if queue.empty():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, job}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                msg = getter.result()
            else:
                msg = queue.get_nowait()
            await send(msg)
        exc = job.exception()
        if exc is not None:
            if resp is None:
                raise exc
            if not isinstance(exc, DockyardError):
                log.error("%s %s failed", request.method, request.path, exc_info=exc)
                exc = f"internal error: {type(exc).__name__}: {exc}"
            await send(error_message(str(exc)))
    except (ConnectionResetError, asyncio.CancelledError):
        cancel.set()
        raise
    if resp is None:
        return web.json_response({"status": "done"})
    await resp.write_eof()
    return resp


async def pull(request, image, tag):
    """Pull ``image`` (``tag`` apart, or a digest in it) with the request's
    ``X-Registry-Auth`` and ``platform``; streams progress."""
    eng = engine(request)
    auth = decode_auth(request.headers.get("X-Registry-Auth"))
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
    auth = decode_auth(request.headers.get("X-Registry-Auth"))
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
    body = await json_body(request)
    if not isinstance(body, dict):
        from ..errors import InvalidParameter

        raise InvalidParameter("POST /auth: the body must be a JSON object (username, password, serveraddress)")
    return web.json_response(await blocking(request, eng.registry.login, body))


ROUTES = [
    ("POST", "/images/{name:.+}/push", push),
    ("POST", "/auth", auth),
]
