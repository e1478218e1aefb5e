"""Helpers of the ``POST /build`` tests (``test_build*.py``): context tars, raw
build requests, and the state a failed build must leave unchanged."""

import gzip
import io
import json
import tarfile
import uuid
from urllib.parse import urlencode

from dockyard.testing.daemon import http, mounts_under


def uniq(prefix="bld"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def context(files, compress=None):
    """A context tar: ``{name: bytes | str | (bytes, mode) | None (a directory)}``."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w") as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_600_000_000
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
                continue
            mode = 0o644
            if isinstance(data, tuple):
                data, mode = data
            if isinstance(data, str):
                data = data.encode()
            ti.size, ti.mode = len(data), mode
            tar.addfile(ti, io.BytesIO(data))
    raw = bio.getvalue()
    return gzip.compress(raw) if compress == "gzip" else raw


def post_build(daemon, body, **params):
    """``POST /build``: ``(status, [messages])`` (a plain error is one message)."""
    query = []
    for key, value in params.items():
        if isinstance(value, (list, tuple)):
            query += [(key, v) for v in value]
        elif isinstance(value, dict):
            query.append((key, json.dumps(value)))
        elif isinstance(value, bool):
            query.append((key, "1" if value else "0"))
        else:
            query.append((key, str(value)))
    status, _, payload = http(daemon.sock, "POST", f"/v1.41/build?{urlencode(query)}", body,
                              {"Content-Type": "application/x-tar"})
    msgs = [json.loads(line) for line in payload.splitlines() if line.strip()]
    return status, msgs


def text(msgs):
    return "".join(m.get("stream", "") for m in msgs)


def final_id(msgs):
    ids = [m["aux"]["ID"] for m in msgs if "aux" in m]
    return ids[-1] if ids else None


def build_ok(daemon, files, **params):
    status, msgs = post_build(daemon, context(files), **params)
    assert status == 200, msgs
    assert not [m for m in msgs if "error" in m], text(msgs) + json.dumps(msgs[-1])
    return final_id(msgs), text(msgs)


class Snapshot:
    """Containers, images, tags and mounts of a daemon, to compare after a failed build."""

    def __init__(self, daemon, client):
        self.daemon, self.client = daemon, client
        self.containers = self._containers()
        self.images = self._images()
        self.mounts = set(mounts_under(daemon.data_root))

    def _containers(self):
        return {c.id for c in self.client.containers.list(all=True)}

    def _images(self):
        return {i["Id"]: sorted(i["RepoTags"] or []) for i in self.client.api.images(all=True)}

    def assert_unchanged(self, allow_new_images=False):
        assert self._containers() == self.containers
        assert set(mounts_under(self.daemon.data_root)) == self.mounts
        now = self._images()
        for image_id, tags in self.images.items():
            assert now.get(image_id) == tags, f"image {image_id} changed: {tags} -> {now.get(image_id)}"
        if not allow_new_images:
            assert set(now) == set(self.images)
        tmp = self.daemon.data_root / "tmp"
        assert not [p for p in tmp.iterdir() if p.name.startswith("build-")] if tmp.exists() else True
