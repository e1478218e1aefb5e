"""``/containers/*``: create, start, wait, attach, logs, inspect, list, kill, stop, delete,
pause, unpause, stats, resize."""

import asyncio
import json

from aiohttp import web

from .. import detachkeys
from ..engine import container_list
from ..errors import Conflict, ExecError, InvalidParameter, NotFound
from . import streams, views
from .app import HUB, blocking, engine, qbool, qfilters, qfloat, qint
from .bodies import json_body
from .listing import Raw, json_array

POLL = 0.02  # seconds between looks at a followed log
# The docker SDK reads the head of a hijacked answer through a buffer and then
# switches to the raw socket: output that arrives together with the head is lost.
# What could be ready at once (exec output, attach's logs) waits this long.
HIJACK_GRACE = 0.05
#: ``t`` of stop/restart: seconds to wait; more than Python can wait for is forever anyway
MAX_TIMEOUT = 2 ** 31 - 1
#: stdin bytes of a hijacked connection held for a process that does not read yet
STDIN_BUFFER = 1 << 20


async def create(request):
    body = await json_body(request, "ContainerCreate")
    eng = engine(request)
    cid = await blocking(request, eng.containers.create, body, request.query.get("name"))
    return web.json_response({"Id": cid, "Warnings": []}, status=201)


async def start(request):
    eng = engine(request)
    await blocking(request, eng.containers.start, request.match_info["id"])
    return web.Response(status=204)


async def inspect(request):
    eng = engine(request)
    c = eng.containers
    rec = await blocking(request, lambda: c.get(c.resolve(request.match_info["id"])))
    return web.json_response(views.container_inspect(rec))


async def list_(request):
    """Streamed, one container at a time; filters run in the store and labels go
    out as the store holds them (:mod:`dockyard.engine.container_list`)."""
    store = engine(request).containers.store
    show_all, filters, limit = qbool(request, "all"), qfilters(request), qint(request, "limit", -1)
    container_list.check_filters(filters)

    def summaries():
        for rec in container_list.records(store, show_all, filters, limit):
            summary = views.container_summary(rec)
            del summary["Labels"]
            head = json.dumps(summary)[:-1] + ', "Labels": '
            yield Raw([head.encode(), container_list.labels_json(store, rec).encode(), b"}"])

    return await json_array(request, summaries)


async def kill(request):
    eng = engine(request)
    await blocking(request, eng.containers.kill, request.match_info["id"], request.query.get("signal", "SIGKILL"))
    return web.Response(status=204)


async def restart(request):
    eng = engine(request)
    await blocking(request, eng.containers.restart, request.match_info["id"],
                   qint(request, "t", lo=-MAX_TIMEOUT, hi=MAX_TIMEOUT))
    return web.Response(status=204)


async def stop(request):
    eng = engine(request)
    await blocking(request, eng.containers.stop, request.match_info["id"],
                   qint(request, "t", lo=-MAX_TIMEOUT, hi=MAX_TIMEOUT))
    return web.Response(status=204)


async def delete(request):
    eng = engine(request)
    await blocking(request, eng.containers.remove, request.match_info["id"], qbool(request, "force"),
                   volumes=qbool(request, "v"))
    return web.Response(status=204)


async def wait(request):
    """Docker sends the headers at once and the body when the condition is met."""
    eng = engine(request)
    c = eng.containers
    condition = request.query.get("condition", "not-running")
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidParameter(f"invalid condition {condition!r} (choices: not-running, next-exit, removed)")
    queue = request.app[HUB].listen()
    try:
        cid = await blocking(request, c.resolve, request.match_info["id"])
        rec = await blocking(request, c.get, cid)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        code = rec["State"]["ExitCode"]
        done = condition == "not-running" and not rec["State"]["Running"]
        while not done:
            try:
                type_, action, id_, attrs = await asyncio.wait_for(queue.get(), 1.0)
            except asyncio.TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    return resp  # the client went away (docker run -d waits, then hangs up)
                continue
            if type_ != "container" or id_ != cid:
                continue
            if action == "die":
                code = int(attrs.get("exitCode", 0))
                done = condition != "removed"
            elif action == "destroy":
                done = True
        try:
            await resp.write(json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n")
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client stopped waiting (docker rm -f does)
        return resp
    finally:
        request.app[HUB].close(queue)


async def _follow(request, resp, path, offset, flt, ended, done=None):
    """Stream log entries of ``path`` from ``offset`` until ``ended(event)`` (or
    ``done()``, checked between reads) says the process is gone, then drain once more."""
    queue = request.app[HUB].listen()
    running = True
    try:
        while True:
            if done is not None and done():
                running = False
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
        request.app[HUB].close(queue)


def container_ended(cid):
    return lambda event: event[0] == "container" and event[2] == cid and event[1] in ("die", "destroy")


async def logs(request):
    eng = engine(request)
    c = eng.containers
    rec = await blocking(request, lambda: c.get(c.resolve(request.match_info["id"])))
    out, err = qbool(request, "stdout"), qbool(request, "stderr")
    if not out and not err:
        raise InvalidParameter("Bad parameters: you must choose at least one stream")
    tty = bool(rec["Config"].get("Tty"))
    flt = streams.LogFilter(out, err, qbool(request, "timestamps"),
                            qfloat(request, "since"), qfloat(request, "until"), tty)
    tail = request.query.get("tail", "all")
    try:
        tail_n = -1 if tail in ("all", "") else int(tail)
    except ValueError:
        raise InvalidParameter(f"invalid tail value {tail!r}") from None
    entries, offset = await blocking(request, streams.read_entries, rec["LogPath"], 0)
    resp = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream" if tty
                                       else "application/vnd.docker.multiplexed-stream"})
    await resp.prepare(request)
    await resp.write(flt.render(streams.tail(entries, tail_n)))
    if qbool(request, "follow") and rec["State"]["Running"]:
        await _follow(request, resp, rec["LogPath"], offset, flt, container_ended(rec["Id"]))
    await resp.write_eof()
    return resp


