"""The image store: image configs addressed by digest, tags, repository digests,
parents, distribution metadata; lookup, tagging, import and history.

An image is its config JSON (OCI/Docker image config); its id is the sha256 of
those exact bytes, which are kept as a blob in the
:class:`~dockyard.engine.content.ContentStore` (and, for quick queries, in the
``images`` row).  Its filesystem is the layer chain named by
``rootfs.diff_ids``, held by the :class:`~dockyard.engine.layers.LayerStore`.

Names of an image, all in the metadata store:

``tags``          ``busybox:latest`` → image (familiar form, see :mod:`.reference`)
``repo_digests``  (repository, manifest or index digest) → image: what a pull or
                  push recorded, so ``busybox@sha256:...`` resolves and
                  ``RepoDigests`` shows it; the manifest bytes are in the content store
``layer_blobs``   distribution metadata: diff ID → the compressed blobs it is known
                  as (digest, media type, size, repository), so a push can reuse
                  them byte for byte
``image_parents`` image → the image it was committed from (``docker history``)

An image without tags is *dangling* (``<none>:<none>``).  Every change that
touches several rows is one transaction; adding and removing images also hold
:attr:`ImageStore.lock`, so a layer an add is about to use cannot be released
by a concurrent removal.  The rest lives in sibling modules, reached through
this class: :mod:`.imageremove` (rmi, prune), :mod:`.imagedist` (the registry
client's API), :mod:`.archive` (save/load), :mod:`.commit` (commit, export),
:mod:`.imagecheck` (``system check``).
"""

import bz2
import gzip
import hashlib
import json
import lzma
import os
import platform
import re
import tempfile
import threading
import zlib
from datetime import datetime, timezone

