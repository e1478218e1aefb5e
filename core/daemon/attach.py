"""Streams that outlive a request's answer: following a json-file log until a
process ends, hijacked connections (Docker's attach and exec start), the client's
stdin on its way to a process, with detach keys (:mod:`dockyard.detachkeys`).

Shared by the containers router (attach, logs) and the exec router (exec start).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable

from aiohttp import web

from .. import detachkeys
from ..errors import ExecError, InvalidParameter, NotFound
from . import streams
from .context import blocking, hub

POLL = 0.02  # seconds between looks at a followed log
# The docker SDK reads the head of a hijacked answer through a buffer and then
# switches to the raw socket: output that arrives together with the head is lost.
# What could be ready at once (exec output, attach's logs) waits this long.
HIJACK_GRACE = 0.05
#: stdin bytes of a hijacked connection held for a process that does not read yet
STDIN_BUFFER = 1 << 20


async def follow(request: web.Request, resp: web.StreamResponse, path: str, offset: Any, flt: streams.LogFilter,
                 ended: Callable[[tuple], bool], done: Callable[[], bool] | None = None,
                 read: Callable[[Any], tuple[list, Any]] | None = None, about: str | None = None) -> None:
    """Stream log entries of ``path`` from ``offset`` until ``ended(event)`` (or
    ``done()``, checked between reads) says the process is gone, then drain once more.
    With ``read`` (a log driver's reader), ``read(offset)`` gives the entries instead.
    ``about``: the container whose events alone can end it (the others are not heard)."""
    queue = hub(request).listen(about)
    running = True
    try:
        while True:
            if done is not None and done():
                running = False
            if read is not None:
                entries, offset = await blocking(request, read, offset)
            else:
                entries, offset = await blocking(request, streams.read_entries, path, offset)  # disk: off the loop
            if entries:
                await resp.write(flt.render(entries))
            if not running:
                return
            if request.transport is None or request.transport.is_closing():
                return  # the client went away
            try:
                event = await asyncio.wait_for(queue.get(), POLL)
            except asyncio.TimeoutError:
                continue
            if ended(event):
                running = False  # one more read drains what the process wrote last
    finally:
        hub(request).close(queue)


def container_ended(cid: str) -> Callable[[tuple], bool]:
    return lambda event: event[0] == "container" and event[2] == cid and event[1] in ("die", "destroy")


class _Hijacked(asyncio.Protocol):
    """Takes over a hijacked connection from aiohttp's protocol: survives the
    client's half-close, and with ``sink`` (a queue) hands the client's bytes over
    as stdin (``None`` at end of file) instead of parsing them as HTTP."""

    def __init__(self, inner: Any, sink: Any = None) -> None:
        self._inner, self._sink = inner, sink
        tail = getattr(inner, "_message_tail", b"")
        if sink is not None and tail:
            sink.put_nowait(bytes(tail))

    def data_received(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink.put_nowait(data)
        else:
            self._inner.data_received(data)

    def eof_received(self) -> bool:
        if self._sink is not None:
            self._sink.put_nowait(None)
        return True  # keep the transport open: we still have output to send

    def connection_lost(self, exc: Exception | None) -> None:
        if self._sink is not None:
            self._sink.put_nowait(None)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class StdinQueue:
    """The client's stdin on its way to the process, with back-pressure: once more
    than :data:`STDIN_BUFFER` bytes wait (the process does not read, or has not
    started), the connection is not read until it takes them, so a client cannot
    make the daemon hold more than that."""

    def __init__(self, transport: Any) -> None:
        self._queue: asyncio.Queue = asyncio.Queue()
        self._transport = transport
        self._held, self._paused = 0, False

    def put_nowait(self, data: bytes | None) -> None:
        self._queue.put_nowait(data)
        if data:
            self._held += len(data)
            if self._held > STDIN_BUFFER and not self._paused and self._transport is not None:
                self._transport.pause_reading()
                self._paused = True

    async def get(self) -> bytes | None:
        data = await self._queue.get()
        if data:
            self._held -= len(data)
            if self._paused and self._held <= STDIN_BUFFER // 2:
                self._paused = False
                self._transport.resume_reading()
        return data


def hijack(request: web.Request, stdin: bool) -> StdinQueue | None:
    """Take the connection over (see :class:`_Hijacked`); the stdin queue or None."""
    sink = StdinQueue(request.transport) if stdin else None
    if request.transport is not None:
        request.transport.set_protocol(_Hijacked(request.transport.get_protocol(), sink))
    return sink


async def hijacked_response(request: web.Request, tty: bool) -> web.StreamResponse:
    ctype = "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"
    if "upgrade" in request.headers.get("Connection", "").lower():
        resp = web.StreamResponse(status=101, reason="UPGRADED", headers={
            "Content-Type": ctype, "Connection": "Upgrade", "Upgrade": "tcp"})
    else:
        resp = web.StreamResponse(headers={"Content-Type": ctype})
    resp.force_close()
    await resp.prepare(request)
    return resp


def detach_keys(text: str | None, message: str) -> bytes:
    """The detach key sequence of a request (``ctrl-p,ctrl-q`` when it names
    none); one Docker does not know is refused with dockerd's ``message``."""
    try:
        return detachkeys.parse(text or "")
    except ValueError:
        raise InvalidParameter(message % text) from None


async def pump_stdin(request: web.Request, sink: StdinQueue, connect: Callable[[], socket.socket],
                     ended: Callable[[], bool], scanner: detachkeys.Scanner | None = None,
                     detached: asyncio.Event | None = None) -> None:
    """Copy the client's stdin (``sink``) into the process once ``connect()`` (a
    blocking call giving the driver's stdin socket) succeeds; ``ended()`` says the
    process is gone for good.  Closing the socket at the client's EOF is what
    gives a ``StdinOnce`` process its end of file.

    With a ``scanner`` (a :class:`dockyard.detachkeys.Scanner`: attaches with a
    terminal, as dockerd's) the detach keys are looked for on the way: the bytes
    before them go on, they and what follows do not, and ``detached`` (an
    ``asyncio.Event``) is set.  The process keeps its terminal, so it sees no end
    of file."""
    loop = asyncio.get_running_loop()
    sock: socket.socket | None = None
    try:
        while sock is None:
            try:
                sock = await blocking(request, connect)
            except (ExecError, NotFound):
                if await blocking(request, ended):
                    return
                await asyncio.sleep(POLL)  # attached before the start: wait for it
        sock.setblocking(False)
        while True:
            data = await sink.get()
            if data is None:
                break
            if scanner is not None:
                data = scanner.feed(data)
            if data:
                await loop.sock_sendall(sock, data)
            if scanner is not None and scanner.detached:
                if detached is not None:
                    detached.set()
                break
    except OSError:
        pass  # the process closed its stdin or ended
    finally:
        if sock is not None:
            sock.close()
