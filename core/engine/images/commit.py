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
from ...errors import InvalidParameter, no_space
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

    def get(self, cid: str) -> dict: ...

    def pause(self, ref: str) -> None: ...

    def unpause(self, ref: str) -> None: ...


def merge(user: dict, container: dict) -> dict:
    """moby's ``merge(userConf, imageConf)``: fill what the user did not set."""
    out = dict(user)
    if not out.get("User"):
        out["User"] = container.get("User") or ""
    if not out.get("ExposedPorts"):
        out["ExposedPorts"] = container.get("ExposedPorts")
    else:
        out["ExposedPorts"] = {**(container.get("ExposedPorts") or {}), **out["ExposedPorts"]}
    if not out.get("Env"):
        out["Env"] = container.get("Env")
    else:
        keys = {e.split("=", 1)[0] for e in out["Env"]}
        out["Env"] = list(out["Env"]) + [e for e in container.get("Env") or [] if e.split("=", 1)[0] not in keys]
    out["Labels"] = {**(container.get("Labels") or {}), **(out.get("Labels") or {})}
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = container.get("Cmd")
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = container.get("Entrypoint")
    if not out.get("WorkingDir"):
        out["WorkingDir"] = container.get("WorkingDir") or ""
    out["Volumes"] = {**(container.get("Volumes") or {}), **(out.get("Volumes") or {})} or None
    if not out.get("StopSignal") and container.get("StopSignal"):
        out["StopSignal"] = container["StopSignal"]
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
        rec = containers.get(cid) if pause else {}
        if pause and rec["State"]["Running"] and not rec["State"].get("Paused"):
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

    def new_image(self, parent_id: str | None, config: dict, history_entry: dict, *,
                  diff: tuple[str, str] | None = None, container: str = "", container_config: dict | None = None,
                  author: str = "", comment: str = "", ref: str | None = None) -> str:
        """Store the image made of ``parent_id`` (``None``: scratch) and ``diff`` (an
        uncompressed layer tar's ``(path, diff_id)``, or ``None``) with image
        ``config``; returns its id.  An empty diff adds no layer, only a history
        entry marked ``empty_layer``.  ``history_entry`` (``created_by``, ...) gets
        ``created``; the image records ``parent_id`` as its parent; ``ref``, if
        given, is tagged in the same critical section."""
        images, layers = self.images, self.layers
        parent_cfg = images.config(parent_id) if parent_id else {}
        parent_top = images.get(parent_id)["top_layer"] if parent_id else None
        layer = None if diff is None or scan_entries(diff[0]) == [] else diff
        empty = layer is None
        created = now_iso()
        entry = {"created": created, **history_entry}
        if author:
            entry["author"] = author
        if comment:
            entry["comment"] = comment
        if empty:
            entry["empty_layer"] = True
        history = list(parent_cfg.get("history") or []) + [entry]
        diff_ids = list((parent_cfg.get("rootfs") or {}).get("diff_ids") or []) + ([] if layer is None else [layer[1]])
        image = {
            "architecture": parent_cfg.get("architecture") or goarch(), "os": parent_cfg.get("os") or "linux",
            "config": config, "container": container, "container_config": container_config or {},
            "created": created, "docker_version": f"dockyard-{__version__}",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history,
        }
        if parent_cfg.get("variant"):
            image["variant"] = parent_cfg["variant"]
        if author:
            image["author"] = author
        if comment:
            image["comment"] = comment
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
        user = changes_mod.apply(dict(config or {}), list(opts.changes))
        rec = self.containers.get(cid)
        image_id = rec["Image"]
        parent_top = self.images.top_layer(image_id)
        with no_space("commit", self.data_root):
            path, diff_id = self.diff_layer(cid, parent_top, opts.pause)
            try:
                new_id = self.new_image(image_id, merge(user, rec["Config"]),
                                        {"created_by": " ".join(rec["Config"].get("Cmd") or [])},
                                        diff=(path, diff_id), container=cid, container_config=rec["Config"],
                                        author=author, comment=comment, ref=ref_n)
            finally:
                os.unlink(path)
        self.images.emit("container", "commit", cid, {"comment": comment, "imageID": new_id,
                                                      "imageRef": ref_n or "", "name": rec["Name"].lstrip("/")})
        return new_id
