"""``/containers/{id}/exec`` and ``/exec/*``: docker exec.

The output of an exec instance goes to a json-file log of its own (in the exec
root), which ``start`` follows until the process ended, then removes.
"""

import asyncio

from aiohttp import web

from .. import detachkeys
from ..engine import verify
from ..errors import DockyardError
from . import streams
from .app import blocking, engine, qint
from .bodies import json_body
from .containers_api import HIJACK_GRACE, _follow, detach_keys, hijack, hijacked_response, pump_stdin


async def create(request):
    body = await json_body(request, "ContainerExec")
    for key in [k for k in body if k.lower() == "detachkeys" and k != "DetachKeys"]:
        body.setdefault("DetachKeys", body.pop(key))  # Go matches JSON keys in any case; docker-py sends detachKeys
    detach_keys(body.get("DetachKeys"), "Invalid escape keys (%s) provided")
    eng = engine(request)
    eid = await blocking(request, eng.execs.create, request.match_info["id"], body)
    return web.json_response({"Id": eid}, status=201)


async def start(request):
    """Like Docker: the connection is hijacked first and the process started
    after, so a client reading the upgrade answer never finds output in it; a
    process that cannot start says why on the stream (and exits 126)."""
    body = await json_body(request, "ExecStart")
    verify.console_size(body.get("ConsoleSize"))
    eng = engine(request)
    execs = eng.execs
    eid = request.match_info["id"]
    inst = await blocking(request, execs.check, eid)
    tty = bool(body.get("Tty", inst["ProcessConfig"]["tty"]))
    if body.get("Detach"):
        inst = await blocking(request, execs.start, eid, tty, body.get("ConsoleSize"))
        asyncio.ensure_future(_discard(execs, inst))
        return web.Response(status=200)
    sink = hijack(request, inst["OpenStdin"])
    resp = await hijacked_response(request, tty)
    starting = asyncio.ensure_future(blocking(request, execs.start, eid, tty, body.get("ConsoleSize")))
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
            request, sink, lambda: eng.exec_slot.hook.exec_attach_stdin(id=cid, exec_id=eid),
            lambda: not inst["Running"], scanner, detached))
    flt = streams.LogFilter(inst["OpenStdout"], inst["OpenStderr"], tty=tty)
    try:
        await _follow(request, resp, inst["_log"], 0, flt, _exec_ended(eid),
                      done=lambda: inst["_done"].is_set() or detached.is_set())
    finally:
        if pump is not None:
            pump.cancel()
        if detached.is_set():  # the process runs on, unread, as a detached exec does
            asyncio.ensure_future(_discard(execs, inst))
        else:
            execs.finished(inst)
    if detached.is_set():
        await blocking(request, eng.emit, "container", "exec_detach", cid, {"execID": eid})
    await resp.write_eof()
    return resp


def _exec_ended(eid):
    return lambda event: event[1] == "exec_die" and event[3].get("execID") == eid


async def _discard(execs, inst):
    """A detached exec: nobody reads its output; drop the log when it ends.  Polled,
    not waited for in a thread: a thread blocked until the process ends held the
    daemon's shutdown until then."""
    while not inst["_done"].is_set():
        await asyncio.sleep(0.5)
    execs.finished(inst)


async def inspect(request):
    eng = engine(request)
    return web.json_response(await blocking(request, eng.execs.inspect, request.match_info["id"]))


async def resize(request):
    eng = engine(request)
    h, w = qint(request, "h", 0, 0, 65535), qint(request, "w", 0, 0, 65535)  # a struct winsize
    if h and w:
        await blocking(request, eng.execs.resize, request.match_info["id"], h, w)
    return web.Response(status=201)


ROUTES = [
    ("POST", "/containers/{id}/exec", create),
    ("POST", "/exec/{id}/start", start),
    ("POST", "/exec/{id}/resize", resize),
    ("GET", "/exec/{id}/json", inspect),
]
