"""The CRI's ImageService: the engine's images as a kubelet sees them.

CRI images are the images ``docker images`` shows (one content store, one layer
store); pulls go through the registry client the Docker API's ``/images/create``
uses, with its per-host mirrors, so ``registry.k8s.io/...`` is pulled from a
mirror when ``--registry-mirror registry.k8s.io=URL`` names one.

Names are shown as Kubernetes (and containerd) show them, fully qualified: the
engine's ``busybox:latest`` is ``docker.io/library/busybox:latest``, and a
digest reference ``docker.io/library/busybox@sha256:...``.  A request may name
an image by id (``sha256:...``), by any spelling of a tag or by digest.

Removal follows the CRI, not ``docker rmi``: an image goes with all its names
(stopped containers don't hold it), and removing an image that is not there
succeeds.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

import grpc

from ..errors import NotFound
from .api import api_pb2 as pb
from .config import CriConfig
from .errors import rpc

#: how long a measured use of the image file system is reused (kubelets ask every ~10 s)
FS_USAGE_TTL = 10.0


class ImagesBackend(Protocol):
    """What the ImageService calls of :class:`dockyard.engine.images.service.ImageService`."""

    def resolve(self, ref: str) -> str: ...
    def inspect(self, ref: str) -> dict: ...
    def summaries(self, show_all: bool, filters: dict[str, list[str]]) -> Iterator[dict]: ...
    def remove(self, ref: str, force: bool = False, prune: bool = True) -> list[dict]: ...
    def pull(self, ref: str, auth: dict | None = None, tag: str | None = None, platform: str | None = None,
             progress: Any = None, cancel: Any = None) -> str: ...


class StorageBackend(Protocol):
    @property
    def driver_name(self) -> str: ...


class Engine(Protocol):
    """The parts of :class:`dockyard.engine.engine.Engine` the images need."""

    images: ImagesBackend
    storage: StorageBackend
    data_root: str


def full_name(familiar: str) -> str:
    """A stored (familiar) reference in Kubernetes' fully qualified form:
    ``busybox:latest`` -> ``docker.io/library/busybox:latest``, ``team/app@sha256:..``
    -> ``docker.io/team/app@sha256:..``; ``registry.k8s.io/pause:3.9`` as it is."""
    first, sep, rest = familiar.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return familiar
    return f"docker.io/{familiar}" if sep else f"docker.io/library/{familiar}"


def user_of(user: str) -> tuple[int | None, str]:
    """The image's ``User`` as the CRI gives it: ``(uid, "")`` for a numeric user
    (``1002``, ``1003:1004``), ``(None, name)`` for a name (``www-data:1004``),
    ``(None, "")`` for none.  The group is the container's business, not the image's."""
    name = user.split(":", 1)[0]
    if not name:
        return None, ""
    return (int(name), "") if name.isdigit() else (None, name)


def auth_config(auth: pb.AuthConfig) -> dict[str, str] | None:
    """The request's credentials as Docker's AuthConfig (what the registry client takes)."""
    fields = {"username": auth.username, "password": auth.password, "auth": auth.auth,
              "serveraddress": auth.server_address, "identitytoken": auth.identity_token,
              "registrytoken": auth.registry_token}
    given = {k: v for k, v in fields.items() if v}
    return given or None


class ImageService:
    """ListImages, ImageStatus, PullImage, RemoveImage, ImageFsInfo over ``eng``."""

    def __init__(self, eng: Engine, cfg: CriConfig) -> None:
        self.images = eng.images
        self.storage = eng.storage
        self.data_root = eng.data_root
        self.cfg = cfg
        self._usage_lock = threading.Lock()
        self._usage: tuple[float, str, int, int] | None = None  # (monotonic time, mountpoint, bytes, inodes)

    # --- views -------------------------------------------------------------------------
    def _image(self, image_id: str) -> tuple[pb.Image, dict]:
        view = self.images.inspect(image_id)
        uid, username = user_of((view.get("Config") or {}).get("User") or "")
        tags = [full_name(t) for t in view.get("RepoTags") or []]
        image = pb.Image(id=view["Id"], repo_tags=tags,
                         repo_digests=[full_name(d) for d in view.get("RepoDigests") or []],
                         size=max(int(view.get("Size") or 0), 0), username=username,
                         spec=pb.ImageSpec(image=view["Id"]),
                         pinned=full_name(self.cfg.pause_image) in tags)
        if uid is not None:
            image.uid.value = uid
        return image, view

    def _find(self, ref: str) -> str | None:
        """The id of the image ``ref`` names, or None when there is none."""
        try:
            return self.images.resolve(ref)
        except NotFound:
            return None

    # --- RPCs --------------------------------------------------------------------------
    @rpc
    def ListImages(self, request: pb.ListImagesRequest, context: grpc.ServicerContext) -> pb.ListImagesResponse:
        """Every image (intermediate build images aside); a filter's image: that one only."""
        wanted = request.filter.image.image if request.HasField("filter") else ""
        if wanted:
            ids = [i for i in [self._find(wanted)] if i]
        else:
            ids = list(dict.fromkeys(s["Id"] for s in self.images.summaries(False, {})))
        out = []
        for image_id in ids:
            try:
                out.append(self._image(image_id)[0])
            except NotFound:  # removed meanwhile
                continue
        return pb.ListImagesResponse(images=out)

    @rpc
    def ImageStatus(self, request: pb.ImageStatusRequest, context: grpc.ServicerContext) -> pb.ImageStatusResponse:
        """The image, or an empty response when there is none (not an error, per the CRI)."""
        image_id = self._find(request.image.image)
        if image_id is None:
            return pb.ImageStatusResponse()
        try:
            image, view = self._image(image_id)
        except NotFound:
            return pb.ImageStatusResponse()
        info = {}
        if request.verbose:
            spec = {"created": view.get("Created"), "architecture": view.get("Architecture"), "os": view.get("Os"),
                    "config": view.get("Config"), "rootfs": {"type": "layers",
                                                             "diff_ids": view.get("RootFS", {}).get("Layers")}}
            info["info"] = json.dumps({"id": image_id, "graphDriver": view.get("GraphDriver"), "imageSpec": spec})
        return pb.ImageStatusResponse(image=image, info=info)

    @rpc
    def PullImage(self, request: pb.PullImageRequest, context: grpc.ServicerContext) -> pb.PullImageResponse:
        """Pull through the engine's registry client (its mirrors, its insecure
        registries, the request's credentials); the answer names the image by id.
        A kubelet that gives up on the call cancels the pull."""
        cancel = threading.Event()
        context.add_callback(cancel.set)
        auth = auth_config(request.auth) if request.HasField("auth") else None
        image_id = self.images.pull(request.image.image, auth=auth, cancel=cancel)
        return pb.PullImageResponse(image_ref=image_id)

    @rpc
    def RemoveImage(self, request: pb.RemoveImageRequest, context: grpc.ServicerContext) -> pb.RemoveImageResponse:
        """Remove the image and every name it has; a missing one is no error."""
        image_id = self._find(request.image.image)
        if image_id is not None:
            try:
                self.images.remove(image_id, force=True)
            except NotFound:  # removed meanwhile: as asked
                pass
        return pb.RemoveImageResponse()

    @rpc
    def ImageFsInfo(self, request: pb.ImageFsInfoRequest, context: grpc.ServicerContext) -> pb.ImageFsInfoResponse:
        """The storage driver's home: bytes and inodes its layers use (measured at
        most every :data:`FS_USAGE_TTL` seconds), stamped in nanoseconds."""
        mountpoint = os.path.join(self.data_root, "storage", self.storage.driver_name)
        with self._usage_lock:
            now = time.monotonic()
            if self._usage is None or self._usage[1] != mountpoint or now - self._usage[0] > FS_USAGE_TTL:
                self._usage = (now, mountpoint, *disk_usage(mountpoint))
            _, _, used, inodes = self._usage
        usage = pb.FilesystemUsage(timestamp=time.time_ns(), fs_id=pb.FilesystemIdentifier(mountpoint=mountpoint),
                                   used_bytes=pb.UInt64Value(value=used), inodes_used=pb.UInt64Value(value=inodes))
        return pb.ImageFsInfoResponse(image_filesystems=[usage])


def _mounts_under(root: str) -> set[str]:
    """Mount points strictly below ``root`` (containers' root file systems): not the layers'."""
    out = set()
    prefix = root.rstrip("/") + "/"
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                target = line.split()[4].replace("\\040", " ")
                if target.startswith(prefix):
                    out.add(target)
    except OSError:
        pass
    return out


def disk_usage(root: str) -> tuple[int, int]:
    """``(bytes, inodes)`` used under ``root`` (allocated blocks; a hard-linked file
    once), not descending into mounts made below it."""
    skip = _mounts_under(root)
    seen: set[tuple[int, int]] = set()
    used = inodes = 0
    stack = [root]
    while stack:
        path = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                used += st.st_blocks * 512
                inodes += 1
            if entry.is_dir(follow_symlinks=False) and entry.path not in skip:
                stack.append(entry.path)
    return used, inodes
