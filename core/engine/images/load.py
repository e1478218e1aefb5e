"""``docker load``: read a Docker archive (``manifest.json``, as ``docker save``,
``podman save`` and ``skopeo copy docker-archive:`` write it) or an OCI image
layout in a tar (``oci-layout``, ``index.json``, ``blobs/``, as ``skopeo copy
oci-archive:`` and ``podman save --format oci-archive`` write it).  An archive
that is both (ours, Docker 25's) is read as a Docker archive.

Everything is checked before anything is kept: the tar's structure (a truncated
or corrupt tar is refused as such), every named member (symlinks are followed
inside the archive only), config digests (an OCI descriptor's; a Docker
archive's when the file is named by its digest), manifest and index media
types, each OCI blob's digest and size, each layer's diff id (as the layer is
registered).  The whole archive is one all-or-nothing step: when anything is
wrong, the layers and blobs added so far are removed again and nothing is
tagged.  Layers may be plain, gzip, bzip2, xz (and zstd, if the ``zstandard``
module is installed) tars.
"""

import bz2
import gzip
import hashlib
import json
import lzma
import os
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass, field

from ... import imagespec
from ...errors import InvalidParameter, no_space
from ...model.image import ImageConfig
from ..layers.content import DigestMismatch, digest_of
from ..layers.store import chain_id
from . import reference
from .distribution import undo
from .importer import copy_hashing
from .store import ImageStore

_HEX64 = re.compile(r"^([0-9a-f]{64})(?:\.json)?$")
MAX_METADATA = 64 << 20


def _corrupt(exc):
    return InvalidParameter(f"archive is truncated or corrupt: {exc}")


class Archive:
    """Random access to the members of a tar archive by name."""

    def __init__(self, path):
        try:
            self.tar = tarfile.open(path, "r:*")
            members = self.tar.getmembers()
        except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            raise _corrupt(exc) from None
        self.members = {}
        for m in members:
            self.members[self._clean(m.name)] = m

    @staticmethod
    def _clean(name):
        return posixpath.normpath("/" + name).lstrip("/")

    def has(self, name):
        return self._clean(name) in self.members

    def member(self, name, what, depth=0):
        """The regular-file member ``name`` (links followed inside the archive)."""
        clean = posixpath.normpath(name)
        if name.startswith("/") or clean.startswith("../") or clean == "..":
            raise InvalidParameter(f"{what}: {name!r} points outside the archive")
        m = self.members.get(self._clean(clean))
        if m is None:
            raise InvalidParameter(f"archive has no {name!r} ({what})")
        if depth > 16:
            raise InvalidParameter(f"{what}: too many levels of symbolic links at {name!r}")
        if m.issym():
            target = m.linkname if m.linkname.startswith("/") else posixpath.join(posixpath.dirname(clean), m.linkname)
            return self.member(target, what, depth + 1)
        if m.islnk():
            return self.member(m.linkname, what, depth + 1)
        if not m.isreg():
            raise InvalidParameter(f"{what}: {name!r} is not a regular file in the archive")
        return m

    def open(self, name, what):
        return self.tar.extractfile(self.member(name, what))

    def read(self, name, what, limit=MAX_METADATA):
        m = self.member(name, what)
        if m.size > limit:
            raise InvalidParameter(f"{what}: {name!r} is {m.size} bytes, more than a metadata file may be")
        try:
            return self.tar.extractfile(m).read()
        except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            raise _corrupt(exc) from None

    def json(self, name, what):
        try:
            return json.loads(self.read(name, what))
        except ValueError as exc:
            raise InvalidParameter(f"{what} ({name}) is not JSON: {exc}") from None

    def close(self):
        self.tar.close()


@dataclass
class Layer:
    member: str
    diff_id: str
    compression: str | None = "auto"  # auto: tell by the magic bytes
    blob_digest: str | None = None    # an OCI blob's digest and size, checked while read
    blob_size: int | None = None


@dataclass
class Image:
    config: bytes
    layers: list
    tags: list = field(default_factory=list)

    @property
    def id(self):
        return digest_of(self.config)


def _tags(names, what):
    out = []
    for name in names or ():
        try:
            ref = reference.parse_reference(name)
        except InvalidParameter as exc:
            raise InvalidParameter(f"{what}: {exc}") from None
        if ref.digest:
            continue
        out.append(ref.familiar())
    return out


