"""``docker save``: images as one tar that is both a Docker archive and an OCI
image layout, so Docker, Podman, skopeo and containerd all read it.

Layout (``docker save`` of Docker 20.10, plus the OCI layout Docker 25 added)::

    oci-layout                        {"imageLayoutVersion": "1.0.0"}
    index.json                        OCI index: one manifest per image and tag,
                                      named by the io.containerd.image.name and
                                      org.opencontainers.image.ref.name annotations
    blobs/sha256/<hex>                configs, OCI manifests, layers (uncompressed
                                      tars, byte for byte: the hex is the diff id)
    <hex>.json                        -> blobs/sha256/<hex>   the image config
    <v1 id>/VERSION, <v1 id>/json     the legacy per-layer records
    <v1 id>/layer.tar                 -> ../blobs/sha256/<diff id hex>
    manifest.json                     [{"Config", "RepoTags", "Layers"}], the paths
                                      those of the blobs (as Docker 25 writes them)
    repositories                      {"busybox": {"latest": "<top v1 id>"}}

Symlinks stand in for repeated content, as Docker 20.10 itself writes a layer
shared by two images; ``manifest.json`` names the regular files, because
skopeo (and so podman) take a layer's size from the tar header of the path it
names, which for a symlink is 0.  The same images give the same bytes (entry
times are the image's creation time), so the manifests' digests are stable.  Layers are rebuilt
from their tar-split records and checked against their diff ids on the way
(:class:`~.distribution.LayerTar`); a layer that does not check out
stops the save with a :class:`~dockyard.errors.StorageError`.

Loading is :mod:`.load`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from typing import Any

from ... import imagespec
from ...errors import InvalidParameter
from ...model.image import ImageConfig
from ..filters import unix_time
from ..layers.content import digest_of
from . import reference
from .distribution import LayerTar
from .store import ImageStore

CHUNK = 1 << 20


def select(images: ImageStore, refs: list[str]) -> list[tuple[str, list[str]]]:
    """``[(image id, [tags])]`` for the names of a save, as Docker picks them: a
    bare repository name saves all its tags, ``name:tag`` that tag, an id or a
    digest reference the image without names."""
    chosen = {}
    for ref in refs:
        bare = False
        try:
            bare = reference.is_name_only(ref)
        except InvalidParameter:
            pass
        if bare:
            name = reference.repository(ref)
            rows = [r for r in images.store.query("SELECT ref, image_id FROM tags ORDER BY ref")
                    if reference.split_tagged(r["ref"])[0] == name]
            if rows:
                for r in rows:
                    chosen.setdefault(r["image_id"], [])
                    if r["ref"] not in chosen[r["image_id"]]:
                        chosen[r["image_id"]].append(r["ref"])
                continue
        image_id = images.resolve(ref)
        tags = chosen.setdefault(image_id, [])
        named = None
        try:
            r = reference.parse_reference(ref)
            named = r.familiar() if not r.digest and r.familiar() in images.tags(image_id) else None
        except InvalidParameter:
            pass
        if named and named not in tags:
            tags.append(named)
    return list(chosen.items())


class _Writer:
    def __init__(self, fileobj: Any) -> None:
        self.tar = tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT)
        self.names: set[str] = set()
        self.size_of: dict[str, int] = {}

    def _info(self, name, mtime, kind=tarfile.REGTYPE, mode=0o644):
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = kind, mode, mtime, 0, 0, "", ""
        return ti

    def dir(self, name, mtime):
        if name not in self.names:
            self.names.add(name)
            self.tar.addfile(self._info(name, mtime, tarfile.DIRTYPE, 0o755))

    def bytes(self, name, data, mtime):
        if name not in self.names:
            self.names.add(name)
            ti = self._info(name, mtime)
            ti.size = len(data)
            self.tar.addfile(ti, io.BytesIO(data))

    def file(self, name, fh, size, mtime):
        if name not in self.names:
            self.names.add(name)
            ti = self._info(name, mtime)
            ti.size = size
            self.tar.addfile(ti, fh)

    def symlink(self, name, target, mtime):
        if name not in self.names:
            self.names.add(name)
            ti = self._info(name, mtime, tarfile.SYMTYPE, 0o777)
            ti.linkname = target
            self.tar.addfile(ti)

    def close(self):
        self.tar.close()


def _blob(digest):
    return f"blobs/sha256/{digest[7:]}"


def _write_layer(images, w, row, mtime):
    """Rebuild the layer into a temporary file (its size goes in the header
    first) and add it as its blob; returns the size."""
    name = _blob(row["diff_id"])
    if name in w.names:
        return w.size_of[name]
    fd, tmp = images.spool_path(".layer")
    try:
        with os.fdopen(fd, "wb") as out, LayerTar(images.layers, row["chain_id"], row["diff_id"]) as src:
            while chunk := src.read(CHUNK):
                out.write(chunk)
        size = os.path.getsize(tmp)
        with open(tmp, "rb") as fh:
            w.file(name, fh, size, mtime)
    finally:
        os.unlink(tmp)
    w.size_of[name] = size
    return size


def save(images: ImageStore, refs: list[str], fileobj: Any) -> list[str]:
    """Write the images ``refs`` name to binary file ``fileobj``; returns the ids."""
    if not refs:
        raise InvalidParameter("no image named to save")
    chosen = select(images, refs)
    w = _Writer(fileobj)
    manifest_json, repositories, index = [], {}, []
    w.bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0)
    w.dir("blobs", 0)
    w.dir("blobs/sha256", 0)
    for image_id, tags in chosen:
        config_bytes = images.config_bytes(image_id)
        cfg = ImageConfig.parse(config_bytes)
        mtime = max(0, unix_time(cfg.created or ""))
        top = images.get(image_id)["top_layer"]
        rows = images.layers.chain(top) if top else []
        w.bytes(_blob(image_id), config_bytes, mtime)
        layer_descs = [(imagespec.OCI_LAYER_TAR, row["diff_id"], _write_layer(images, w, row, mtime))
                       for row in rows]
        manifest = imagespec.build_manifest(config_bytes, layer_descs, imagespec.OCI_MANIFEST,
                                            imagespec.OCI_CONFIG)
        w.bytes(_blob(digest_of(manifest)), manifest, mtime)
        v1 = v1_ids(cfg, [row["chain_id"] for row in rows])
        for i, (row, v1_id) in enumerate(zip(rows, v1)):
            w.dir(v1_id, mtime)
            w.bytes(f"{v1_id}/VERSION", b"1.0", mtime)
            body = legacy_json(cfg, i, len(rows), v1_id, v1[i - 1] if i else "")
            w.bytes(f"{v1_id}/json", json.dumps(body, separators=(",", ":")).encode(), mtime)
            w.symlink(f"{v1_id}/layer.tar", f"../{_blob(row['diff_id'])}", mtime)
        w.symlink(f"{image_id[7:]}.json", _blob(image_id), mtime)
        manifest_json.append({"Config": _blob(image_id), "RepoTags": tags or None,
                              "Layers": [_blob(row["diff_id"]) for row in rows]})
        plat = {"architecture": cfg.architecture or imagespec.Platform.here().architecture,
                "os": cfg.os or "linux"}
        if cfg.variant:
            plat["variant"] = cfg.variant
        named: list[str | None] = list(tags) if tags else [None]
        for tag in named:
            annotations = {}
            if tag:
                r = reference.parse_reference(tag)
                annotations = {imagespec.ANNOTATION_IMAGE_NAME: str(r),
                               imagespec.ANNOTATION_REF_NAME: r.tag}
                if v1:
                    repositories.setdefault(r.familiar_name, {})[r.tag] = v1[-1]
            index.append(imagespec.Descriptor(imagespec.OCI_MANIFEST, digest_of(manifest), len(manifest),
                                              plat, annotations))
    w.bytes("index.json", imagespec.build_index(index), 0)
    w.bytes("manifest.json", json.dumps(manifest_json, separators=(",", ":")).encode(), 0)
    if repositories:
        w.bytes("repositories", json.dumps(repositories, separators=(",", ":"), sort_keys=True).encode(), 0)
    w.close()
    for image_id, _tags in chosen:
        images.emit("image", "save", image_id, {"name": image_id})
    return [image_id for image_id, _ in chosen]


def v1_ids(config: ImageConfig, chains: list[str]) -> list[str]:
    """Legacy (``docker save``) layer ids: one per layer, each the sha256 of the
    layer's v1 JSON with its chain ID and parent, as Docker's ``v1.CreateID``."""
    ids, parent = [], ""
    for i, chain in enumerate(chains):
        body = legacy_json(config, i, len(chains), "", parent)
        body.pop("id", None)
        body["layer_id"] = chain
        if parent:
            body["parent"] = "sha256:" + parent
        parent = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        ids.append(parent)
    return ids


def legacy_json(config: ImageConfig, index: int, count: int, v1_id: str, parent: str) -> dict[str, Any]:
    """The ``<id>/json`` of layer ``index`` in a ``docker save`` archive: the
    image's v1 fields for the top layer (as the config holds them), a bare record
    for the others."""
    if index == count - 1:
        doc = config.to_json()
        body = {k: doc[k] for k in ("comment", "created", "container", "container_config",
                                       "docker_version", "author", "config", "architecture",
                                       "variant", "os") if doc.get(k) not in (None, "")}
    else:
        body = {"created": "1970-01-01T00:00:00Z", "container_config": {"Cmd": None},
                "os": config.os if config.has("os") else "linux"}
    out = {"id": v1_id} if v1_id else {}
    if parent:
        out["parent"] = parent
    out.update(body)
    return out
