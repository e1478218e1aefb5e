"""``/images/*``, ``/commit``, ``/containers/{id}/export`` and ``/dockyard/system/check``.

Docker Engine API 1.41 shapes and status codes: 404 for an unknown image or
container, 409 for a refused removal, 400 for bad input (a reference that does
not parse, a bad filter, a corrupt archive).  ``POST /images/load`` answers like
Docker: 200 and a JSON stream (``{"stream": "Loaded image: ..."}``), a failure as
its last message (``{"error", "errorDetail"}``).  Archives and exports stream out
as they are written (``application/x-tar``); names are resolved before the first
byte, so an unknown one is still a plain 404.

``POST /images/create?fromImage=`` (a pull) is the registry client's:
:func:`dockyard.daemon.registry_api.pull`.
"""

import asyncio
import json
import logging
import os

from aiohttp import web

from ..engine import commit as commit_mod
from ..engine import reference
from ..engine.archive import select
from ..engine.imageremove import label_match, users_of
from ..errors import DockyardError, InvalidParameter
from .app import blocking, engine, qbool, qfilters, spool_body
from .bodies import json_body
from .listing import json_array

log = logging.getLogger("dockyard.api.images")
LIST_FILTERS = ("before", "since", "dangling", "label", "reference")


def parse_filters(request):
    """``filters`` (``{"key": ["v"]}`` or the legacy ``{"key": {"v": true}}``)."""
    return qfilters(request)


# views ---------------------------------------------------------------------------
def summary(eng, row, tags, digests):
    cfg = json.loads(row["config"])
    from ..engine.images import unix_time

    if not tags and not digests:
        tags, digests = ["<none>:<none>"], ["<none>@<none>"]
    size = eng.layers.size(row["top_layer"])
    return {"Id": row["id"], "ParentId": eng.images.parent(row["id"]), "RepoTags": tags, "RepoDigests": digests,
            "Created": unix_time(cfg.get("created") or row["created"]), "Size": size, "SharedSize": -1,
            "VirtualSize": size, "Labels": (cfg.get("config") or {}).get("Labels") or {}, "Containers": -1}


def inspect_view(eng, image_id):
    images = eng.images
    row = images.get(image_id)
    cfg = json.loads(row["config"])
    size = eng.layers.size(row["top_layer"])
    out = {
        "Id": image_id, "RepoTags": images.tags(image_id), "RepoDigests": images.repo_digests(image_id),
        "Parent": images.parent(image_id), "Comment": cfg.get("comment", ""),
        "Created": cfg.get("created", row["created"]), "Container": cfg.get("container", ""),
        "ContainerConfig": cfg.get("container_config") or {}, "DockerVersion": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""), "Config": cfg.get("config") or {},
        "Architecture": cfg.get("architecture", ""), "Os": cfg.get("os", "linux"), "Size": size,
        "VirtualSize": size, "GraphDriver": {"Name": eng.layers.driver_name, "Data": None},
        "RootFS": {"Type": "layers", "Layers": (cfg.get("rootfs") or {}).get("diff_ids") or []},
        "Metadata": {"LastTagTime": row["last_tag_time"] or "0001-01-01T00:00:00Z"},
    }
    if cfg.get("variant"):
        out["Variant"] = cfg["variant"]
    return out


# listing -------------------------------------------------------------------------
def _created(row):
    from ..engine.images import timestamp
    return timestamp(json.loads(row["config"]).get("created") or row["created"])


def _created_of(eng, ref):
    return _created(eng.images.get(eng.images.resolve(ref)))


def list_images(eng, show_all, filters):
    return list(iter_images(eng, show_all, filters))


def iter_images(eng, show_all, filters):
    """``docker images``' summaries, one at a time (checks the filters first)."""
    for key in filters:
        if key not in LIST_FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")
    dangling = {v.lower() for v in filters.get("dangling", [])}
    if dangling - {"true", "false", "1", "0"}:
        raise InvalidParameter(f"invalid filter 'dangling={sorted(dangling)[0]}'")
    dangling_only = bool(dangling & {"true", "1"})
    before = [_created_of(eng, r) for r in filters.get("before", [])]
    since = [_created_of(eng, r) for r in filters.get("since", [])]
    labels = filters.get("label", [])
    refs = filters.get("reference", [])
    for row in eng.images.all():
        image_id = row["id"]
        created = _created(row)
        if any(created >= b for b in before) or any(created <= s for s in since):
            continue
        cfg = json.loads(row["config"])
        if labels and not label_match((cfg.get("config") or {}).get("Labels"), labels):
            continue
        tags, digests = eng.images.tags(image_id), eng.images.repo_digests(image_id)
        if refs:
            tags = [t for t in tags if any(reference.matches(p, t) for p in refs)]
            digests = [d for d in digests if any(reference.matches(p, d.split("@")[0]) for p in refs)]
            if not tags and not digests:
                continue
        if not tags and not digests:
            if dangling and not dangling_only:
                continue
            if (dangling_only or not show_all) and eng.images.children(image_id):
                continue  # an intermediate image
        elif dangling_only and tags:
            continue
        yield summary(eng, row, tags, digests)


async def images_list(request):
    eng = engine(request)
    show_all, filters = qbool(request, "all"), parse_filters(request)
    return await json_array(request, lambda: iter_images(eng, show_all, filters))