def _docker_images(arc):
    items = arc.json("manifest.json", "manifest.json")
    if not isinstance(items, list):
        raise InvalidParameter("manifest.json must be a list of images")
    out = []
    for n, item in enumerate(items):
        what = f"manifest.json entry {n}"
        if not isinstance(item, dict) or not isinstance(item.get("Config"), str) or \
                not isinstance(item.get("Layers"), list) or not all(isinstance(x, str) for x in item["Layers"]):
            raise InvalidParameter(f"{what}: needs Config (a path) and Layers (a list of paths)")
        config = arc.read(item["Config"], f"{what} Config")
        m = _HEX64.match(posixpath.basename(item["Config"]))
        if m and digest_of(config) != "sha256:" + m.group(1):
            raise DigestMismatch(f"{what}: config {item['Config']!r} hashes to {digest_of(config)}, not the "
                                 "digest it is named by")
        imagespec.check_config(config, len(item["Layers"]), f"{what} config")
        layers = [Layer(path, diff_id) for path, diff_id in zip(item["Layers"], ImageConfig.parse(config).diff_ids)]
        for path in item["Layers"]:
            arc.member(path, f"{what} layer")
        out.append(Image(config, layers, _tags(item.get("RepoTags"), what)))
    return out


def _blob(arc, desc, what, limit=MAX_METADATA):
    data = arc.read(f"blobs/{desc.digest.replace(':', '/')}", what, limit)
    if digest_of(data) != desc.digest or len(data) != desc.size:
        raise DigestMismatch(f"{what}: blob {desc.digest} does not match its descriptor (it hashes to "
                             f"{digest_of(data)}, {len(data)} bytes; {desc.size} announced)")
    return data


def _oci_names(desc):
    full = desc.annotations.get(imagespec.ANNOTATION_IMAGE_NAME)
    ref_name = desc.annotations.get(imagespec.ANNOTATION_REF_NAME, "")
    if not full and ("/" in ref_name or ":" in ref_name):  # podman: the ref name is a whole reference
        full = ref_name
    return [full] if full else []


def _oci_images(arc):
    layout = arc.json("oci-layout", "oci-layout")
    if not isinstance(layout, dict) or layout.get("imageLayoutVersion") != "1.0.0":
        raise InvalidParameter(f"oci-layout: imageLayoutVersion {layout.get('imageLayoutVersion')!r} "
                               "is not 1.0.0" if isinstance(layout, dict) else "oci-layout is not a JSON object")
    entries = imagespec.parse_index(arc.read("index.json", "index.json")).manifests
    out = []
    for n, entry in enumerate(entries):
        what = f"index.json entry {n}"
        desc = entry
        if entry.media_type in imagespec.INDEX_TYPES:
            desc = imagespec.parse_index(_blob(arc, entry, what), entry.media_type).select()
        elif entry.media_type not in imagespec.MANIFEST_TYPES:
            raise InvalidParameter(f"{what}: unknown media type {entry.media_type!r}")
        manifest = imagespec.parse_manifest(_blob(arc, desc, f"{what} manifest"), desc.media_type)
        config = _blob(arc, manifest.config, f"{what} config")
        imagespec.check_config(config, len(manifest.layers), f"{what} config")
        diff_ids = ImageConfig.parse(config).diff_ids
        layers = [Layer(f"blobs/{d.digest.replace(':', '/')}", diff_id, imagespec.layer_compression(d.media_type),
                        d.digest, d.size) for d, diff_id in zip(manifest.layers, diff_ids)]
        for layer in layers:
            arc.member(layer.member, f"{what} layer")
        image = Image(config, layers, _tags(_oci_names(entry), what))
        same = next((i for i in out if i.id == image.id), None)
        if same:
            same.tags += [t for t in image.tags if t not in same.tags]
        else:
            out.append(image)
    return out


def read_plan(arc):
    """The images of the archive, checked as far as it can be without reading
    the layers: ``[Image]``."""
    if arc.has("manifest.json"):
        return _docker_images(arc)
    if arc.has("index.json") and arc.has("oci-layout"):
        return _oci_images(arc)
    if arc.has("repositories"):
        raise InvalidParameter("this is a pre-1.10 (v1) docker save archive without manifest.json; "
                               "it is not supported")
    raise InvalidParameter("not an image archive: it has neither manifest.json (docker save) nor "
                           "oci-layout and index.json (an OCI image layout)")


