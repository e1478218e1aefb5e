"""The image store's side of pull and push: the API the registry client calls.

Three calls, on the :class:`~.store.ImageStore` they are given; repositories
are given in any spelling of Docker's grammar (``busybox``,
``docker.io/library/busybox``, ``localhost:5000/team/app``) and answered in the
familiar one (``busybox``, ``localhost:5000/team/app``) -- turn one into the
registry's host and path with ``reference.parse_reference(repo, None)``
(``.domain``, ``.path``).

``add_from_registry(repo, tag, manifest_bytes, manifest_media_type,
config_bytes, layers, index_bytes=None, index_media_type=None) -> image id``
    After a pull.  ``layers`` is ``[{"diff_id", "blob_digest", "media_type",
    "size", "staged", "open_tar"}]`` in manifest order; ``staged`` is the layer
    the caller extracted while it downloaded (:meth:`LayerStore.stage
    <dockyard.engine.layers.store.LayerStore.stage>`, on the driver layer of the
    layer before it), ``open_tar()`` opens its uncompressed tar again (from the
    verified blob: needed only when another pull recorded a parent layer first,
    so that ``staged`` sits on the wrong parent); or ``tar_path`` names the
    layer's *uncompressed* tar (the caller may delete it afterwards); or none of
    them for a layer already registered (``layers.get(chain_id)``).  Staged
    layers not recorded (already there, or on any failure) are discarded.
    Checks first -- manifest media type and shape, the config's digest and size
    against the manifest, the layer descriptors against ``layers``, the config's
    ``rootfs.diff_ids`` against the diff ids, the manifest's presence in the
    index -- then registers the missing layers (each tar verified against its
    diff id), stores config, manifest and index as blobs, records the repository
    digest (the index's if there is one, else the manifest's: what ``RepoDigests``
    shows, as Docker), the distribution metadata of every layer blob, tags
    ``repo:tag`` (if ``tag``) and emits the image ``pull`` event.  All or
    nothing: on any failure the layers and blobs it added are removed again and
    the error (``InvalidParameter``/``DigestMismatch``: 400, ``StorageError``)
    is raised.

``push_plan(ref) -> {"image_id", "config", "layers", "manifests"}``
    ``config`` is ``(digest, bytes)``; ``layers`` (base first) ``[{"diff_id",
    "size", "known_blobs": [{"digest", "media_type", "size", "repo"}],
    "open_tar"}]``, where ``open_tar()`` returns a binary file of the layer's
    uncompressed tar rebuilt from its tar-split record: byte-identical to the
    original (its sha256 is the diff id; a difference raises ``StorageError``
    when the end is read).  Close it (it holds a mount).  ``manifests`` is
    ``{repo: (digest, media_type, bytes)}``: the manifests recorded for the
    image per repository, whose blobs a push may reuse unchanged.

``record_pushed(repo, tag, manifest_digest, manifest_bytes, media_type, blobs)``
    After a push: stores the manifest, records ``repo@digest`` as a RepoDigest
    and every layer blob the manifest names (its descriptor paired with the
    config's diff id) as distribution metadata for ``repo``; ``blobs`` may add
    ``[{"diff_id", "digest", "media_type", "size"}]`` the caller knows more
    about (entries without ``diff_id``, e.g. the config, are ignored).  Emits
    the image ``push`` event.
"""

from __future__ import annotations

import logging
from typing import Any

from ... import imagespec
from ...errors import ImageNotFound, InvalidParameter, StorageError, no_space
from ...model.image import ImageConfig
from ..layers.content import DigestMismatch, digest_of
from ..layers.store import chain_id
from . import reference
from .store import ImageStore

log = logging.getLogger("dockyard.images")


def _repository(repo: str) -> reference.Reference:
    r = reference.parse_reference(repo, default_tag=None)
    if r.tag or r.digest:
        raise InvalidParameter(f"{repo!r}: a repository name without tag or digest is expected")
    return r


def _check_layers(manifest: Any, cfg: ImageConfig, layers: list[dict]) -> None:
    diff_ids = cfg.diff_ids
    if len(layers) != len(manifest.layers):
        raise InvalidParameter(f"the manifest has {len(manifest.layers)} layers but {len(layers)} were given")
    for i, (given, desc) in enumerate(zip(layers, manifest.layers)):
        if given.get("blob_digest") != desc.digest:
            raise DigestMismatch(f"layer {i}: blob {given.get('blob_digest')} is not the manifest's {desc.digest}")
        if given.get("media_type", desc.media_type) != desc.media_type:
            raise InvalidParameter(f"layer {i}: media type {given.get('media_type')!r} is not the manifest's "
                                   f"{desc.media_type!r}")
        if given.get("size") is not None and given["size"] != desc.size:
            raise DigestMismatch(f"layer {i} ({desc.digest}): size {given['size']} is not the manifest's {desc.size}")
        if given.get("diff_id") != diff_ids[i]:
            raise DigestMismatch(f"layer {i}: diff ID {given.get('diff_id')} is not the config's {diff_ids[i]}")