from ..errors import ImageNotFound, InvalidParameter, no_space
from . import changes as changes_mod
from . import reference
from .content import ContentStore, digest_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS image_parents (
    image_id TEXT PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    parent TEXT NOT NULL                -- the image it was committed from
);
CREATE TABLE IF NOT EXISTS repo_digests (
    repo TEXT NOT NULL,                 -- familiar repository name: busybox, host:5000/app
    digest TEXT NOT NULL,               -- a manifest's or an index's digest
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    media_type TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- manifest | index
    shown INTEGER NOT NULL,             -- 1: listed in RepoDigests (what the tag named)
    PRIMARY KEY (repo, digest, image_id)
);
CREATE TABLE IF NOT EXISTS layer_blobs (
    diff_id TEXT NOT NULL,              -- the uncompressed layer's digest
    digest TEXT NOT NULL,               -- a compressed blob of it, as a registry has it
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    repo TEXT NOT NULL,                 -- familiar repository name the blob was seen in
    PRIMARY KEY (diff_id, digest, repo)
);
"""

_MAGIC = [(b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open)]
ZERO_TIME = "0001-01-01T00:00:00Z"
_HEX = re.compile(r"^(?:sha256:)?[0-9a-f]{1,64}$")


def now_iso():
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def goarch():
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def timestamp(iso):
    """Seconds since the epoch (with the fraction) of an RFC 3339 time, whatever
    its precision (Go writes up to nanoseconds); 0.0 when it does not parse."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", str(iso).strip())
    if not m:
        return 0.0
    try:
        whole = datetime.fromisoformat(m.group(1) + (m.group(3) or "Z").replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return whole.timestamp() + (float("0" + m.group(2)) if m.group(2) else 0.0)


def unix_time(iso):
    return int(timestamp(iso))


def open_uncompressed(path):
    """The file at ``path`` decompressed (gzip, bzip2, xz) or as it is."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        raise InvalidParameter("zstd-compressed archives are not supported yet; decompress first")
    for magic, opener in _MAGIC:
        if head.startswith(magic):
            return opener(path, "rb")
    return open(path, "rb")


def copy_hashing(src, out):
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


class ImageStore:
    def __init__(self, store, layers, tmpdir, emit=None, content=None):
        self.store = store
        self.layers = layers
        self.tmpdir = tmpdir
        self.data_root = os.path.dirname(os.path.abspath(tmpdir))  # named by a full disk's error
        self.emit = emit or (lambda *a: None)
        self.content = content or ContentStore(os.path.join(os.path.dirname(os.path.abspath(tmpdir)), "content"))
        self.lock = threading.RLock()
        with store.tx() as db:
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
        for row in store.query("SELECT id, config FROM images"):  # data roots older than the content store
            if not self.content.has(row["id"]) and digest_of(row["config"].encode()) == row["id"]:
                self.content.put(row["config"].encode(), row["id"])

    # lookup -------------------------------------------------------------
    def resolve(self, ref):
        """The image id for a full id, a tag, ``name@digest`` or an id prefix
        (Docker's order: a name that is also an id prefix is a name first)."""
        if not ref:
            raise InvalidParameter("no image named")
        if re.fullmatch(r"sha256:[0-9a-f]{64}", ref):
            return self.get(ref)["id"]
        try:
            r = reference.parse_reference(ref)
        except InvalidParameter:
            if not _HEX.match(ref):
                raise  # Docker: a name that does not parse is a 400 naming it, not "No such image"
            r = None
        if r is not None:
            if r.digest:
                row = self.store.one("SELECT image_id FROM repo_digests WHERE repo=? AND digest=? LIMIT 1",
                                     r.familiar_name, r.digest)
            else:
                row = self.store.one("SELECT image_id FROM tags WHERE ref=?", r.familiar())
            if row is not None:
                return row["image_id"]
        if _HEX.match(ref):
            hexpart = ref.removeprefix("sha256:")
            rows = self.store.query("SELECT id FROM images WHERE id LIKE ? LIMIT 2", f"sha256:{hexpart}%")
            if len(rows) == 1:
                return rows[0]["id"]
        raise ImageNotFound(f"No such image: {r.familiar() if r is not None else ref}")

    def get(self, image_id):
        row = self.store.one("SELECT * FROM images WHERE id=?", image_id)
        if row is None:
            raise ImageNotFound(f"No such image: {image_id}")
        return row

    def config(self, image_id):
        return json.loads(self.get(image_id)["config"])

    def config_bytes(self, image_id):
        """The config's exact bytes (the image id is their digest)."""
        if self.content.has(image_id):
            return self.content.read(image_id)
        return self.get(image_id)["config"].encode()

    def tags(self, image_id):
        return [r["ref"] for r in self.store.query("SELECT ref FROM tags WHERE image_id=? ORDER BY ref", image_id)]

    def repo_digests(self, image_id):
        """``RepoDigests``: ``["busybox@sha256:...", ...]``."""
        return [f"{r['repo']}@{r['digest']}" for r in self.store.query(
            "SELECT repo, digest FROM repo_digests WHERE image_id=? AND shown=1 ORDER BY repo, digest", image_id)]

    def parent(self, image_id):
        row = self.store.one("SELECT parent FROM image_parents WHERE image_id=?", image_id)
        return row["parent"] if row else ""

    def children(self, image_id):
        return [r["image_id"] for r in self.store.query("SELECT image_id FROM image_parents WHERE parent=?", image_id)]

    def all(self):
        return self.store.query("SELECT * FROM images ORDER BY created DESC")

    def size(self, image_id):
        return self.layers.size(self.get(image_id)["top_layer"])

    # creation -----------------------------------------------------------
    def add(self, image_config, top_layer, parent=None):
        """Store an image config (dict) whose layers exist; return its id."""
        raw = json.dumps(image_config, separators=(",", ":"), sort_keys=True).encode()
        return self.add_raw(raw, top_layer, parent)

    def add_raw(self, raw, top_layer, parent=None, db=None):
        """Store config bytes ``raw`` (the blob first, then the row) for an image
        whose layers exist; returns its id.  With ``db``, inside that transaction."""
        known = self.content.has(digest_of(raw))
        image_id = self.content.put(raw)
        created = json.loads(raw).get("created") or now_iso()
        if db is None:
            try:
                with self.store.tx() as tx:
                    self._insert(tx, image_id, raw, top_layer, created, parent)
            except BaseException:
                if not known:  # no row names the blob: it goes too
                    self.content.delete(image_id)
                raise
        else:
            self._insert(db, image_id, raw, top_layer, created, parent)
        return image_id

    @staticmethod
    def _insert(db, image_id, raw, top_layer, created, parent):
        db.execute("INSERT OR IGNORE INTO images(id, config, top_layer, created) VALUES (?,?,?,?)",
                   (image_id, raw.decode(), top_layer, created))
        if parent:
            db.execute("INSERT OR REPLACE INTO image_parents(image_id, parent) VALUES (?,?)", (image_id, parent))

    def spool_path(self, suffix=".tar"):
        fd, path = tempfile.mkstemp(dir=self.tmpdir, suffix=suffix)
        return fd, path

    def import_tar(self, src_path, ref=None, changes=None, message=""):
        """Make a one-layer image from a rootfs tarball (plain, gzip, bzip2 or xz)."""
        ref_n = reference.normalize(ref) if ref else None
        if ref_n and "@" in ref_n:
            raise InvalidParameter(f"refusing to import as a digest reference: {ref}")
        config = changes_mod.apply({}, changes)
        with no_space("import", self.data_root):
            image_id = self._import(src_path, ref_n, config, message)
        self.emit("image", "import", image_id, {"name": ref_n or image_id})
        return image_id

    def _import(self, src_path, ref_n, config, message):
        fd, plain = self.spool_path()
        try:
            with os.fdopen(fd, "wb") as out, open_uncompressed(src_path) as src:
                diff_id = copy_hashing(src, out)
            created = now_iso()
            comment = message or "Imported from -"
            image = {
                "architecture": goarch(), "os": "linux", "created": created, "comment": comment,
                "config": config, "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "history": [{"created": created, "comment": comment}],
            }
            raw = json.dumps(image, separators=(",", ":"), sort_keys=True).encode()
            with self.lock:
                top = self.layers.register(plain, diff_id, None)
                known = self.content.has(digest_of(raw))
                try:
                    with self.store.tx() as db:  # the image and its tag, or neither
                        image_id = self.add_raw(raw, top, db=db)
                        if ref_n:
                            self._tag(db, image_id, ref_n)
                except BaseException:
                    self.layers.release(top)
                    if not known:
                        self.content.delete(digest_of(raw))
                    raise
        finally:
            os.unlink(plain)
        if ref_n:
            self.emit("image", "tag", image_id, {"name": ref_n})
        return image_id

    # names ----------------------------------------------------------------
    def tag(self, image_id, ref, db=None):
        """Point tag ``ref`` at ``image_id``.  An image the tag named before keeps
        its other names, or becomes dangling, as in Docker."""
        ref_n = reference.normalize(ref)
        if "@" in ref_n:
            raise InvalidParameter(f"refusing to tag with a digest reference: {ref}")
        self.get(image_id)
        if db is None:
            with self.store.tx() as tx:
                self._tag(tx, image_id, ref_n)
        else:
            self._tag(db, image_id, ref_n)
        self.emit("image", "tag", image_id, {"name": ref_n})
        return ref_n

    @staticmethod
    def _tag(db, image_id, ref_n):
        db.execute("INSERT OR REPLACE INTO tags(ref, image_id) VALUES (?,?)", (ref_n, image_id))
        db.execute("UPDATE images SET last_tag_time=? WHERE id=?", (now_iso(), image_id))

    def record_repo_digest(self, db, repo, digest, image_id, media_type, kind, shown):
        db.execute("INSERT OR REPLACE INTO repo_digests(repo, digest, image_id, media_type, kind, shown)"
                   " VALUES (?,?,?,?,?,?)", (reference.repository(repo), digest, image_id, media_type, kind,
                                             1 if shown else 0))

    def record_layer_blob(self, db, diff_id, digest, media_type, size, repo):
        db.execute("INSERT OR REPLACE INTO layer_blobs(diff_id, digest, media_type, size, repo) VALUES (?,?,?,?,?)",
                   (diff_id, digest, media_type, int(size), reference.repository(repo)))

    def manifests(self, image_id):
        """``[{"repo", "digest", "media_type", "kind", "shown"}]`` recorded for the image."""
        return [dict(r) for r in self.store.query(
            "SELECT repo, digest, media_type, kind, shown FROM repo_digests WHERE image_id=? ORDER BY repo, kind",
            image_id)]

    def known_blobs(self, diff_id):
        return [{"digest": r["digest"], "media_type": r["media_type"], "size": r["size"], "repo": r["repo"]}
                for r in self.store.query("SELECT * FROM layer_blobs WHERE diff_id=? ORDER BY repo, digest", diff_id)]

    # history ----------------------------------------------------------------
    def history(self, ref):
        """``GET /images/{name}/history``: newest first, as Docker computes it."""
        image_id = self.resolve(ref)
        cfg = self.config(image_id)
        diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
        rows = {r["diff_id"]: r for r in self.layers.chain(self.get(image_id)["top_layer"])} if diff_ids else {}
        out, used = [], 0
        for h in cfg.get("history") or []:
            size = 0
            if not h.get("empty_layer"):
                if used >= len(diff_ids):
                    raise InvalidParameter(f"image {image_id[7:19]}: too many non-empty layers in its history")
                row = rows.get(diff_ids[used])
                size = row["size"] if row else 0
                used += 1
            out.insert(0, {"Id": "<missing>", "Created": unix_time(h.get("created", "")),
                           "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                           "Comment": h.get("comment", "")})
        if not out:
            out = [{"Id": "<missing>", "Created": unix_time(cfg.get("created", "")), "CreatedBy": "",
                    "Tags": None, "Size": self.size(image_id), "Comment": cfg.get("comment", "")}]
        current = image_id
        for item in out:  # the image, then its parents, where they are known
            item["Id"] = current
            item["Tags"] = self.tags(current) or None
            current = self.parent(current)
            if not current or self.store.one("SELECT 1 FROM images WHERE id=?", current) is None:
                break
        return out

    # the rest, in sibling modules ----------------------------------------
    def delete(self, ref, force=False, users=(), prune=True):
        """Docker's ``rmi``; see :func:`dockyard.engine.imageremove.delete`."""
        from .imageremove import delete
        return delete(self, ref, force=force, users=users, prune=prune)

    def prune(self, filters=None, users_of=None):
        from .imageremove import prune
        return prune(self, filters or {}, users_of or (lambda image_id: []))

    def _delete_image(self, image_id, out):
        from .imageremove import delete_image
        return delete_image(self, image_id, out)

    def add_from_registry(self, repo, tag, manifest_bytes, manifest_media_type, config_bytes, layers,
                          index_bytes=None, index_media_type=None):
        """See :func:`dockyard.engine.imagedist.add_from_registry`."""
        from .imagedist import add_from_registry
        return add_from_registry(self, repo, tag, manifest_bytes, manifest_media_type, config_bytes, layers,
                                 index_bytes, index_media_type)

    def push_plan(self, ref):
        """See :func:`dockyard.engine.imagedist.push_plan`."""
        from .imagedist import push_plan
        return push_plan(self, ref)

    def record_pushed(self, repo, tag, manifest_digest, manifest_bytes, media_type, blobs):
        """See :func:`dockyard.engine.imagedist.record_pushed`."""
        from .imagedist import record_pushed
        return record_pushed(self, repo, tag, manifest_digest, manifest_bytes, media_type, blobs)

    def save(self, refs, fileobj):
        """See :func:`dockyard.engine.archive.save`."""
        from .archive import save
        return save(self, refs, fileobj)

    def load(self, path):
        """See :func:`dockyard.engine.archiveload.load`."""
        from .archiveload import load
        return load(self, path)

    def check(self):
        """See :func:`dockyard.engine.imagecheck.check`."""
        from .imagecheck import check
        return check(self)
