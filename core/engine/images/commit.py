"""``commit``: a container's changes as a new image; and the two steps the builder
shares with it, a layer's diff against its parent and a new image on a parent.

Commit follows moby's ``daemon/commit.go``: the container is paused while its
layer is read (unless ``pause=False``), the storage driver's diff of the
container against its image is the new layer (an empty diff adds no layer, only
a history entry marked ``empty_layer``), and the new config is the request's
config with the ``--change`` lines applied, completed from the container's
config (moby's ``merge``).  The new image records the container's image as its
parent, so ``docker history`` shows that image's id below it.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Protocol

import attrs

from ... import __version__
from ...driverkit.tarsplit import scan_entries
from ...errors import DockyardError, ImageNotFound, InvalidParameter, no_space
from ...model.container import ContainerRecord
from ...model.image import ContainerConfig, History, ImageConfig, RootFS
from . import changes as changes_mod
from . import reference
from .store import ImageStore, goarch, now_iso


@attrs.frozen
class CommitOptions:
    """``POST /commit``'s query and body: the name to tag (``repo``, ``tag``), the
    history entry's ``comment`` and ``author``, ``--change`` lines, whether to pause
    a running container, and the config to merge over the container's."""

    repo: str | None = None
    tag: str | None = None
    comment: str = ""
    author: str = ""
    changes: tuple[str, ...] = ()
    pause: bool = True
    config: Any = None


class Containers(Protocol):
    """What a commit needs of the container service."""

    def resolve(self, ref: str) -> str: ...

    def get(self, cid: str) -> ContainerRecord: ...

    def pause(self, ref: str) -> None: ...

    def unpause(self, ref: str) -> None: ...


def merge(user: ContainerConfig, container: ContainerConfig) -> ContainerConfig:
    """moby's ``merge(userConf, imageConf)``: fill what the user did not set."""
    out = user.copy()
    if not out.user:
        out.user = container.user or ""
    if not out.exposed_ports:
        out.exposed_ports = container.exposed_ports
    else:
        out.exposed_ports = {**(container.exposed_ports or {}), **out.exposed_ports}
    if not out.env:
        out.env = container.env
    else:
        keys = {e.split("=", 1)[0] for e in out.env}
        out.env = list(out.env) + [e for e in container.env or [] if e.split("=", 1)[0] not in keys]
    out.labels = {**(container.labels or {}), **(out.labels or {})}
    if not out.entrypoint:
        if not out.cmd:
            out.cmd = container.cmd
        if out.entrypoint is None:
            out.entrypoint = container.entrypoint
    if not out.working_dir:
        out.working_dir = container.working_dir or ""
    out.volumes = {**(container.volumes or {}), **(out.volumes or {})} or None
    if not out.stop_signal and container.stop_signal:
        out.stop_signal = container.stop_signal
    return out


