"""Helpers shared by the image-store tests (``test_images*.py``): unique images
made from the session's busybox tarball, raw API calls, cleanup (:class:`Images`,
behind the ``imgs`` fixture of this directory's ``conftest.py``)."""

import io
import json
import tarfile
import uuid
from urllib.parse import quote

from dockyard.testing.daemon import http


def uniq(prefix="img"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def raw(daemon, method, path, body=None, headers=None):
    """One HTTP request on the daemon's socket: ``(status, JSON or bytes)``."""
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    status, _, payload = http(daemon.sock, method, path, data, headers)
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload


def q(ref):
    return quote(ref, safe="")


def rootfs_with(busybox_tar, path, files):
    """busybox plus ``files`` (``{name: bytes}``): a tarball whose layer no other test has."""
    with tarfile.open(busybox_tar) as src, tarfile.open(path, "w") as out:
        for m in src.getmembers():
            out.addfile(m, src.extractfile(m) if m.isreg() else None)
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            out.addfile(ti, io.BytesIO(data))
    return path


def import_image(daemon, tar, ref=None, changes=(), message=None):
    """``dockyard import``; returns the image id."""
    args = ["import"] + [f"--change={c}" for c in changes] + (["-m", message] if message else [])
    res = daemon.cli(*args, str(tar), *([ref] if ref else []), check=True)
    return res.stdout.decode().split()[-1]


class Images:
    """Names and containers a test made, removed at its end."""

    def __init__(self, daemon, busybox_tar):
        self.daemon, self.busybox_tar = daemon, busybox_tar
        self.client = daemon.sdk()
        self.label = uniq("suite")
        self.made, self.containers = [], []

    def new(self, ref=None, changes=(), message=None, tar=None):
        image_id = import_image(self.daemon, tar or self.busybox_tar, ref,
                                [f"LABEL suite={self.label}", *changes], message)
        self.made.append(image_id)
        return image_id

    def keep(self, image_id):
        self.made.append(image_id)
        return image_id

    def container(self, image, *cmd, **kw):
        c = self.client.containers.create(image, list(cmd) or None, **kw)
        self.containers.append(c.id)
        return c

    def close(self):
        import docker
        for cid in self.containers:
            try:
                self.client.containers.get(cid).remove(force=True)
            except docker.errors.NotFound:
                pass
        for image_id in reversed(self.made):
            try:
                self.client.images.remove(image_id, force=True)
            except docker.errors.ImageNotFound:
                pass
            except docker.errors.APIError as exc:  # e.g. a child made later went first
                print(f"cleanup of {image_id}: {exc}")
        self.client.close()


def out(res):
    assert res.returncode == 0, (res.stdout, res.stderr)
    return res.stdout.decode()