class _Hijacked(asyncio.Protocol):
    """Takes over a hijacked connection from aiohttp's protocol: survives the
    client's half-close, and with ``sink`` (a queue) hands the client's bytes over
    as stdin (``None`` at end of file) instead of parsing them as HTTP."""

    def __init__(self, inner, sink=None):
        self._inner, self._sink = inner, sink
        tail = getattr(inner, "_message_tail", b"")
        if sink is not None and tail:
            sink.put_nowait(bytes(tail))

    def data_received(self, data):
        if self._sink is not None:
            self._sink.put_nowait(data)
        else:
            self._inner.data_received(data)

    def eof_received(self):
        if self._sink is not None:
            self._sink.put_nowait(None)
        return True  # keep the transport open: we still have output to send

    def connection_lost(self, exc):
        if self._sink is not None:
            self._sink.put_nowait(None)
        self._inner.connection_lost(exc)

    def pause_writing(self):
        self._inner.pause_writing()

    def resume_writing(self):
        self._inner.resume_writing()


class StdinQueue:
    """The client's stdin on its way to the process, with back-pressure: once more
    than :data:`STDIN_BUFFER` bytes wait (the process does not read, or has not
    started), the connection is not read until it takes them, so a client cannot
    make the daemon hold more than that."""

    def __init__(self, transport):
        self._queue, self._transport = asyncio.Queue(), transport
        self._held, self._paused = 0, False

    def put_nowait(self, data):
        self._queue.put_nowait(data)
        if data:
            self._held += len(data)
            if self._held > STDIN_BUFFER and not self._paused and self._transport is not None:
                self._transport.pause_reading()
                self._paused = True

    async def get(self):
        data = await self._queue.get()
        if data:
            self._held -= len(data)
            if self._paused and self._held <= STDIN_BUFFER // 2:
                self._paused = False
                self._transport.resume_reading()
        return data


def hijack(request, stdin):
    """Take the connection over (see :class:`_Hijacked`); the stdin queue or None."""
    sink = StdinQueue(request.transport) if stdin else None
    if request.transport is not None:
        request.transport.set_protocol(_Hijacked(request.transport.get_protocol(), sink))
    return sink


async def hijacked_response(request, tty):
    ctype = "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"
    if "upgrade" in request.headers.get("Connection", "").lower():
        resp = web.StreamResponse(status=101, reason="UPGRADED", headers={
            "Content-Type": ctype, "Connection": "Upgrade", "Upgrade": "tcp"})
    else:
        resp = web.StreamResponse(headers={"Content-Type": ctype})
    resp.force_close()
    await resp.prepare(request)
    return resp


def detach_keys(text, message):
    """The detach key sequence of a request (``ctrl-p,ctrl-q`` when it names
    none); one Docker does not know is refused with dockerd's ``message``."""
    try:
        return detachkeys.parse(text or "")
    except ValueError:
        raise InvalidParameter(message % text) from None


async def pump_stdin(request, sink, connect, ended, scanner=None, detached=None):
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
    sock = None
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
                detached.set()
                break
    except OSError:
        pass  # the process closed its stdin or ended
    finally:
        if sock is not None:
            sock.close()


