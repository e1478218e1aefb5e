"""``/images/*`` and ``/commit``.

Docker Engine API 1.41 shapes and status codes: 404 for an unknown image or
container, 409 for a refused removal, 400 for bad input (a reference that does
not parse, a bad filter, a corrupt archive).  ``POST /images/load`` answers like
Docker: 200 and a JSON stream (``{"stream": "Loaded image: ..."}``), a failure as
its last message (``{"error", "errorDetail"}``).  Archives stream out as they are
written (``application/x-tar``); names are resolved before the first byte, so an
unknown one is still a plain 404.  ``POST /images/create?fromImage=`` pulls: its
progress is Docker's JSON stream (:mod:`dockyard.daemon.jsonstream`).
"""

from __future__ import annotations

import json
import os
from typing import Any, BinaryIO, Iterator, Protocol

from aiohttp import web

from ...engine.images.service import CommitOptions
from ...errors import DockyardError, InvalidParameter
from ..bodies import auth_header, json_body
from ..context import blocking
from ..jsonstream import stream_json
from ..listing import json_array
from ..query import qbool, qfilters
from ..tarstream import spool_body, stream_tar


class ImagesBackend(Protocol):
    """What ``/images/*`` call (:class:`dockyard.engine.images.service.ImageService`)."""

    def summaries(self, show_all: bool, filters: dict[str, list[str]]) -> Iterator[dict]: ...
    def inspect(self, ref: str) -> dict: ...
    def history(self, ref: str) -> list[dict]: ...
    def tag(self, ref: str, repo: str | None, tag: str | None) -> str: ...
    def remove(self, ref: str, force: bool = False, prune: bool = True) -> list[dict]: ...
    def prune(self, filters: dict[str, list[str]]) -> dict: ...
    def spool_path(self, suffix: str = ".tar") -> tuple[int, str]: ...
    def check_reference(self, ref: str) -> None: ...
    def import_tar(self, path: str, ref: str | None = None, changes: list | None = None,
                   message: str = "") -> str: ...
    def load(self, path: str) -> list[str]: ...
    def check_save(self, refs: list[str]) -> None: ...
    def save(self, refs: list[str], fileobj: BinaryIO) -> list[str]: ...
    def commit(self, container: str, opts: CommitOptions = ...) -> str: ...
    def search(self, term: str, limit: int | None = None, filters: dict[str, list[str]] | None = None,
               auth: dict | None = None) -> list[dict]: ...
    def pull(self, ref: str, auth: dict | None = None, tag: str | None = None, platform: str | None = None,
             progress: Any = None, cancel: Any = None) -> str: ...


BACKEND = web.AppKey("images", ImagesBackend)


def backend(request: web.Request) -> ImagesBackend:
    return request.app[BACKEND]


async def images_list(request: web.Request) -> web.StreamResponse:
    images = backend(request)
    show_all, filters = qbool(request, "all"), qfilters(request)
    return await json_array(request, lambda: images.summaries(show_all, filters))


async def image_inspect(request: web.Request) -> web.Response:
    return web.json_response(await blocking(request, backend(request).inspect, request.match_info["name"]))


async def image_history(request: web.Request) -> web.Response:
    return web.json_response(await blocking(request, backend(request).history, request.match_info["name"]))


async def image_tag(request: web.Request) -> web.Response:
    await blocking(request, backend(request).tag, request.match_info["name"], request.query.get("repo"),
                   request.query.get("tag"))
    return web.Response(status=201)


async def image_delete(request: web.Request) -> web.Response:
    return web.json_response(await blocking(request, backend(request).remove, request.match_info["name"],
                                            qbool(request, "force"), not qbool(request, "noprune")))


async def image_prune(request: web.Request) -> web.Response:
    return web.json_response(await blocking(request, backend(request).prune, qfilters(request)))