def add_from_registry(images: ImageStore, repo: str, tag: str | None, manifest_bytes: bytes,
                      manifest_media_type: str | None, config_bytes: bytes, layers: list[dict],
                      index_bytes: bytes | None = None, index_media_type: str | None = None) -> str:
    r = _repository(repo)
    name = r.familiar_name
    tagged = reference.parse_reference(f"{name}:{tag}").familiar() if tag else None
    manifest = imagespec.parse_manifest(manifest_bytes, manifest_media_type)
    if digest_of(config_bytes) != manifest.config.digest or len(config_bytes) != manifest.config.size:
        raise DigestMismatch(f"config blob does not match the manifest: expected {manifest.config.digest} "
                             f"({manifest.config.size} bytes), got {digest_of(config_bytes)} ({len(config_bytes)} bytes)")
    imagespec.check_config(config_bytes, len(manifest.layers))  # rootfs: the layers, well-formed
    cfg = ImageConfig.parse(config_bytes)  # the rest of the shape, before anything is stored
    layers = [dict(x) for x in layers]
    _check_layers(manifest, cfg, layers)
    index_digest = None
    if index_bytes is not None:
        index = imagespec.parse_index(index_bytes, index_media_type)
        index_media_type, index_digest = index.media_type, index.digest
        if manifest.digest not in [e.digest for e in index.manifests]:
            raise InvalidParameter(f"manifest {manifest.digest} is not in index {index_digest}")
    image_id = manifest.config.digest
    with images.lock, no_space("pull", images.data_root):
        new_chains, new_blobs = [], []
        try:
            parent = None
            for layer in layers:
                chain = chain_id(parent, layer["diff_id"])
                if images.layers.get(chain) is None:
                    if layer.get("staged") is not None:
                        _commit_staged(images.layers, layer, parent)
                    elif layer.get("tar_path"):
                        images.layers.register(layer["tar_path"], layer["diff_id"], parent)
                    else:
                        raise InvalidParameter(f"layer {layer['diff_id']} is not registered and no tar was given")
                    new_chains.append(chain)
                parent = chain
            for data in (config_bytes, manifest_bytes, index_bytes):
                if data is not None and not images.content.has(digest_of(data)):
                    new_blobs.append(images.content.put(data))
            with images.store.tx() as db:
                images.add_raw(config_bytes, parent, db=db)
                images.record_repo_digest(db, name, manifest.digest, image_id, manifest.media_type, "manifest",
                                          shown=index_digest is None)
                if index_digest:
                    assert index_media_type is not None  # the index's, parsed above
                    images.record_repo_digest(db, name, index_digest, image_id, index_media_type, "index", shown=True)
                for layer in layers:
                    images.record_layer_blob(db, layer["diff_id"], layer["blob_digest"], layer["media_type"],
                                             layer["size"], name)
                if tagged:
                    images.write_tag(db, image_id, tagged)
        except BaseException:
            undo(images, new_chains, new_blobs)
            raise
        finally:
            for layer in reversed(layers):  # those not recorded: already there, or a failure
                if layer.get("staged") is not None:
                    images.layers.discard(layer["staged"])
    if tagged:
        images.emit("image", "tag", image_id, {"name": tagged})
    images.emit("image", "pull", image_id, {"name": tagged or f"{name}@{index_digest or manifest.digest}"})
    return image_id


def _commit_staged(layers: Any, layer: dict, parent: str | None) -> None:
    """Record ``layer["staged"]`` on ``parent``; staged on another driver layer
    than ``parent``'s (a concurrent pull recorded that parent first, and ours was
    discarded), extract it again from ``open_tar()`` onto the right one."""
    staged = layer["staged"]
    want = layers.driver_id(parent) if parent else None
    if staged.parent_driver != want:
        layers.discard(staged)
        if layer.get("open_tar") is None:
            raise StorageError(f"layer {layer['diff_id']} was staged on another parent layer")
        with layer["open_tar"]() as stream:
            layer["staged"] = staged = layers.stage(stream, want)
        layers.complete_record(staged, layer["open_tar"])
    layers.commit(staged, layer["diff_id"], parent)


