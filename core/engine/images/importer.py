"""``docker import``: a one-layer image made of a rootfs tarball (plain, gzip,
bzip2 or xz), and the reading of compressed archives that load and build share."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import os
import zlib
from typing import IO, Any

from ...errors import InvalidParameter, no_space
from ...model.image import ContainerConfig, History, ImageConfig, RootFS
from ..layers.content import digest_of
from . import changes as changes_mod
from . import reference
from .store import ImageStore, goarch, now_iso

_MAGIC: list[tuple[bytes, Any]] = [(b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open)]


def open_uncompressed(path: str) -> IO[bytes]:
    """The file at ``path`` decompressed (gzip, bzip2, xz) or as it is."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        raise InvalidParameter("zstd-compressed archives are not supported yet; decompress first")
    for magic, opener in _MAGIC:
        if head.startswith(magic):
            return opener(path, "rb")
    return open(path, "rb")


def copy_hashing(src: IO[bytes], out: IO[bytes]) -> str:
    """Copy ``src`` to ``out``; returns ``sha256:...`` of the bytes copied.
    A decompression failure is a clear "corrupt or truncated" error; a failed
    write (a full disk) is not the archive's fault and passes unchanged."""
    digest = hashlib.sha256()
    while True:
        try:
            chunk = src.read(1 << 20)
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            raise InvalidParameter(f"archive is corrupt or truncated: {exc}") from None
        if not chunk:
            return "sha256:" + digest.hexdigest()
        digest.update(chunk)
        out.write(chunk)


def import_tar(images: ImageStore, src_path: str, ref: str | None = None, changes: list | None = None,
               message: str = "") -> str:
    """Make a one-layer image of the tarball at ``src_path``, tagged ``ref`` (if
    given) with the ``--change`` lines applied; returns its id."""
    ref_n = reference.normalize(ref) if ref else None
    if ref_n and "@" in ref_n:
        raise InvalidParameter(f"refusing to import as a digest reference: {ref}")
    config = changes_mod.apply(ContainerConfig(), changes)
    with no_space("import", images.data_root):
        image_id = _import(images, src_path, ref_n, config, message)
    images.emit("image", "import", image_id, {"name": ref_n or image_id})
    return image_id


def _import(images: ImageStore, src_path: str, ref_n: str | None, config: ContainerConfig, message: str) -> str:
    fd, plain = images.spool_path()
    try:
        with os.fdopen(fd, "wb") as out, open_uncompressed(src_path) as src:
            diff_id = copy_hashing(src, out)
        created = now_iso()
        comment = message or "Imported from -"
        image = ImageConfig(architecture=goarch(), os="linux", created=created, comment=comment, config=config,
                            rootfs=RootFS(type="layers", diff_ids=[diff_id]),
                            history=[History(created=created, comment=comment)])
        raw = json.dumps(image.to_json(), separators=(",", ":"), sort_keys=True).encode()
        with images.lock:
            top = images.layers.register(plain, diff_id, None)
            known = images.content.has(digest_of(raw))
            try:
                with images.store.tx() as db:  # the image and its tag, or neither
                    image_id = images.add_raw(raw, top, db=db)
                    if ref_n:
                        images.write_tag(db, image_id, ref_n)
            except BaseException:
                images.layers.release(top)
                if not known:
                    images.content.delete(digest_of(raw))
                raise
    finally:
        os.unlink(plain)
    if ref_n:
        images.emit("image", "tag", image_id, {"name": ref_n})
    return image_id
