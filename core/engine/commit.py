"""``commit`` (a container's changes as a new image) and ``export`` (a
container's file system as a plain tar).

Commit follows moby's ``daemon/commit.go``: the container is paused while its
layer is read (unless ``pause=False``), the storage driver's diff of the
container against its image is the new layer (an empty diff adds no layer, only
a history entry marked ``empty_layer``), and the new config is the request's
config with the ``--change`` lines applied, completed from the container's
config (moby's ``merge``).  The new image records the container's image as its
parent, so ``docker history`` shows that image's id below it.
"""

import hashlib
import os

from .. import __version__
from ..driverkit.fdwalk import Tree
from ..driverkit.tarsplit import scan_entries
from ..driverkit.tarwriter import TarWriter
from ..errors import InvalidParameter, no_space
from . import changes as changes_mod
from . import reference
from .images import goarch, now_iso


def merge(user, container):
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


def diff_layer(eng, cid, parent_top, pause=False):
    """The layer diff of container (or read-write layer) ``cid`` against layer
    ``parent_top`` in a temporary file: ``(path, diff_id)``; the caller unlinks it.
    ``pause``: pause ``cid``, a running container, while it is read."""
    containers, layers = eng.containers, eng.layers
    paused_here = False
    rec = containers.get(cid) if pause else None
    if pause and rec["State"]["Running"] and not rec["State"].get("Paused"):
        containers.pause(cid)
        paused_here = True
    fd, path = eng.images.spool_path(".commit")
    try:
        digest = hashlib.sha256()
        parent = layers.driver_id(parent_top) if parent_top else None
        with os.fdopen(fd, "wb") as out:
            stream = layers.hook.storage_diff(id=cid, parent=parent)
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


def new_image(eng, parent_id, config, history_entry, *, diff=None, container="", container_config=None,
              author="", comment="", ref=None):
    """Store the image made of ``parent_id`` (``None``: scratch) and ``diff`` (an
    uncompressed layer tar's ``(path, diff_id)``, or ``None``) with image
    ``config``; returns its id.  An empty diff adds no layer, only a history
    entry marked ``empty_layer``.  ``history_entry`` (``created_by``, ...) gets
    ``created``; the image records ``parent_id`` as its parent; ``ref``, if
    given, is tagged in the same critical section."""
    images, layers = eng.images, eng.layers
    parent_cfg = images.config(parent_id) if parent_id else {}
    parent_top = images.get(parent_id)["top_layer"] if parent_id else None
    empty = diff is None or scan_entries(diff[0]) == []
    created = now_iso()
    entry = {"created": created, **history_entry}
    if author:
        entry["author"] = author
    if comment:
        entry["comment"] = comment
    if empty:
        entry["empty_layer"] = True
    history = list(parent_cfg.get("history") or []) + [entry]
    diff_ids = list((parent_cfg.get("rootfs") or {}).get("diff_ids") or []) + ([] if empty else [diff[1]])
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
        top = parent_top if empty else layers.register(diff[0], diff[1], parent_top)
        try:
            new_id = images.add(image, top, parent=parent_id)
            if ref:
                images.tag(new_id, ref)
        except BaseException:
            if top != parent_top:
                layers.release(top)
            raise
    return new_id


def commit(eng, container, repo=None, tag=None, comment="", author="", changes=(), pause=True, config=None):
    """``POST /commit``; returns the new image's id."""
    cid = eng.containers.resolve(container)
    ref_n = None
    if repo:
        ref_n = reference.normalize(f"{repo}:{tag}" if tag else repo)
        if "@" in ref_n:
            raise InvalidParameter(f"refusing to commit to a digest reference: {ref_n}")
    elif tag:
        raise InvalidParameter("a tag needs a repository name")
    if config is not None and not isinstance(config, dict):
        raise InvalidParameter("the commit's config must be a JSON object")
    user = changes_mod.apply(dict(config or {}), changes)
    rec = eng.containers.get(cid)
    image_id = rec["Image"]
    parent_top = eng.images.get(image_id)["top_layer"]
    with no_space("commit", eng.data_root):
        path, diff_id = diff_layer(eng, cid, parent_top, pause)
        try:
            new_id = new_image(eng, image_id, merge(user, rec["Config"]),
                               {"created_by": " ".join(rec["Config"].get("Cmd") or [])}, diff=(path, diff_id),
                               container=cid, container_config=rec["Config"], author=author, comment=comment,
                               ref=ref_n)
        finally:
            os.unlink(path)
    eng.emit("container", "commit", cid, {"comment": comment, "imageID": new_id, "imageRef": ref_n or "",
                                          "name": rec["Name"].lstrip("/")})
    return new_id


def export(eng, container, fileobj):
    """Write the container's whole file system to ``fileobj`` as a plain tar.
    The container may be running: its tree is read relative to directory fds
    (:mod:`dockyard.driverkit.fdwalk`), so a directory it swaps for a symlink meanwhile
    is never followed."""
    cid = eng.containers.resolve(container)
    rec = eng.containers.get(cid)
    root = eng.layers.mount(cid)
    try:
        with Tree(root) as tree:
            writer = TarWriter(fileobj)
            writer.add_tree(tree)
            writer.close()
    finally:
        eng.layers.unmount(cid)
    eng.emit("container", "export", cid, {"name": rec["Name"].lstrip("/"), "image": rec["Config"].get("Image", "")})
