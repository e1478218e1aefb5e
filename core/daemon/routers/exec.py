"""``/containers/{id}/exec`` and ``/exec/*``: docker exec.

The output of an exec instance goes to a json-file log of its own (in the exec
root), which ``start`` follows until the process ended, then has removed.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Protocol

from aiohttp import web

from ... import detachkeys
from ...errors import DockyardError
from .. import streams
from ..attach import HIJACK_GRACE, detach_keys, follow, hijack, hijacked_response, pump_stdin
from ..bodies import json_body
from ..context import blocking
from ..query import qint


class ExecBackend(Protocol):
    """What the exec routes call (:class:`dockyard.engine.containers.service.ContainerService`)."""

    def exec_create(self, ref: str, body: dict) -> str: ...
    def exec_check(self, eid: str, console_size: Any = None) -> dict: ...
    def exec_start(self, eid: str, tty: bool | None = None, console_size: list | None = None) -> dict: ...
    def exec_finished(self, inst: dict) -> None: ...
    def exec_inspect(self, eid: str) -> dict: ...
    def exec_resize(self, eid: str, height: int, width: int) -> None: ...
    def exec_attach_stdin(self, cid: str, eid: str) -> socket.socket: ...
    def exec_detached(self, cid: str, eid: str) -> None: ...


BACKEND = web.AppKey("exec", ExecBackend)


def backend(request: web.Request) -> ExecBackend:
    return request.app[BACKEND]


async def create(request: web.Request) -> web.Response:
    body = await json_body(request, "ContainerExec")
    for key in [k for k in body if k.lower() == "detachkeys" and k != "DetachKeys"]:
        body.setdefault("DetachKeys", body.pop(key))  # Go matches JSON keys in any case; docker-py sends detachKeys
    try:
        detach_keys(body.get("DetachKeys"), "Invalid escape keys (%s) provided")
    except DockyardError as exc:  # dockerd's is a plain error, not an invalid parameter: 500
        raise DockyardError(str(exc)) from None
    eid = await blocking(request, backend(request).exec_create, request.match_info["id"], body)
    return web.json_response({"Id": eid}, status=201)


async def start(request: web.Request) -> web.StreamResponse:
    """Like Docker: the connection is hijacked first and the process started
    after, so a client reading the upgrade answer never finds output in it; a
    process that cannot start says why on the stream (and exits 126)."""
    body = await json_body(request, "ExecStart")
    execs = backend(request)
    eid = request.match_info["id"]
    inst = await blocking(request, execs.exec_check, eid, body.get("ConsoleSize"))
    tty = bool(body.get("Tty", inst["ProcessConfig"]["tty"]))
    if body.get("Detach"):
        inst = await blocking(request, execs.exec_start, eid, tty, body.get("ConsoleSize"))
        asyncio.ensure_future(_discard(execs, inst))
        return web.Response(status=200)
    sink = hijack(request, inst["OpenStdin"])
    resp = await hijacked_response(request, tty)
    starting = asyncio.ensure_future(blocking(request, execs.exec_start, eid, tty, body.get("ConsoleSize")))
    await asyncio.sleep(HIJACK_GRACE)
    try:
        inst = await starting
    except DockyardError as exc:
        await resp.write(streams.frame("stdout", f"{exc}\r\n".encode(), tty))
        await resp.write_eof()
        return resp
    pump, detached = None, asyncio.Event()
    cid = inst["ContainerID"]
    if sink is not None:
        scanner = detachkeys.Scanner(detachkeys.parse(inst["DetachKeys"])) if tty else None  # checked at create
        pump = asyncio.ensure_future(pump_stdin(
            request, sink, lambda: execs.exec_attach_stdin(cid, eid),
            lambda: not inst["Running"], scanner, detached))
    flt = streams.LogFilter(inst["OpenStdout"], inst["OpenStderr"], tty=tty)
    try:
        await follow(request, resp, inst["_log"], 0, flt, _exec_ended(eid),
                     done=lambda: inst["_done"].is_set() or detached.is_set(), about=cid)
    finally:
        if pump is not None:
            pump.cancel()
        if detached.is_set():  # the process runs on, unread, as a detached exec does
            asyncio.ensure_future(_discard(execs, inst))
        else:
            execs.exec_finished(inst)
    if detached.is_set():
        await blocking(request, execs.exec_detached, cid, eid)
    await resp.write_eof()
    return resp


def _exec_ended(eid: str) -> Any:
    return lambda event: event[1] == "exec_die" and event[3].get("execID") == eid


async def _discard(execs: ExecBackend, inst: dict) -> None:
    """A detached exec: nobody reads its output; drop the log when it ends.  Polled,
    not waited for in a thread: a thread blocked until the process ends held the
    daemon's shutdown until then."""
    while not inst["_done"].is_set():
        await asyncio.sleep(0.5)
    execs.exec_finished(inst)


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(await blocking(request, backend(request).exec_inspect, request.match_info["id"]))


async def resize(request: web.Request) -> web.Response:
    h, w = qint(request, "h", 0, 0, 65535) or 0, qint(request, "w", 0, 0, 65535) or 0  # a struct winsize
    if h and w:
        await blocking(request, backend(request).exec_resize, request.match_info["id"], h, w)
    return web.Response(status=201)


ROUTES = [
    ("POST", "/containers/{id}/exec", create),
    ("POST", "/exec/{id}/start", start),
    ("POST", "/exec/{id}/resize", resize),
    ("GET", "/exec/{id}/json", inspect),
]
