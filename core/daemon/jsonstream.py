"""Docker's JSON message streams (pull, push, build) from a worker thread.

:func:`stream_json` runs ``run(*args, progress=sink, cancel=event, **kwargs)`` on
the daemon's pool and writes each message ``sink`` receives as one JSON line, so
the event loop never blocks.  As dockerd does, an error before the first message
is a plain HTTP error with its status; an error after it is the stream's last
message, ``{"error", "errorDetail"}`` (with ``code`` when the error has one, as a
failed RUN does).  A client that hangs up sets ``cancel`` -- noticed on the next
write, or within half a second while the worker is quiet.
"""

import asyncio
import json
import logging
import threading

from aiohttp import web

from ..errors import DockyardError
from .context import POOL

log = logging.getLogger("dockyard.api")
_POLL = 0.5


def error_message(exc):
    message = str(exc)
    detail = {"message": message}
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        detail["code"] = code
    return {"error": message, "errorDetail": detail}


def _gone(request):
    transport = request.transport
    return transport is None or transport.is_closing()


async def stream_json(request, run, *args, **kwargs):
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
                await asyncio.wait({getter, job}, timeout=_POLL, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    if _gone(request):
                        raise ConnectionResetError("the client went away")
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
            await send(error_message(exc))
    except (ConnectionResetError, asyncio.CancelledError):
        cancel.set()
        job.add_done_callback(lambda f: f.cancelled() or f.exception())  # its error (cancelled) is no news
        raise
    if resp is None:
        return web.json_response({"status": "done"})
    await resp.write_eof()
    return resp
