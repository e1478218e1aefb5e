"""``/containers/*``: create, list, inspect, start, stop, kill, restart, pause,
unpause, delete, wait, logs, attach, resize, stats, top, rename, update, changes,
prune; ``docker cp`` (``/containers/{id}/archive``) and ``export``.

The handlers translate HTTP to the calls of :class:`ContainersBackend` (the
container service) and back; they never reach a hook or the store.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from typing import Any, BinaryIO, Callable, Protocol

from aiohttp import web

from ... import detachkeys
from ...engine.containers.service import Listed
from ...errors import Conflict, DockyardError, InvalidParameter, NotFound
from ...model.container import ContainerRecord
from .. import streams
from ..attach import (HIJACK_GRACE, container_ended, detach_keys, follow, hijack, hijacked_response,
                      pump_stdin)
from ..bodies import json_body
from ..context import blocking, hub
from ..listing import Raw, json_array
from ..query import qbool, qfilters, qfloat, qint
from ..tarstream import stream_tar

#: ``t`` of stop/restart: seconds to wait; more than Python can wait for is forever anyway
MAX_TIMEOUT = 2 ** 31 - 1
ZERO_TIME = "0001-01-01T00:00:00Z"
STAT_HEADER = "X-Docker-Container-Path-Stat"


class ContainersBackend(Protocol):
    """What ``/containers/*`` call (:class:`dockyard.engine.containers.service.ContainerService`)."""

    def create(self, body: Any, name: str | None = None) -> str: ...
    def resolve(self, ref: str) -> str: ...
    def get(self, cid: str) -> ContainerRecord: ...
    def inspect(self, ref: str) -> ContainerRecord: ...
    def inspect_api(self, ref: str, size: bool = False) -> dict[str, Any]: ...
    def log_reader(self, ref: str) -> tuple[ContainerRecord, Callable[..., tuple[list, Any]]]: ...
    def summaries(self, show_all: bool = False, filters: dict | None = None, limit: int = -1) -> list[Listed]: ...
    def check_list_filters(self, filters: dict) -> None: ...
    def labels_json(self, listed: Listed) -> str: ...
    def sizes(self, listed: Listed) -> tuple[int, int]: ...
    def start(self, ref: str) -> None: ...
    def stop(self, ref: str, timeout: int | None = None) -> None: ...
    def kill(self, ref: str, signal: str | int = "SIGKILL") -> None: ...
    def restart(self, ref: str, timeout: int | None = None) -> None: ...
    def pause(self, ref: str) -> None: ...
    def unpause(self, ref: str) -> None: ...
    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None: ...
    def remove_link(self, name: str) -> None: ...
    def attach_stdin(self, cid: str) -> socket.socket: ...
    def attached(self, cid: str) -> None: ...
    def detached(self, cid: str) -> None: ...
    def resize(self, ref: str, height: int, width: int) -> None: ...
    def stats(self, cid: str, previous: dict | None = None) -> dict: ...
    def top(self, ref: str, ps_args: str | None = None) -> dict: ...
    def rename(self, ref: str, new_name: str | None) -> ContainerRecord: ...
    def update(self, ref: str, body: Any) -> list[str]: ...
    def changes(self, ref: str) -> list[dict]: ...
    def prune(self, filters: dict) -> dict: ...
    def stat_path(self, ref: str, path: str) -> dict: ...
    def get_archive(self, ref: str, path: str, fileobj: BinaryIO) -> None: ...
    def put_archive(self, ref: str, path: str, stream: Any, no_overwrite_dir_non_dir: bool = False,
                    copy_uid_gid: bool = False) -> int: ...
    def export(self, ref: str, fileobj: BinaryIO) -> None: ...


BACKEND = web.AppKey("containers", ContainersBackend)


def backend(request: web.Request) -> ContainersBackend:
    return request.app[BACKEND]


def _timeout(request: web.Request) -> int | None:
    return qint(request, "t", lo=-MAX_TIMEOUT, hi=MAX_TIMEOUT)


async def _no_content(request: web.Request, fn: Any, *args: Any, **kwargs: Any) -> web.Response:
    await blocking(request, fn, *args, **kwargs)
    return web.Response(status=204)


# --- lifecycle ------------------------------------------------------------------------
async def create(request: web.Request) -> web.Response:
    body = await json_body(request, "ContainerCreate")
    cid = await blocking(request, backend(request).create, body, request.query.get("name"))
    return web.json_response({"Id": cid, "Warnings": []}, status=201)


async def start(request: web.Request) -> web.Response:
    return await _no_content(request, backend(request).start, request.match_info["id"])


async def stop(request: web.Request) -> web.Response:
    return await _no_content(request, backend(request).stop, request.match_info["id"], _timeout(request))


async def restart(request: web.Request) -> web.Response:
    return await _no_content(request, backend(request).restart, request.match_info["id"], _timeout(request))


async def kill(request: web.Request) -> web.Response:
    return await _no_content(request, backend(request).kill, request.match_info["id"],
                             request.query.get("signal", "SIGKILL"))


async def pause(request: web.Request) -> web.Response:
    return await _no_content(request, backend(request).pause, request.match_info["id"])


async def unpause(request: web.Request) -> web.Response:
    return await _no_content(request, backend(request).unpause, request.match_info["id"])


async def delete(request: web.Request) -> web.Response:
    """Also ``docker rm --link /parent/alias`` (``?link=1``; the name has a slash)."""
    ref = "/".join(request.match_info[k] for k in ("parent", "id") if k in request.match_info)
    if qbool(request, "link"):
        return await _no_content(request, backend(request).remove_link, ref)
    return await _no_content(request, backend(request).remove, ref, qbool(request, "force"),
                             volumes=qbool(request, "v"))


# --- reading --------------------------------------------------------------------------
async def inspect(request: web.Request) -> web.Response:
    return web.json_response(await blocking(request, backend(request).inspect_api, request.match_info["id"],
                                            qbool(request, "size")))


async def list_(request: web.Request) -> web.StreamResponse:
    """Streamed, one container at a time; filters run in the store and labels go
    out as the store holds them (:mod:`dockyard.engine.containers.listing`)."""
    containers = backend(request)
    show_all, filters, limit = qbool(request, "all"), qfilters(request), qint(request, "limit", -1)
    size = qbool(request, "size")
    containers.check_list_filters(filters)

    def summaries() -> Any:
        for listed in containers.summaries(show_all, filters, limit if limit is not None else -1):
            summary = listed.summary.to_api()
            del summary["Labels"]
            if size:  # dockerd's ``ps -s``: what each adds, and all it sees
                summary["SizeRw"], summary["SizeRootFs"] = containers.sizes(listed)
            head = json.dumps(summary)[:-1] + ', "Labels": '
            yield Raw([head.encode(), containers.labels_json(listed).encode(), b"}"])

    return await json_array(request, summaries)


async def wait(request: web.Request) -> web.StreamResponse:
    """Docker sends the headers at once and the body when the condition is met."""
    containers = backend(request)
    condition = request.query.get("condition", "not-running")
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidParameter(f"invalid condition {condition!r} (choices: not-running, next-exit, removed)")
    queue = hub(request).listen()
    try:
        rec = await blocking(request, containers.inspect, request.match_info["id"])  # one hop, not two
        cid = rec.id
        hub(request).narrow(queue, cid)  # what came meanwhile is in the queue already
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        code = rec.state.exit_code
        done = condition == "not-running" and not rec.state.running
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
        hub(request).close(queue)


async def logs(request: web.Request) -> web.StreamResponse:
    rec, read = await blocking(request, backend(request).log_reader, request.match_info["id"])
    out, err = qbool(request, "stdout"), qbool(request, "stderr")
    if not out and not err:
        raise InvalidParameter("Bad parameters: you must choose at least one stream")
    tty = bool(rec.config.get("Tty"))
    flt = streams.LogFilter(out, err, qbool(request, "timestamps"),
                            qfloat(request, "since"), qfloat(request, "until"), tty)
    tail = request.query.get("tail", "all")
    try:
        tail_n = -1 if tail in ("all", "") else int(tail)
    except ValueError:
        raise InvalidParameter(f"invalid tail value {tail!r}") from None
    entries, cursor = await blocking(request, read, None, tail_n)  # the driver reads the last ones only
    resp = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream" if tty
                                       else "application/vnd.docker.multiplexed-stream"})
    await resp.prepare(request)
    await resp.write(flt.render(entries))
    if qbool(request, "follow") and rec.state.running:
        await follow(request, resp, rec.log_path, cursor, flt, container_ended(rec.id), read=read, about=rec.id)
    await resp.write_eof()
    return resp


async def attach(request: web.Request) -> web.StreamResponse:
    containers = backend(request)
    try:
        keys = detach_keys(request.query.get("detachKeys"), "Invalid detach keys (%s) provided")
        rec = await blocking(request, containers.inspect, request.match_info["id"])
        if rec.state.paused:
            raise Conflict(f"container {request.match_info['id']} is paused, unpause the container before attach")
    except DockyardError as exc:  # dockerd writes these on the connection it took over: raw text
        return web.Response(status=exc.status, body=f"{exc}\r\n".encode(),
                            headers={"Content-Type": "application/vnd.docker.raw-stream"})
    cid = rec.id
    await blocking(request, containers.attached, cid)
    tty = bool(rec.config.get("Tty"))
    stdin = qbool(request, "stdin") and bool(rec.config.get("OpenStdin"))
    # Clients half-close a hijacked connection when they have no stdin to send
    # (the docker CLI does): keep our sending side open instead of closing.
    sink = hijack(request, stdin)
    flt = streams.LogFilter(qbool(request, "stdout"), qbool(request, "stderr"), tty=tty)
    offset = streams.log_size(rec.log_path)
    resp = await hijacked_response(request, tty)
    pump, detached = None, asyncio.Event()
    if sink is not None:
        started = rec.state.started_at

        def ended() -> bool:
            now = containers.get(cid).state
            return not now.running and now.started_at != started

        pump = asyncio.ensure_future(pump_stdin(
            request, sink, lambda: containers.attach_stdin(cid), ended,
            detachkeys.Scanner(keys) if tty else None, detached))
    try:
        if qbool(request, "logs"):
            await asyncio.sleep(HIJACK_GRACE)
            entries, _ = await blocking(request, streams.read_entries, rec.log_path, 0)
            await resp.write(flt.render(entries))
        if qbool(request, "stream"):
            await follow(request, resp, rec.log_path, offset, flt, container_ended(cid), done=detached.is_set,
                         about=cid)
    finally:
        if pump is not None:
            pump.cancel()
    if detached.is_set():
        await blocking(request, containers.detached, cid)
    await resp.write_eof()
    return resp


async def resize(request: web.Request) -> web.Response:
    h, w = qint(request, "h", 0, 0, 65535) or 0, qint(request, "w", 0, 0, 65535) or 0  # a struct winsize
    await blocking(request, backend(request).resize, request.match_info["id"], h, w)
    return web.Response(status=200)


async def stats(request: web.Request) -> web.StreamResponse:
    containers = backend(request)
    cid = await blocking(request, containers.resolve, request.match_info["id"])

    async def one(previous: dict | None = None) -> dict:
        return await blocking(request, containers.stats, cid, previous)

    if not qbool(request, "stream", True):
        first = await one()
        if not qbool(request, "one-shot") and first["read"] != ZERO_TIME:
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
        if previous["read"] == ZERO_TIME:
            break  # not running: one zero sample, as docker sends
        await asyncio.sleep(1)
    await resp.write_eof()
    return resp


# --- operations beside the lifecycle (moby's rename, update, top, changes, prune) --------
async def top(request: web.Request) -> web.Response:
    out = await blocking(request, backend(request).top, request.match_info["id"], request.query.get("ps_args"))
    return web.json_response(out)


async def rename(request: web.Request) -> web.Response:
    return await _no_content(request, backend(request).rename, request.match_info["id"], request.query.get("name"))


async def update(request: web.Request) -> web.Response:
    body = await json_body(request, "ContainerUpdate")
    warnings = await blocking(request, backend(request).update, request.match_info["id"], body)
    return web.json_response({"Warnings": warnings})


async def changes(request: web.Request) -> web.Response:
    out = await blocking(request, backend(request).changes, request.match_info["id"])
    return web.json_response(out or None)


async def prune(request: web.Request) -> web.Response:
    return web.json_response(await blocking(request, backend(request).prune, qfilters(request)))


# --- files: docker cp (the stat travels base64 JSON in a header) and export --------------
def _path(request: web.Request) -> str:
    path = request.query.get("path")
    if not path:
        raise InvalidParameter("Path cannot be empty")
    return path


def _stat_header(stat: dict) -> str:
    return base64.b64encode(json.dumps(stat).encode()).decode()


async def archive_head(request: web.Request) -> web.Response:
    stat = await blocking(request, backend(request).stat_path, request.match_info["id"], _path(request))
    return web.Response(status=200, headers={STAT_HEADER: _stat_header(stat)})


async def archive_get(request: web.Request) -> web.StreamResponse:
    containers, ref, path = backend(request), request.match_info["id"], _path(request)
    stat = await blocking(request, containers.stat_path, ref, path)  # a 404 before the first byte
    return await stream_tar(request, lambda out: containers.get_archive(ref, path, out),
                            {STAT_HEADER: _stat_header(stat)})


class _BodyReader:
    """The request body as a blocking file for a worker thread (read through the loop)."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self.content, self.loop = request.content, loop

    def read(self, n: int = -1) -> bytes:
        size = n if n and n > 0 else 1 << 20
        return asyncio.run_coroutine_threadsafe(self.content.read(size), self.loop).result()


async def archive_put(request: web.Request) -> web.Response:
    body = _BodyReader(request, asyncio.get_running_loop())
    await blocking(request, backend(request).put_archive, request.match_info["id"], _path(request), body,
                   no_overwrite_dir_non_dir=qbool(request, "noOverwriteDirNonDir"),
                   copy_uid_gid=qbool(request, "copyUIDGID"))
    return web.Response(status=200)


async def export(request: web.Request) -> web.StreamResponse:
    containers = backend(request)
    cid = await blocking(request, containers.resolve, request.match_info["id"])
    return await stream_tar(request, lambda out: containers.export(cid, out))


ROUTES = [
    ("POST", "/containers/create", create),
    ("GET", "/containers/json", list_),
    ("POST", "/containers/prune", prune),
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
    ("GET", "/containers/{id}/top", top),
    ("POST", "/containers/{id}/rename", rename),
    ("POST", "/containers/{id}/update", update),
    ("GET", "/containers/{id}/changes", changes),
    ("HEAD", "/containers/{id}/archive", archive_head),
    ("GET", "/containers/{id}/archive", archive_get),
    ("PUT", "/containers/{id}/archive", archive_put),
    ("GET", "/containers/{id}/export", export),
    ("DELETE", "/containers/{id}", delete),
    ("DELETE", "/containers/{parent}/{id}", delete),  # a link's name: /parent/alias
]