class ImageWriter:
    """Makes images of layers: ``images`` records them, ``layers`` holds them,
    ``containers`` are paused while a commit reads them; ``data_root`` is named by
    a full disk's error."""

    def __init__(self, images: ImageStore, layers: Any, containers: Containers, data_root: str) -> None:
        self.images, self.layers, self.containers, self.data_root = images, layers, containers, data_root

    def diff_layer(self, cid: str, parent_top: str | None, pause: bool = False) -> tuple[str, str]:
        """The layer diff of container (or read-write layer) ``cid`` against layer
        ``parent_top`` in a temporary file: ``(path, diff_id)``; the caller unlinks it.
        ``pause``: pause ``cid``, a running container, while it is read."""
        containers = self.containers
        paused_here = False
        rec = containers.get(cid) if pause else None
        if rec is not None and rec.state.running and not rec.state.paused:
            containers.pause(cid)
            paused_here = True
        fd, path = self.images.spool_path(".commit")
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                stream = self.layers.diff(cid, parent_top)
                try:
                    while chunk := stream.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                finally:
                    stream.close()
        except BaseException:
            os.unlink(path)
            raise
        finally:
            if paused_here:
                containers.unpause(cid)
        return path, "sha256:" + digest.hexdigest()

    def new_image(self, parent_id: str | None, config: ContainerConfig, history_entry: History, *,
                  diff: tuple[str, str] | None = None, container: str = "",
                  container_config: ContainerConfig | None = None,
                  author: str = "", comment: str = "", ref: str | None = None) -> str:
        """Store the image made of ``parent_id`` (``None``: scratch) and ``diff`` (an
        uncompressed layer tar's ``(path, diff_id)``, or ``None``) with image
        ``config``; returns its id.  An empty diff adds no layer, only a history
        entry marked ``empty_layer``.  ``history_entry`` (``created_by``, ...) gets
        ``created``; the image records ``parent_id`` as its parent; ``ref``, if
        given, is tagged in the same critical section."""
        images, layers = self.images, self.layers
        parent_cfg = images.config(parent_id) if parent_id else ImageConfig()
        parent_top = images.get(parent_id)["top_layer"] if parent_id else None
        layer = None if diff is None or scan_entries(diff[0]) == [] else diff
        created = now_iso()
        entry = attrs.evolve(history_entry, extra=dict(history_entry.extra))
        entry.created = created
        if author:
            entry.author = author
        if comment:
            entry.comment = comment
        if layer is None:
            entry.empty_layer = True
        history = [h for h in parent_cfg.history or []] + [entry]
        diff_ids = parent_cfg.diff_ids + ([] if layer is None else [layer[1]])
        image = ImageConfig(
            architecture=parent_cfg.architecture or goarch(), os=parent_cfg.os or "linux", config=config,
            container=container, container_config=container_config or ContainerConfig(), created=created,
            docker_version=f"dockyard-{__version__}", rootfs=RootFS(type="layers", diff_ids=diff_ids),
            history=history)
        if parent_cfg.variant:
            image.variant = parent_cfg.variant
        if author:
            image.author = author
        if comment:
            image.comment = comment
        with images.lock:
            top = parent_top if layer is None else layers.register(layer[0], layer[1], parent_top)
            try:
                new_id = images.add(image, top, parent=parent_id)
                if ref:
                    images.tag(new_id, ref)
            except BaseException:
                if top != parent_top:
                    layers.release(top)
                raise
        return new_id

    def commit(self, container: str, opts: CommitOptions = CommitOptions()) -> str:
        """``POST /commit``; returns the new image's id."""
        repo, tag, comment, author, config = opts.repo, opts.tag, opts.comment, opts.author, opts.config
        cid = self.containers.resolve(container)
        ref_n = None
        if repo:
            ref_n = reference.normalize(f"{repo}:{tag}" if tag else repo)
            if "@" in ref_n:
                raise InvalidParameter(f"refusing to commit to a digest reference: {ref_n}")
        elif tag:
            raise InvalidParameter("a tag needs a repository name")
        if config is not None and not isinstance(config, dict):
            raise InvalidParameter("the commit's config must be a JSON object")
        user = changes_mod.apply(ContainerConfig.from_json(dict(config or {})), list(opts.changes))
        rec = self.containers.get(cid)
        image_id = rec.image_id
        try:
            parent_top = self.images.top_layer(image_id)
        except ImageNotFound:  # deleted by rmi -f: dockerd 20.10 fails too, with a 500, as it cannot read its config
            raise DockyardError(f"failed to get digest {image_id}: no such image") from None
        with no_space("commit", self.data_root):
            path, diff_id = self.diff_layer(cid, parent_top, opts.pause)
            try:
                running = ContainerConfig.from_json(rec.config)  # the container's config
                new_id = self.new_image(image_id, merge(user, running),
                                        History(created_by=" ".join(running.cmd or [])),
                                        diff=(path, diff_id), container=cid, container_config=running,
                                        author=author, comment=comment, ref=ref_n)
            finally:
                os.unlink(path)
        self.images.emit("container", "commit", cid, {"comment": comment, "imageID": new_id,
                                                      "imageRef": ref_n or "", "name": rec.name})
        return new_id
