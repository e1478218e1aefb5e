"""The build cache: (parent image, step) → the image the step made.

A step's key is the SHA-256 of its parent image id and its *description*: the
instruction after substitution as it is recorded in the history (``created_by``,
which for RUN carries the build args in effect, ``|2 A=1 B=2 /bin/sh -c ...``,
and for COPY/ADD the checksum of the sources, owner and mode), plus what else
changes the result without being in the history (the ``--chown`` flag, the
``--link`` flag, ADD URLs' content).  The parent image id stands for the whole
state before the step (config, file system, history), because every step of
the classic builder makes an image.

Rows live in the metadata store, so the cache survives a daemon restart; a row
goes with its image (``ON DELETE CASCADE``) and a lookup ignores a row whose
image is gone.
"""

import hashlib
import json

from ..engine.images.store import now_iso


def step_key(parent, description):
    raw = json.dumps([parent or "", description], separators=(",", ":"), sort_keys=True)
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


class BuildCache:
    def __init__(self, store) -> None:
        self.store = store  # the table: dockyard.schema's

    def lookup(self, parent, description):
        """The cached image id, or ``None``."""
        row = self.store.one("SELECT c.image_id FROM build_cache c JOIN images i ON i.id = c.image_id"
                             " WHERE c.key=?", step_key(parent, description))
        return row["image_id"] if row else None

    def record(self, parent, description, image_id) -> None:
        with self.store.tx() as db:
            db.execute("INSERT OR REPLACE INTO build_cache(key, image_id, parent, step, created) VALUES (?,?,?,?,?)",
                       (step_key(parent, description), image_id, parent or "",
                        json.dumps(description, sort_keys=True), now_iso()))


def prune(store, until=None):
    """Forget the cached steps (those recorded before unix time ``until``, if given);
    return their keys.  The images the steps made stay: they are ordinary images,
    reclaimed by ``image prune`` once nothing uses them."""
    from ..engine.filters import unix_time

    BuildCache(store)  # the table exists even before the first build
    rows = store.query("SELECT key, created FROM build_cache")
    keys = [r["key"] for r in rows if until is None or unix_time(r["created"]) < until]
    with store.tx() as db:
        for key in keys:
            db.execute("DELETE FROM build_cache WHERE key=?", (key,))
    return keys