async def image_inspect(request):
    eng = engine(request)
    return web.json_response(await blocking(
        request, lambda: inspect_view(eng, eng.images.resolve(request.match_info["name"]))))


async def image_history(request):
    eng = engine(request)
    return web.json_response(await blocking(request, eng.images.history, request.match_info["name"]))


async def image_tag(request):
    eng = engine(request)
    repo, tag = request.query.get("repo"), request.query.get("tag")
    if not repo:
        raise InvalidParameter("repository name must have at least one component (repo is empty)")
    target = f"{repo}:{tag}" if tag else repo
    r = reference.parse_reference(target)
    if r.digest:
        raise InvalidParameter(f"refusing to create a tag with a digest reference: {target}")

    def tag_it():
        with eng.images.lock:
            eng.images.tag(eng.images.resolve(request.match_info["name"]), r.familiar())

    await blocking(request, tag_it)
    return web.Response(status=201)


async def image_delete(request):
    eng = engine(request)
    return web.json_response(await blocking(request, eng.images.delete, request.match_info["name"],
                                            qbool(request, "force"), None, not qbool(request, "noprune")))


async def image_prune(request):
    eng = engine(request)
    filters = parse_filters(request)
    report = await blocking(request, eng.images.prune, filters, lambda i: users_of(eng.images, i))
    eng.emit("image", "prune", "", {"reclaimed": str(report["SpaceReclaimed"])})
    return web.json_response(report)


# import, load, pull ----------------------------------------------------------------
async def image_create(request):
    """``fromSrc=-`` imports the request body; ``fromImage`` pulls."""
    eng = engine(request)
    src = request.query.get("fromSrc")
    if src is None:
        from .registry_api import pull

        return await pull(request, request.query.get("fromImage", ""), request.query.get("tag") or None)
    if src != "-":
        raise InvalidParameter("only fromSrc=- (the request body) is supported for import")
    repo, tag = request.query.get("repo"), request.query.get("tag")
    ref = (f"{repo}:{tag}" if tag else repo) if repo else None
    if ref:
        reference.parse_reference(ref)  # refuse a bad name before reading the body
    changes = request.query.getall("changes", [])
    path = await spool_body(request, eng, ".upload")
    try:
        image_id = await blocking(request, eng.images.import_tar, path, ref, changes,
                                  request.query.get("message", ""))
    finally:
        os.unlink(path)
    return web.json_response({"status": image_id})


async def image_load(request):
    eng = engine(request)
    path = await spool_body(request, eng, ".archive")
    try:
        try:
            lines, problem = await blocking(request, eng.images.load, path), None
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


# save, export: tars streamed as they are written ------------------------------------
class _PipeWriter:
    """The writing end of a pipe as a file that knows its position (tarfile asks)."""

    def __init__(self, fd):
        self._fh, self._pos = os.fdopen(fd, "wb"), 0

    def write(self, data):
        n = self._fh.write(data)
        self._pos += len(data)
        return n

    def tell(self):
        return self._pos

    def flush(self):
        self._fh.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


async def stream_tar(request, produce, headers=None):
    """Run ``produce(binary file)`` on a worker thread, streaming what it writes
    (``headers``: more response headers).  A failure after the first byte cuts the
    connection, so a client never takes a partial tar for a whole one."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=0)

    def run():
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


async def _save(request, names):
    eng = engine(request)
    if not names:
        raise InvalidParameter("no image named to save")
    await blocking(request, select, eng.images, names)  # unknown names: 404 before streaming
    return await stream_tar(request, lambda out: eng.images.save(names, out))


async def image_get(request):
    return await _save(request, [request.match_info["name"]])


async def images_get(request):
    return await _save(request, request.query.getall("names", []))


async def container_export(request):
    eng = engine(request)
    cid = await blocking(request, eng.containers.resolve, request.match_info["id"])
    return await stream_tar(request, lambda out: commit_mod.export(eng, cid, out))


async def commit(request):
    eng = engine(request)
    q = request.query
    if not q.get("container"):
        raise InvalidParameter("a container to commit is required (container=...)")
    config = await json_body(request, "ImageCommit")
    image_id = await blocking(request, commit_mod.commit, eng, q["container"], repo=q.get("repo") or None,
                              tag=q.get("tag") or None, comment=q.get("comment", ""), author=q.get("author", ""),
                              changes=q.getall("changes", []), pause=qbool(request, "pause", True),
                              config=config or None)
    return web.json_response({"Id": image_id}, status=201)


async def system_check(request):
    eng = engine(request)
    return web.json_response(await blocking(request, eng.images.check))


ROUTES = [
    ("GET", "/images/json", images_list),
    ("POST", "/images/create", image_create),
    ("POST", "/images/load", image_load),
    ("GET", "/images/get", images_get),
    ("POST", "/images/prune", image_prune),
    ("GET", "/images/{name:.+}/json", image_inspect),
    ("GET", "/images/{name:.+}/history", image_history),
    ("POST", "/images/{name:.+}/tag", image_tag),
    ("GET", "/images/{name:.+}/get", image_get),
    ("DELETE", "/images/{name:.+}", image_delete),
    ("GET", "/containers/{id}/export", container_export),
    ("POST", "/commit", commit),
    ("GET", "/dockyard/system/check", system_check),
]