async def attach(request):
    keys = detach_keys(request.query.get("detachKeys"), "Invalid detach keys (%s) provided")
    eng = engine(request)
    c = eng.containers
    rec = await blocking(request, lambda: c.get(c.resolve(request.match_info["id"])))
    if rec["State"].get("Paused"):
        raise Conflict(f"container {request.match_info['id']} is paused, unpause the container before attach")
    cid = rec["Id"]
    await blocking(request, eng.emit, "container", "attach", cid, {})
    tty = bool(rec["Config"].get("Tty"))
    stdin = qbool(request, "stdin") and bool(rec["Config"].get("OpenStdin"))
    # Clients half-close a hijacked connection when they have no stdin to send
    # (the docker CLI does): keep our sending side open instead of closing.
    sink = hijack(request, stdin)
    flt = streams.LogFilter(qbool(request, "stdout"), qbool(request, "stderr"), tty=tty)
    offset = streams.log_size(rec["LogPath"])
    resp = await hijacked_response(request, tty)
    pump, detached = None, asyncio.Event()
    if sink is not None:
        started = rec["State"]["StartedAt"]

        def ended():
            now = c.get(cid)["State"]
            return not now["Running"] and now["StartedAt"] != started

        pump = asyncio.ensure_future(pump_stdin(
            request, sink, lambda: eng.exec_slot.hook.exec_attach_stdin(id=cid, exec_id=None), ended,
            detachkeys.Scanner(keys) if tty else None, detached))
    try:
        if qbool(request, "logs"):
            await asyncio.sleep(HIJACK_GRACE)
            entries, _ = await blocking(request, streams.read_entries, rec["LogPath"], 0)
            await resp.write(flt.render(entries))
        if qbool(request, "stream"):
            await _follow(request, resp, rec["LogPath"], offset, flt, container_ended(cid), done=detached.is_set)
    finally:
        if pump is not None:
            pump.cancel()
    if detached.is_set():
        await blocking(request, eng.emit, "container", "detach", cid, {})
    await resp.write_eof()
    return resp


async def resize(request):
    h, w = qint(request, "h", 0, 0, 65535), qint(request, "w", 0, 0, 65535)  # a struct winsize
    eng = engine(request)
    c = eng.containers
    rec = await blocking(request, lambda: c.get(c.resolve(request.match_info["id"])))
    if not rec["State"]["Running"]:
        raise Conflict(f"Container {rec['Id']} is not running")
    if rec["Config"].get("Tty") and h and w:
        await blocking(request, eng.exec_slot.hook.exec_resize, id=rec["Id"], exec_id=None, height=h, width=w)
    return web.Response(status=200)


async def pause(request):
    eng = engine(request)
    await blocking(request, eng.containers.pause, request.match_info["id"])
    return web.Response(status=204)


async def unpause(request):
    eng = engine(request)
    await blocking(request, eng.containers.unpause, request.match_info["id"])
    return web.Response(status=204)


async def stats(request):
    from ..engine import stats as stats_

    eng = engine(request)
    c = eng.containers
    cid = await blocking(request, c.resolve, request.match_info["id"])
    hook = eng.exec_slot.hook

    async def one(previous=None):
        rec = await blocking(request, c.get, cid)
        return await blocking(request, stats_.sample, hook, rec, previous)

    if not qbool(request, "stream", True):
        first = await one()
        if not qbool(request, "one-shot") and first["read"] != stats_.ZERO_TIME:
            await asyncio.sleep(1)  # a second sample, so precpu_stats is filled as docker's is
            first = await one(first)
        return web.json_response(first)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    previous = None
    while request.transport is not None and not request.transport.is_closing():
        try:
            previous = await one(previous)
        except NotFound:
            break
        await resp.write(json.dumps(previous).encode() + b"\n")
        if previous["read"] == stats_.ZERO_TIME:
            break  # not running: one zero sample, as docker sends
        await asyncio.sleep(1)
    await resp.write_eof()
    return resp


ROUTES = [
    ("POST", "/containers/create", create),
    ("GET", "/containers/json", list_),
    ("GET", "/containers/{id}/json", inspect),
    ("POST", "/containers/{id}/start", start),
    ("POST", "/containers/{id}/wait", wait),
    ("POST", "/containers/{id}/attach", attach),
    ("GET", "/containers/{id}/logs", logs),
    ("POST", "/containers/{id}/kill", kill),
    ("POST", "/containers/{id}/stop", stop),
    ("POST", "/containers/{id}/restart", restart),
    ("POST", "/containers/{id}/resize", resize),
    ("POST", "/containers/{id}/pause", pause),
    ("POST", "/containers/{id}/unpause", unpause),
    ("GET", "/containers/{id}/stats", stats),
    ("DELETE", "/containers/{id}", delete),
]