class _Hashing:
    def __init__(self, fh):
        self.fh, self.hash, self.size = fh, hashlib.sha256(), 0

    def read(self, n=-1):
        data = self.fh.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def readable(self):
        return True


def _decompressor(raw, compression, what):
    if compression == "auto":
        head = raw.fh.peek(6)[:6] if hasattr(raw.fh, "peek") else b""
        compression = {b"\x1f\x8b": "gzip", b"BZ": "bzip2", b"\xfd7": "xz", b"\x28\xb5": "zstd"}.get(head[:2])
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "bzip2":
        return bz2.BZ2File(raw)
    if compression == "xz":
        return lzma.LZMAFile(raw)
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            raise InvalidParameter(f"{what} is zstd-compressed, and this daemon has no zstd support "
                                   "(pip install zstandard)") from None
        return zstandard.ZstdDecompressor().stream_reader(raw)
    return raw


def _extract_layer(images, arc, layer, out_path):
    """Decompress ``layer`` into ``out_path``; check blob digest and diff id."""
    import io

    what = f"layer {layer.diff_id}"
    try:
        raw = _Hashing(io.BufferedReader(arc.open(layer.member, what), 1 << 20))
        with open(out_path, "wb") as out:
            src = _decompressor(raw, layer.compression, what)
            diff_id = copy_hashing(src, out)
            while raw.read(1 << 20):  # the rest of the blob, for its digest
                pass
    except (tarfile.TarError, EOFError) as exc:
        raise _corrupt(exc) from None
    if layer.blob_digest and ("sha256:" + raw.hash.hexdigest() != layer.blob_digest or raw.size != layer.blob_size):
        raise DigestMismatch(f"{what}: blob {layer.blob_digest} does not match its descriptor (it hashes to "
                             f"sha256:{raw.hash.hexdigest()}, {raw.size} bytes)")
    if diff_id != layer.diff_id:
        raise DigestMismatch(f"{what}: the layer's tar hashes to {diff_id}, not the diff ID the config names")


def load(images: ImageStore, path: str) -> list[str]:
    """Load the archive at ``path``; returns Docker's ``Loaded image`` lines.
    All or nothing (see the module docstring); a full disk is :class:`NoSpace`,
    not a corrupt archive."""
    arc = Archive(path)
    try:
        plan = read_plan(arc)
        if not plan:
            raise InvalidParameter("the archive holds no image")
        with images.lock, no_space("load", images.data_root):
            return _apply(images, arc, plan)
    finally:
        arc.close()


def _apply(images, arc, plan):
    new_chains, new_blobs, tops = [], [], []
    try:
        for image in plan:
            parent = None
            for layer in image.layers:
                chain = chain_id(parent, layer.diff_id)
                if images.layers.get(chain) is None:
                    fd, tmp = images.spool_path(".layer")
                    os.close(fd)
                    try:
                        _extract_layer(images, arc, layer, tmp)
                        images.layers.register(tmp, layer.diff_id, parent)
                    finally:
                        os.unlink(tmp)
                    new_chains.append(chain)
                parent = chain
            tops.append(parent)
            if not images.content.has(image.id):
                new_blobs.append(images.content.put(image.config))
        lines, moved = [], []
        with images.store.tx() as db:
            for image, top in zip(plan, tops):
                images.add_raw(image.config, top, db=db)
                for tag in image.tags:
                    old = db.execute("SELECT image_id FROM tags WHERE ref=?", (tag,)).fetchone()
                    if old and old["image_id"] != image.id:
                        moved.append((tag, old["image_id"]))
                    images.write_tag(db, image.id, tag)
    except BaseException:
        undo(images, new_chains, new_blobs)
        raise
    for tag, old in moved:
        lines.append(f"The image {tag} already exists, renaming the old one with ID {old} to empty string")
    for image in plan:
        for tag in image.tags:
            images.emit("image", "tag", image.id, {"name": tag})
            lines.append(f"Loaded image: {tag}")
        if not image.tags:
            lines.append(f"Loaded image ID: {image.id}")
        images.emit("image", "load", image.id, {"name": image.id})
    return lines