def undo(images: ImageStore, chains: list[str], blobs: list[str]) -> None:
    """Remove what a failed pull or load added.  Best effort: the caller raises
    the failure itself, and a layer that cannot go now stays staged or recorded
    for the next start or ``rmi``."""
    for chain in reversed(chains):
        try:
            images.layers.release(chain)
        except Exception:
            log.exception("undoing layer %s failed", chain)
    for digest in blobs:
        recorded = images.store.one("SELECT 1 FROM images WHERE id=? UNION SELECT 1 FROM repo_digests WHERE digest=?",
                                    digest, digest)
        if recorded is None:
            images.content.delete(digest)


class LayerTar:
    """A layer's original tar, rebuilt from its tar-split record and its files
    (mounted while open); checked against the diff id at the end."""

    def __init__(self, layers: Any, chain: str, diff_id: str) -> None:
        from ...driverkit.tarsplit import TarSplitReader

        record = layers.tar_split(chain)
        if record is None:
            raise StorageError(f"layer {diff_id} has no tar-split record: its original tar cannot be rebuilt")
        self._layers, self._driver_id, self.diff_id = layers, layers.driver_id(chain), diff_id
        root = layers.mount(self._driver_id)
        try:
            self._reader = TarSplitReader(record, root)
        except BaseException:
            layers.unmount(self._driver_id)
            raise
        self._done = self._closed = False

    def read(self, n: int = -1) -> bytes:
        data = self._reader.read(n)
        if (not data or n is None or n < 0) and not self._done:
            self._done = True
            if self._reader.diff_id != self.diff_id:
                raise StorageError(f"layer {self.diff_id} is corrupt: its rebuilt tar hashes to {self._reader.diff_id}")
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._reader.close()
            self._layers.unmount(self._driver_id)

    def __enter__(self) -> LayerTar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def push_plan(images: ImageStore, ref: str) -> dict:
    image_id = images.resolve(ref)
    top = images.get(image_id)["top_layer"]
    plan_layers = []
    for row in images.layers.chain(top) if top else []:
        plan_layers.append({
            "diff_id": row["diff_id"], "size": row["size"], "known_blobs": images.known_blobs(row["diff_id"]),
            "open_tar": (lambda c=row["chain_id"], d=row["diff_id"]: LayerTar(images.layers, c, d)),
        })
    manifests = {}
    for m in images.manifests(image_id):
        if m["kind"] == "manifest" and images.content.has(m["digest"]):
            if m["repo"] not in manifests or m["shown"]:
                manifests[m["repo"]] = (m["digest"], m["media_type"], images.content.read(m["digest"]))
    return {"image_id": image_id, "config": (image_id, images.config_bytes(image_id)), "layers": plan_layers,
            "manifests": manifests}


def record_pushed(images: ImageStore, repo: str, tag: str | None, manifest_digest: str, manifest_bytes: bytes,
                  media_type: str | None, blobs: list[dict] | None) -> None:
    name = _repository(repo).familiar_name
    if digest_of(manifest_bytes) != manifest_digest:
        raise DigestMismatch(f"manifest digest mismatch: expected {manifest_digest}, got {digest_of(manifest_bytes)}")
    manifest = imagespec.parse_manifest(manifest_bytes, media_type)
    image_id = manifest.config.digest
    try:
        diff_ids = images.config(image_id).diff_ids
    except ImageNotFound:
        raise ImageNotFound(f"No such image: {image_id} (the manifest's config)") from None
    if len(diff_ids) != len(manifest.layers):
        raise InvalidParameter(f"the manifest has {len(manifest.layers)} layers, image {image_id[7:19]} has "
                               f"{len(diff_ids)}")
    with images.lock:
        images.content.put(manifest_bytes, manifest_digest)
        with images.store.tx() as db:
            images.record_repo_digest(db, name, manifest_digest, image_id, manifest.media_type, "manifest", shown=True)
            for diff_id, desc in zip(diff_ids, manifest.layers):
                images.record_layer_blob(db, diff_id, desc.digest, desc.media_type, desc.size, name)
            for blob in blobs or ():
                if blob.get("diff_id"):
                    images.record_layer_blob(db, blob["diff_id"], blob["digest"], blob["media_type"],
                                             blob["size"], name)
    images.emit("image", "push", image_id, {"name": f"{name}:{tag}" if tag else f"{name}@{manifest_digest}"})
