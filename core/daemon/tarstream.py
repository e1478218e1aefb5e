"""Bodies that are files: a tar written on a worker thread and streamed out as it
is written (save, export, ``cp`` out), and a request body spooled to a file under
the data root (load, import, a build context)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Callable

from aiohttp import web

from .context import blocking

log = logging.getLogger("dockyard.api.images")


class _PipeWriter:
    """The writing end of a pipe as a file that knows its position (tarfile asks)."""

    def __init__(self, fd: int) -> None:
        self._fh, self._pos = os.fdopen(fd, "wb"), 0

    def write(self, data: bytes) -> int:
        n = self._fh.write(data)
        self._pos += len(data)
        return n

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        self._fh.flush()

    def __enter__(self) -> _PipeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


async def stream_tar(request: web.Request, produce: Callable[[Any], object],
                     headers: dict | None = None) -> web.StreamResponse:
    """Run ``produce(binary file)`` on a worker thread, streaming what it writes
    (``headers``: more response headers).  A failure after the first byte cuts the
    connection, so a client never takes a partial tar for a whole one."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=0)

    def run() -> None:
        with _PipeWriter(write_fd) as out:
            produce(out)

    resp = web.StreamResponse(headers={"Content-Type": "application/x-tar", **(headers or {})})
    await resp.prepare(request)
    task = asyncio.ensure_future(blocking(request, run))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a reader gone: the writer's EPIPE
    try:
        while chunk := await blocking(request, reader.read, 1 << 20):
            await resp.write(chunk)
        await task
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:  # the tar is incomplete: cut the connection, never end it cleanly
        log.exception("%s %s failed while streaming", request.method, request.path)
        if request.transport is not None:
            request.transport.close()
        return resp
    finally:
        reader.close()
    await resp.write_eof()
    return resp


async def spool_body(request: web.Request, spool_path: Callable[[str], tuple[int, str]], suffix: str) -> str:
    """Write the request body to a new file ``spool_path(suffix)`` gives (``(fd,
    path)``, under the data root), off the loop; return its path.  A body cut short
    leaves no file behind."""
    fd, path = spool_path(suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.content.iter_chunked(1 << 20):
                await blocking(request, fh.write, chunk)
    except BaseException:
        os.unlink(path)
        raise
    return path
