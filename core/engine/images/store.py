"""The image store: image configs addressed by digest, tags, repository digests,
parents, distribution metadata; lookup, tagging, import and history.

An image is its config JSON (OCI/Docker image config); its id is the sha256 of
those exact bytes, which are kept as a blob in the
:class:`~dockyard.engine.layers.content.ContentStore` (and, for quick queries, in the
``images`` row).  Its filesystem is the layer chain named by
``rootfs.diff_ids``, held by the :class:`~dockyard.engine.layers.store.LayerStore`.

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
by a concurrent removal.  What clients ask of images is
:class:`~.service.ImageService`, which uses this store and the sibling modules:
:mod:`.remove` (rmi, prune), :mod:`.distribution` (the registry client's side),
:mod:`.save`, :mod:`.load`, :mod:`.importer`, :mod:`.commit`, :mod:`.check`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
import threading
from datetime import datetime, timezone
from typing import Any, Callable

from ...errors import ImageNotFound, InvalidParameter
from ...model.image import ImageConfig
from ..filters import unix_time
from ..layers.content import ContentStore, digest_of
from . import reference

ZERO_TIME = "0001-01-01T00:00:00Z"
_HEX = re.compile(r"^(?:sha256:)?[0-9a-f]{1,64}$")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def goarch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


class ImageStore:
    """The images recorded in ``store`` whose layers ``layers`` holds; ``tmpdir``
    takes spools, ``emit`` the image events, ``content`` the config blobs."""

    def __init__(self, store: Any, layers: Any, tmpdir: str, emit: Callable[[str, str, str, dict], None] | None = None,
                 content: ContentStore | None = None) -> None:
        self.store = store
        self.layers = layers
        self.tmpdir = tmpdir
        self.data_root = os.path.dirname(os.path.abspath(tmpdir))  # named by a full disk's error
        self.emit = emit or (lambda *a: None)
        self.content = content or ContentStore(os.path.join(os.path.dirname(os.path.abspath(tmpdir)), "content"))
        self.lock = threading.RLock()  # the tables: dockyard.schema's
        for row in store.query("SELECT id, config FROM images"):  # data roots older than the content store
            if not self.content.has(row["id"]) and digest_of(row["config"].encode()) == row["id"]:
                self.content.put(row["config"].encode(), row["id"])

    # lookup -------------------------------------------------------------
    def resolve(self, ref: str) -> str:
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

    def get(self, image_id: str) -> Any:
        row = self.store.one("SELECT * FROM images WHERE id=?", image_id)
        if row is None:
            raise ImageNotFound(f"No such image: {image_id}")
        return row

    def config(self, image_id: str) -> ImageConfig:
        """The image's config, read from its stored bytes."""
        return ImageConfig.parse(self.get(image_id)["config"])

    def config_bytes(self, image_id: str) -> bytes:
        """The config's exact bytes (the image id is their digest)."""
        if self.content.has(image_id):
            return self.content.read(image_id)
        return self.get(image_id)["config"].encode()

    def tags(self, image_id: str) -> list[str]:
        return [r["ref"] for r in self.store.query("SELECT ref FROM tags WHERE image_id=? ORDER BY ref", image_id)]

    def repo_digests(self, image_id: str) -> list[str]:
        """``RepoDigests``: ``["busybox@sha256:...", ...]``."""
        return [f"{r['repo']}@{r['digest']}" for r in self.store.query(
            "SELECT repo, digest FROM repo_digests WHERE image_id=? AND shown=1 ORDER BY repo, digest", image_id)]

    def parent(self, image_id: str) -> str:
        row = self.store.one("SELECT parent FROM image_parents WHERE image_id=?", image_id)
        return row["parent"] if row else ""

    def set_parent(self, image_id: str, parent: str) -> None:
        """Record ``parent`` as the parent of ``image_id`` (a build's ``cachefrom``
        hit on a pulled image, as moby's ``SetParent``)."""
        with self.store.tx() as db:
            db.execute("INSERT OR REPLACE INTO image_parents(image_id, parent) VALUES (?,?)", (image_id, parent))

    def children(self, image_id: str) -> list[str]:
        return [r["image_id"] for r in self.store.query("SELECT image_id FROM image_parents WHERE parent=?", image_id)]

    def all(self) -> list[Any]:
        return self.store.query("SELECT * FROM images ORDER BY created DESC")

    def size(self, image_id: str) -> int:
        return self.layers.size(self.get(image_id)["top_layer"])

    def top_layer(self, image_id: str) -> str | None:
        """The chain ID of the image's top layer (``None``: no layer)."""
        return self.get(image_id)["top_layer"]

    def tags_in_repository(self, familiar: str) -> list[str]:
        """Every local ``familiar:tag`` (``docker push NAME`` without a tag pushes them all)."""
        return sorted(r["ref"] for r in self.store.query("SELECT ref FROM tags")
                      if r["ref"].rpartition(":")[0] == familiar)

    # creation -----------------------------------------------------------
    def add(self, image_config: ImageConfig, top_layer: str | None, parent: str | None = None) -> str:
        """Store a new image config whose layers exist (as compact JSON, its keys
        sorted); return its id."""
        raw = json.dumps(image_config.to_json(), separators=(",", ":"), sort_keys=True).encode()
        return self.add_raw(raw, top_layer, parent)

    def add_raw(self, raw: bytes, top_layer: str | None, parent: str | None = None, db: Any = None) -> str:
        """Store config bytes ``raw`` (the blob first, then the row) for an image
        whose layers exist; returns its id.  With ``db``, inside that transaction."""
        created = ImageConfig.parse(raw).created or now_iso()  # refuses a config of the wrong shape
        known = self.content.has(digest_of(raw))
        image_id = self.content.put(raw)
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

    def spool_path(self, suffix: str = ".tar") -> tuple[int, str]:
        fd, path = tempfile.mkstemp(dir=self.tmpdir, suffix=suffix)
        return fd, path

    # names ----------------------------------------------------------------
    def tag(self, image_id: str, ref: str, db: Any = None) -> str:
        """Point tag ``ref`` at ``image_id``.  An image the tag named before keeps
        its other names, or becomes dangling, as in Docker."""
        ref_n = reference.normalize(ref)
        if "@" in ref_n:
            raise InvalidParameter(f"refusing to tag with a digest reference: {ref}")
        self.get(image_id)
        if db is None:
            with self.store.tx() as tx:
                self.write_tag(tx, image_id, ref_n)
        else:
            self.write_tag(db, image_id, ref_n)
        self.emit("image", "tag", image_id, {"name": ref_n})
        return ref_n

    @staticmethod
    def write_tag(db: Any, image_id: str, ref_n: str) -> None:
        """Point normalised tag ``ref_n`` at ``image_id`` in transaction ``db``
        (no checks, no event: :meth:`tag` is the whole operation)."""
        db.execute("INSERT OR REPLACE INTO tags(ref, image_id) VALUES (?,?)", (ref_n, image_id))
        db.execute("UPDATE images SET last_tag_time=? WHERE id=?", (now_iso(), image_id))

    def record_repo_digest(self, db: Any, repo: str, digest: str, image_id: str, media_type: str, kind: str,
                           shown: bool) -> None:
        db.execute("INSERT OR REPLACE INTO repo_digests(repo, digest, image_id, media_type, kind, shown)"
                   " VALUES (?,?,?,?,?,?)", (reference.repository(repo), digest, image_id, media_type, kind,
                                             1 if shown else 0))

    def record_layer_blob(self, db: Any, diff_id: str, digest: str, media_type: str, size: int, repo: str) -> None:
        db.execute("INSERT OR REPLACE INTO layer_blobs(diff_id, digest, media_type, size, repo) VALUES (?,?,?,?,?)",
                   (diff_id, digest, media_type, int(size), reference.repository(repo)))

    def manifests(self, image_id: str) -> list[dict]:
        """``[{"repo", "digest", "media_type", "kind", "shown"}]`` recorded for the image."""
        return [dict(r) for r in self.store.query(
            "SELECT repo, digest, media_type, kind, shown FROM repo_digests WHERE image_id=? ORDER BY repo, kind",
            image_id)]

    def known_blobs(self, diff_id: str) -> list[dict]:
        return [{"digest": r["digest"], "media_type": r["media_type"], "size": r["size"], "repo": r["repo"]}
                for r in self.store.query("SELECT * FROM layer_blobs WHERE diff_id=? ORDER BY repo, digest", diff_id)]

    # history ----------------------------------------------------------------
    def history(self, ref: str) -> list[dict]:
        """``GET /images/{name}/history``: newest first, as Docker computes it."""
        image_id = self.resolve(ref)
        cfg = self.config(image_id)
        diff_ids = cfg.diff_ids
        rows = {r["diff_id"]: r for r in self.layers.chain(self.get(image_id)["top_layer"])} if diff_ids else {}
        out: list[dict[str, Any]] = []
        used = 0
        for h in cfg.history or []:
            size = 0
            if not h.empty_layer:
                if used >= len(diff_ids):
                    raise InvalidParameter(f"image {image_id[7:19]}: too many non-empty layers in its history")
                row = rows.get(diff_ids[used])
                size = row["size"] if row else 0
                used += 1
            out.insert(0, {"Id": "<missing>", "Created": unix_time(h.created or ""),
                           "CreatedBy": _text(h.created_by, h.has("created_by")), "Tags": None, "Size": size,
                           "Comment": _text(h.comment, h.has("comment"))})
        if not out:
            out = [{"Id": "<missing>", "Created": unix_time(cfg.created or ""), "CreatedBy": "",
                    "Tags": None, "Size": self.size(image_id), "Comment": _text(cfg.comment, cfg.has("comment"))}]
        current = image_id
        for item in out:  # the image, then its parents, where they are known
            item["Id"] = current
            item["Tags"] = self.tags(current) or None
            current = self.parent(current)
            if not current or self.store.one("SELECT 1 FROM images WHERE id=?", current) is None:
                break
        return out


def _text(value: str | None, present: bool) -> str | None:
    """A string of the config as the API shows it: ``""`` when absent, ``null`` as held."""
    return "" if value is None and not present else value