async def image_search(request: web.Request) -> web.Response:
    """``GET /images/search?term=&limit=&filters=``: the registry's search API; bad
    credentials are ignored (dockerd: search needs none)."""
    raw = request.query.get("limit") or ""
    try:
        limit = int(raw) if raw else None
    except ValueError:
        limit = -1
    if limit is not None and limit < 0:
        raise InvalidParameter(f"invalid limit specified: {raw!r}")
    filters = qfilters(request)
    try:
        auth = auth_header(request)
    except InvalidParameter:
        auth = None
    return web.json_response(await blocking(request, backend(request).search, request.query.get("term", ""),
                                            limit, filters, auth))


async def image_create(request: web.Request) -> web.StreamResponse:
    """``fromSrc=-`` imports the request body; ``fromImage`` pulls (with the request's
    ``X-Registry-Auth`` and ``platform``), streaming progress."""
    images = backend(request)
    src = request.query.get("fromSrc")
    if src is None:
        return await stream_json(request, images.pull, request.query.get("fromImage", ""), auth=auth_header(request),
                                 tag=request.query.get("tag") or None,
                                 platform=request.query.get("platform") or None)
    if src != "-":
        raise InvalidParameter("only fromSrc=- (the request body) is supported for import")
    repo, tag = request.query.get("repo"), request.query.get("tag")
    ref = (f"{repo}:{tag}" if tag else repo) if repo else None
    if ref:
        images.check_reference(ref)  # refuse a bad name before reading the body
    changes = request.query.getall("changes", [])
    path = await spool_body(request, images.spool_path, ".upload")
    try:
        image_id = await blocking(request, images.import_tar, path, ref, changes, request.query.get("message", ""))
    finally:
        os.unlink(path)
    return web.json_response({"status": image_id})


async def image_load(request: web.Request) -> web.StreamResponse:
    images = backend(request)
    path = await spool_body(request, images.spool_path, ".archive")
    try:
        try:
            lines, problem = await blocking(request, images.load, path), None
        except DockyardError as exc:
            lines, problem = [], str(exc)
    finally:
        os.unlink(path)
    body = b"".join(json.dumps({"stream": line + "\n"}).encode() + b"\n" for line in lines)
    if problem:
        body += json.dumps({"errorDetail": {"message": problem}, "error": problem}).encode() + b"\n"
    # a chunked stream as Docker sends it: the SDK decodes a plain body as one JSON document
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(body)
    await resp.write_eof()
    return resp


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    images = backend(request)
    await blocking(request, images.check_save, names)  # unknown names: 404 before streaming
    return await stream_tar(request, lambda out: images.save(names, out))


async def image_get(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


async def images_get(request: web.Request) -> web.StreamResponse:
    return await _save(request, request.query.getall("names", []))


async def commit(request: web.Request) -> web.Response:
    q = request.query
    if not q.get("container"):
        raise InvalidParameter("a container to commit is required (container=...)")
    config = await json_body(request, "ImageCommit")
    opts = CommitOptions(repo=q.get("repo") or None, tag=q.get("tag") or None, comment=q.get("comment", ""),
                         author=q.get("author", ""), changes=tuple(q.getall("changes", [])),
                         pause=qbool(request, "pause", True), config=config or None)
    image_id = await blocking(request, backend(request).commit, q["container"], opts)
    return web.json_response({"Id": image_id}, status=201)


ROUTES = [
    ("GET", "/images/json", images_list),
    ("POST", "/images/create", image_create),
    ("POST", "/images/load", image_load),
    ("GET", "/images/get", images_get),
    ("GET", "/images/search", image_search),
    ("POST", "/images/prune", image_prune),
    ("GET", "/images/{name:.+}/json", image_inspect),
    ("GET", "/images/{name:.+}/history", image_history),
    ("POST", "/images/{name:.+}/tag", image_tag),
    ("GET", "/images/{name:.+}/get", image_get),
    ("DELETE", "/images/{name:.+}", image_delete),
    ("POST", "/commit", commit),
]
