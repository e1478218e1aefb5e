"""The image store: image configs addressed by digest, tags, import and removal.

An image is its config JSON (OCI/Docker image config); its id is the sha256 of
those exact bytes.  Its filesystem is the layer chain named by
``rootfs.diff_ids``, held by the :class:`~dockyard.engine.layers.LayerStore`.
"""

import bz2
import gzip
import hashlib
import json
import lzma
import os
import platform
import tempfile
from datetime import datetime, timezone

from ..errors import Conflict, ImageNotFound, InvalidParameter
from . import changes as changes_mod
from . import reference

_MAGIC = [(b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open)]


def now_iso():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def goarch():
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _open_uncompressed(path):
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        raise InvalidParameter("zstd-compressed archives are not supported yet; decompress first")
    for magic, opener in _MAGIC:
        if head.startswith(magic):
            return opener(path, "rb")
    return open(path, "rb")


class ImageStore:
    def __init__(self, store, layers, tmpdir, emit=None):
        self.store = store
        self.layers = layers
        self.tmpdir = tmpdir
        self.emit = emit or (lambda *a: None)

    # lookup -------------------------------------------------------------
    def resolve(self, ref):
        """Return the image id for a reference, a full id or an id prefix."""
        if not ref:
            raise InvalidParameter("no image named")
        hexpart = ref[7:] if ref.startswith("sha256:") else ref
        if all(c in "0123456789abcdef" for c in hexpart) and len(hexpart) >= 4:
            rows = self.store.query("SELECT id FROM images WHERE id LIKE ?", f"sha256:{hexpart}%")
            if len(rows) == 1:
                return rows[0]["id"]
        try:
            ref_n = reference.normalize(ref)
        except InvalidParameter:
            raise ImageNotFound(f"No such image: {ref}") from None
        row = self.store.one("SELECT image_id FROM tags WHERE ref=?", ref_n)
        if row is None:
            raise ImageNotFound(f"No such image: {ref_n}")
        return row["image_id"]

    def get(self, image_id):
        row = self.store.one("SELECT * FROM images WHERE id=?", image_id)
        if row is None:
            raise ImageNotFound(f"No such image: {image_id}")
        return row

    def config(self, image_id):
        return json.loads(self.get(image_id)["config"])

    def tags(self, image_id):
        return [r["ref"] for r in self.store.query("SELECT ref FROM tags WHERE image_id=? ORDER BY ref", image_id)]

    def all(self):
        return self.store.query("SELECT * FROM images ORDER BY created DESC")

    # creation -----------------------------------------------------------
    def import_tar(self, src_path, ref=None, changes=None, message=""):
        """Make a one-layer image from a rootfs tarball (plain, gzip, bzip2 or xz)."""
        ref_n = reference.normalize(ref) if ref else None
        config = changes_mod.apply({}, changes)
        fd, plain = tempfile.mkstemp(dir=self.tmpdir, suffix=".tar")
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, _open_uncompressed(src_path) as src:
                try:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                except (OSError, EOFError, lzma.LZMAError) as exc:
                    raise InvalidParameter(f"archive is corrupt or truncated: {exc}") from None
            diff_id = "sha256:" + digest.hexdigest()
            top = self.layers.register(plain, diff_id, None)
        finally:
            os.unlink(plain)
        created = now_iso()
        image = {
            "architecture": goarch(),
            "os": "linux",
            "created": created,
            "comment": message or "Imported from -",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "dockyard import", "comment": message or "Imported from -"}],
        }
        image_id = self.add(image, top)
        if ref_n:
            self.tag(image_id, ref_n)
        self.emit("image", "import", image_id, {"name": ref_n or image_id})
        return image_id

    def add(self, image_config, top_layer):
        """Store an image config (dict) whose layers exist; return its id."""
        raw = json.dumps(image_config, separators=(",", ":"), sort_keys=True)
        image_id = "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
        with self.store.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO images(id, config, top_layer, created) VALUES (?,?,?,?)",
                (image_id, raw, top_layer, image_config.get("created") or now_iso()),
            )
        return image_id

    def tag(self, image_id, ref):
        ref_n = reference.normalize(ref)
        if "@" in ref_n:
            raise InvalidParameter(f"refusing to tag with a digest reference: {ref}")
        old = self.store.one("SELECT image_id FROM tags WHERE ref=?", ref_n)
        with self.store.tx() as db:
            db.execute("INSERT OR REPLACE INTO tags(ref, image_id) VALUES (?,?)", (ref_n, image_id))
            db.execute("UPDATE images SET last_tag_time=? WHERE id=?", (now_iso(), image_id))
        self.emit("image", "tag", image_id, {"name": ref_n})
        if old and old["image_id"] != image_id:
            self._prune_if_unreferenced(old["image_id"], [])
        return ref_n

    # removal ------------------------------------------------------------
    def delete(self, ref, force=False, users=()):
        """Docker's ``rmi``: untag, then delete the image once nothing names it.

        ``users`` lists ``(container_id, running)`` of containers using the image.
        Returns Docker's list of ``{"Untagged": ...}`` / ``{"Deleted": ...}``.
        """
        image_id = self.resolve(ref)
        tags = self.tags(image_id)
        by_tag = not _looks_like_id(ref, image_id)
        out = []
        if by_tag:
            ref_n = reference.normalize(ref)
            if len(tags) > 1 or force or not users:
                self._untag(ref_n, image_id, out)
                if len(tags) > 1 or users:
                    return out
            else:
                cid = users[0][0]
                raise Conflict(
                    f"conflict: unable to remove repository reference \"{ref}\" (must force) - "
                    f"container {cid[:12]} is using its referenced image {image_id[7:19]}"
                )
        else:
            running = [c for c, r in users if r]
            if running:
                raise Conflict(
                    f"conflict: unable to delete {image_id[7:19]} (cannot be forced) - "
                    f"image is being used by running container {running[0][:12]}"
                )
            if users and not force:
                raise Conflict(
                    f"conflict: unable to delete {image_id[7:19]} (must be forced) - "
                    f"image is being used by stopped container {users[0][0][:12]}"
                )
            if len(tags) > 1 and not force:
                raise Conflict(
                    f"conflict: unable to delete {image_id[7:19]} (must be forced) - "
                    "image is referenced in multiple repositories"
                )
            for t in tags:
                self._untag(t, image_id, out)
        self._delete_image(image_id, out)
        return out

    def _untag(self, ref_n, image_id, out):
        with self.store.tx() as db:
            db.execute("DELETE FROM tags WHERE ref=?", (ref_n,))
        out.append({"Untagged": ref_n})
        self.emit("image", "untag", image_id, {"name": ref_n})

    def _prune_if_unreferenced(self, image_id, out):
        if self.tags(image_id):
            return
        if self.store.one("SELECT 1 FROM containers WHERE image_id=? LIMIT 1", image_id):
            return
        self._delete_image(image_id, out)

    def _delete_image(self, image_id, out):
        top = self.get(image_id)["top_layer"]
        with self.store.tx() as db:
            db.execute("DELETE FROM tags WHERE image_id=?", (image_id,))
            db.execute("DELETE FROM images WHERE id=?", (image_id,))
        self.layers.release(top)
        out.append({"Deleted": image_id})
        self.emit("image", "delete", image_id, {"name": image_id})


def _looks_like_id(ref, image_id):
    hexpart = ref[7:] if ref.startswith("sha256:") else ref
    return len(hexpart) >= 4 and image_id[7:].startswith(hexpart)

