"""``/containers/{id}/archive``: ``docker cp`` both ways (HEAD stat, GET a tar,
PUT a tar), Docker Engine API 1.41 shapes.

The stat travels base64-encoded JSON in ``X-Docker-Container-Path-Stat``; a
missing path is a 404 before any byte of the tar, a non-directory extraction
point a 400, a read-only root file system a 403.  The engine half is
:mod:`dockyard.engine.archive_ops`.
"""

import asyncio
import base64
import json
import logging
import os

from aiohttp import web

from ..engine import archive_ops
from ..errors import InvalidParameter
from .app import blocking, engine, qbool
from .images_api import stream_tar

log = logging.getLogger("dockyard.api.archive")
STAT_HEADER = "X-Docker-Container-Path-Stat"


def _path(request):
    path = request.query.get("path")
    if not path:
        raise InvalidParameter("Path cannot be empty")
    return path


def _stat_header(stat):
    return base64.b64encode(json.dumps(stat).encode()).decode()


async def head(request):
    eng = engine(request)
    stat = await blocking(request, archive_ops.stat_path, eng, request.match_info["id"], _path(request))
    return web.Response(status=200, headers={STAT_HEADER: _stat_header(stat)})


async def get(request):
    eng = engine(request)
    ref, path = request.match_info["id"], _path(request)
    stat = await blocking(request, archive_ops.stat_path, eng, ref, path)  # a 404 before the first byte
    return await stream_tar(request, lambda out: archive_ops.write_archive(eng, ref, path, out),
                            {STAT_HEADER: _stat_header(stat)})


class _BodyReader:
    """The request body as a blocking file for a worker thread (read through the loop)."""

    def __init__(self, request, loop):
        self.content, self.loop = request.content, loop

    def read(self, n=-1):
        size = n if n and n > 0 else 1 << 20
        return asyncio.run_coroutine_threadsafe(self.content.read(size), self.loop).result()


async def put(request):
    eng = engine(request)
    ref, path = request.match_info["id"], _path(request)
    body = _BodyReader(request, asyncio.get_running_loop())
    await blocking(request, archive_ops.put_archive, eng, ref, path, body,
                   no_overwrite_dir_non_dir=qbool(request, "noOverwriteDirNonDir"),
                   copy_uid_gid=qbool(request, "copyUIDGID"),
                   tmpdir=os.path.join(eng.data_root, "tmp"))
    return web.Response(status=200)


ROUTES = [
    ("HEAD", "/containers/{id}/archive", head),
    ("GET", "/containers/{id}/archive", get),
    ("PUT", "/containers/{id}/archive", put),
]
