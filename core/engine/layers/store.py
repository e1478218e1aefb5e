"""The layer store: content identity (chain IDs of diff IDs) → storage driver ids.

Images are driver-independent: they name their layers by diff ID; this module
maps each chain of diff IDs to the storage driver's opaque id, creates layers from
uncompressed layer tars, and removes layers nobody references any more.

Registration verifies the tar against its diff ID before anything is created, and
keeps the tar's tar-split record (:mod:`dockyard.driverkit.tarsplit`) in the metadata store
so that the layer's exact diff can be rebuilt and verified later (e.g. when the
layers move to another storage driver).

Crash consistency: a driver layer exists only while a row of this store owns it.
A new layer's driver id is *staged* (``staged_layers``, committed) before the
driver creates it, and the row goes in the transaction that records the layer; a
removed layer's record is replaced by a staged row in one transaction before the
driver removes it.  A daemon killed at any point leaves staged ids, which the
next start removes (:meth:`LayerStore.sweep_staged`); the builder's short-lived
layers are kept the same way in ``scratch_layers``.

A pull registers a layer in two steps, so that it reads the layer once:
:meth:`LayerStore.stage` extracts the stream into a staged driver layer while
hashing it and recording its tar-split, and :meth:`LayerStore.commit` records
it once the caller has verified both digests (or :meth:`LayerStore.discard`
removes it).  :meth:`LayerStore.unowned`
finds what a driver holds that no row owns (``system check``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import tempfile
import threading
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, Callable

from ...driverkit.tarsplit import record_tar_split
from ...driverkit.tarsplit_tee import TarSplitTee
from ...errors import Conflict, LayerNotFound, StorageError, full_disk_code


if TYPE_CHECKING:
    from ...plugins import Slot
    from ...store import Store

log = logging.getLogger("dockyard.layers")


def chain_id(parent_chain: str | None, diff_id: str) -> str:
    """OCI chain ID: ``diff_id`` for a base layer, else sha256 of "parent diff"."""
    if parent_chain is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent_chain} {diff_id}".encode()).hexdigest()


class Staged:
    """A layer extracted into the staged driver layer ``driver_id`` on
    ``parent_driver``, not recorded yet: :attr:`diff_id` is what its tar hashed
    to, :attr:`split` its tar-split record (``complete`` false: still to make)."""

    def __init__(self, driver_id: str, parent_driver: str | None, diff_id: str, size: int,
                 split: bytes | None, complete: bool) -> None:
        self.driver_id, self.parent_driver, self.diff_id = driver_id, parent_driver, diff_id
        self.size, self.split, self.complete = size, split, complete
        self.done = False  # committed or discarded


class LayerStore:
    """The image layers of one storage driver (``slot``), recorded in ``store``."""

    def __init__(self, slot: Slot, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self.use(slot)  # the tables: dockyard.schema's

    def use(self, slot: Slot) -> None:
        """Make ``slot`` the storage driver (at start, and when a migration switches),
        with the core's naive diff as its fallback."""
        from ...driverkit.naivediff import NaiveDiff

        if slot.pm.get_plugin("naive-diff") is None:
            slot.pm.register(NaiveDiff(slot.hook), name="naive-diff")
        self.slot, self.hook = slot, slot.hook

    @property
    def driver_name(self) -> str:
        return self.slot.name

    def driver_id(self, chain: str) -> str:
        row = self.store.one("SELECT driver_id FROM layers WHERE chain_id=?", chain)
        if row is None:
            raise LayerNotFound(f"layer {chain} not found")
        return row["driver_id"]

    def get(self, chain: str) -> Any:
        return self.store.one("SELECT * FROM layers WHERE chain_id=?", chain)

    def register(self, tar_path: str, diff_id: str, parent_chain: str | None = None) -> str:
        """Create the layer for the uncompressed tar at ``tar_path``; return its chain ID.

        An existing layer with the same chain is reused.  The tar must hash to
        ``diff_id`` (checked before anything is created: a mismatch leaves nothing
        behind).  On any failure the new driver layer is removed again, so nothing
        half-written remains; a daemon killed meanwhile leaves a staged id that
        the next start removes.
        """
        chain = chain_id(parent_chain, diff_id)
        with self._lock:
            if self.get(chain) is not None:
                return chain
            parent_id = self.driver_id(parent_chain) if parent_chain else None
            actual, split = record_tar_split(tar_path)
            if actual != diff_id:
                raise StorageError(f"layer tar does not match its diff ID: expected {diff_id}, "
                                   f"the tar's sha256 is {actual}")
            new_id = secrets.token_hex(32)
            with self.store.tx() as db:
                db.execute("INSERT INTO staged_layers (id) VALUES (?)", (new_id,))
            try:
                self.hook.storage_create(id=new_id, parent=parent_id)
                with open(tar_path, "rb") as stream:
                    size = self.hook.storage_apply_diff(id=new_id, parent=parent_id, stream=stream)
                with self.store.tx() as db:
                    db.execute(
                        "INSERT INTO layers(chain_id, driver_id, parent, diff_id, size, created)"
                        " VALUES (?,?,?,?,?,?)",
                        (chain, new_id, parent_chain, diff_id, int(size or 0),
                         datetime.now(timezone.utc).isoformat()),
                    )
                    if split is not None:
                        db.execute("INSERT INTO layer_tarsplit(chain_id, data) VALUES (?,?)", (chain, split))
                    db.execute("DELETE FROM staged_layers WHERE id=?", (new_id,))
            except BaseException:
                self._discard(new_id, quiet=True)
                raise
        return chain

    def stage(self, stream: IO[bytes], parent_driver: str | None) -> Staged:
        """Extract the uncompressed layer tar read from ``stream`` into a new
        staged layer on driver layer ``parent_driver``, hashing it and recording
        its tar-split in the same read.  Nothing is recorded as a layer: the
        caller checks :attr:`Staged.diff_id` (and its download's digest), then
        :meth:`commit` or :meth:`discard`.  On failure nothing stays (a daemon
        killed meanwhile leaves a staged id for the next start)."""
        new_id = secrets.token_hex(32)
        with self.store.tx() as db:
            db.execute("INSERT INTO staged_layers (id) VALUES (?)", (new_id,))
        try:
            self.hook.storage_create(id=new_id, parent=parent_driver)
            tee = TarSplitTee(stream)
            size = self.hook.storage_apply_diff(id=new_id, parent=parent_driver, stream=tee)
            tee.drain()  # what the extraction did not need (the end blocks) is the tar's too
            split = tee.record()
        except BaseException:
            self._discard(new_id, quiet=True)
            raise
        return Staged(new_id, parent_driver, tee.diff_id, int(size or 0), split, tee.complete)

    def complete_record(self, staged: Staged, reopen: Callable[[], IO[bytes]], tmpdir: str | None = None) -> None:
        """Make the tar-split record :meth:`stage` could not make in passing (rare:
        see :class:`~dockyard.driverkit.tarsplit_tee.TarSplitTee`) from a second
        read of the tar, ``reopen()`` (spooled to a file in ``tmpdir``)."""
        if staged.complete:
            return
        fd, path = tempfile.mkstemp(dir=tmpdir, prefix="tarsplit-", suffix=".tar")
        try:
            with os.fdopen(fd, "wb") as out, reopen() as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            actual, staged.split = record_tar_split(path)
        finally:
            os.unlink(path)
        if actual != staged.diff_id:
            raise StorageError(f"layer tar read twice hashed to {staged.diff_id}, then to {actual}")
        staged.complete = True

    def commit(self, staged: Staged, diff_id: str, parent_chain: str | None = None) -> str:
        """Record staged layer ``staged`` as ``diff_id`` on ``parent_chain``; return
        its chain ID.  Its tar must have hashed to ``diff_id`` and it must have
        been staged on ``parent_chain``'s driver layer (else StorageError, the
        caller discards it); a layer already recorded with that chain wins and
        ``staged`` is discarded."""
        chain = chain_id(parent_chain, diff_id)
        if staged.diff_id != diff_id:
            raise StorageError(f"layer tar does not match its diff ID: expected {diff_id}, "
                               f"the tar's sha256 is {staged.diff_id}")
        if not staged.complete:
            raise StorageError(f"layer {diff_id}: no tar-split record was made")
        with self._lock:
            if self.get(chain) is not None:
                self.discard(staged)
                return chain
            if staged.parent_driver != (self.driver_id(parent_chain) if parent_chain else None):
                raise StorageError(f"layer {diff_id} was staged on another parent layer than {parent_chain}")
            with self.store.tx() as db:
                db.execute("INSERT INTO layers(chain_id, driver_id, parent, diff_id, size, created)"
                           " VALUES (?,?,?,?,?,?)",
                           (chain, staged.driver_id, parent_chain, diff_id, staged.size,
                            datetime.now(timezone.utc).isoformat()))
                if staged.split is not None:
                    db.execute("INSERT INTO layer_tarsplit(chain_id, data) VALUES (?,?)", (chain, staged.split))
                db.execute("DELETE FROM staged_layers WHERE id=?", (staged.driver_id,))
            staged.done = True
        return chain

    def discard(self, staged: Staged) -> None:
        """Remove staged layer ``staged`` (once; what fails stays staged for the
        next start)."""
        if not staged.done:
            staged.done = True
            self._discard(staged.driver_id, quiet=True)

    def chain(self, top: str | None) -> list[Any]:
        """The chain IDs from the base layer up to ``top`` (inclusive)."""
        out = []
        while top:
            row = self.get(top)
            if row is None:
                raise LayerNotFound(f"layer {top} not found")
            out.append(row)
            top = row["parent"]
        return list(reversed(out))

    def size(self, top: str | None) -> int:
        return sum(row["size"] for row in self.chain(top)) if top else 0

    def tar_split(self, chain: str) -> bytes | None:
        """The tar-split record of ``chain`` (bytes), or ``None`` if none was kept."""
        row = self.store.one("SELECT data FROM layer_tarsplit WHERE chain_id=?", chain)
        return bytes(row["data"]) if row else None

    def count(self) -> int:
        return self.store.one("SELECT COUNT(*) AS n FROM layers")["n"]

    def remove(self, chain: str) -> None:
        """Remove the one layer ``chain`` (its ancestors stay).

        :raises Conflict: if a layer, an image or a container builds on it (the
            core never asks a driver to remove a layer that has children).
        """
        with self._lock:
            row = self.get(chain)
            if row is None:
                raise LayerNotFound(f"layer {chain} not found")
            users = self._users(chain)
            if users:
                raise Conflict(f"layer {chain} is in use by {', '.join(users)}: remove those first")
            self._retire(row)

    def release(self, top: str | None) -> None:
        """Remove ``top`` and its ancestors while no image, layer or container uses them."""
        with self._lock:
            while top:
                row = self.get(top)
                if row is None or self._in_use(top):
                    return
                self._retire(row)
                top = row["parent"]

    def _retire(self, row):
        """Drop the record of layer ``row`` and stage its driver id in one
        transaction, then remove the driver layer: a crash in between leaves a
        staged id, never a record without its layer.  With no room left for
        that transaction, the layer goes first to make room for the deletion."""
        try:
            with self.store.tx() as db:
                db.execute("DELETE FROM layers WHERE chain_id=?", (row["chain_id"],))
                db.execute("INSERT OR IGNORE INTO staged_layers (id) VALUES (?)", (row["driver_id"],))
        except Exception as exc:
            if full_disk_code(exc) is None:
                raise
            self.hook.storage_remove(id=row["driver_id"])
            with self.store.tx() as db:
                db.execute("DELETE FROM layers WHERE chain_id=?", (row["chain_id"],))
            return
        self._discard(row["driver_id"])

    def _discard(self, driver_id, quiet=False):
        """Remove staged layer ``driver_id``, then its row (in this order: on a
        full disk the removal frees the room the row's deletion needs).  What
        fails stays staged for the next start; ``quiet``: log it, raise nothing
        (the caller is already raising)."""
        try:
            self.hook.storage_remove(id=driver_id)
            with self.store.tx() as db:
                db.execute("DELETE FROM staged_layers WHERE id=?", (driver_id,))
        except Exception as exc:
            if not quiet:
                raise
            log.warning("layer %s stays staged, for the next start to remove: %s", driver_id, exc)

    def sweep_staged(self) -> int:
        """Remove the layers a daemon that died was writing or removing (at
        start, before the first request); return how many went."""
        gone = 0
        for row in self.store.query("SELECT id FROM staged_layers"):
            if self.store.one("SELECT 1 FROM layers WHERE driver_id=?", row["id"]) is not None:
                with self.store.tx() as db:  # recorded after all: the row is stale
                    db.execute("DELETE FROM staged_layers WHERE id=?", (row["id"],))
                continue
            try:
                self._discard(row["id"])
                gone += 1
            except Exception as exc:
                log.warning("could not remove the staged layer %s: %s", row["id"], exc)
        return gone

    def unowned(self) -> list[str] | None:
        """Driver ids the storage driver holds that no layer, container, build
        step or staged write owns (sorted), or ``None`` if the driver cannot list
        its layers (the optional ``storage_layers`` hook).  Rows are written
        before a driver layer is made and dropped after it is removed, so the
        driver is listed before the records are read and once more after: a
        layer created or removed meanwhile is not taken for an orphan."""
        before = self.hook.storage_layers()
        if before is None:
            return None
        owned = set()
        for sql in ("SELECT driver_id AS id FROM layers", "SELECT id FROM containers",
                    "SELECT id FROM scratch_layers", "SELECT id FROM staged_layers"):
            owned.update(row["id"] for row in self.store.query(sql))
        return sorted((set(before) - owned) & set(self.hook.storage_layers() or ()))

    def _in_use(self, chain):
        return bool(self._users(chain))

    def _users(self, chain):
        """What builds on layer ``chain``: child layers, images, containers."""
        out = []
        for what, sql in (
            ("child layer", "SELECT chain_id AS id FROM layers WHERE parent=?"),
            ("image", "SELECT id FROM images WHERE top_layer=?"),
            # the chain a container's layer is on: held even once its image is deleted
            ("container", "SELECT id FROM containers WHERE top_layer=?"),
        ):
            out += [f"{what} {row['id'].removeprefix('sha256:')[:12]}" for row in self.store.query(sql, chain)]
        return out

    # reading a read-write layer against the image layer it was made on
    def _parent_id(self, parent_chain: str | None) -> str | None:
        return self.driver_id(parent_chain) if parent_chain else None

    def changes(self, driver_id: str, parent_chain: str | None) -> list:
        """``[(path, kind)]`` of layer ``driver_id`` against ``parent_chain`` (the
        driver's ``storage_changes``, or the naive diff's)."""
        return self.hook.storage_changes(id=driver_id, parent=self._parent_id(parent_chain)) or []

    def diff_size(self, driver_id: str, parent_chain: str | None) -> int:
        """Bytes layer ``driver_id`` adds to ``parent_chain`` (``storage_size``)."""
        return int(self.hook.storage_size(id=driver_id, parent=self._parent_id(parent_chain)) or 0)

    def diff(self, driver_id: str, parent_chain: str | None) -> Any:
        """A readable tar stream of layer ``driver_id`` against ``parent_chain``
        (``storage_diff``); the caller closes it."""
        return self.hook.storage_diff(id=driver_id, parent=self._parent_id(parent_chain))

    def metadata(self, driver_id: str) -> dict[str, str] | None:
        """What the driver says of where layer ``driver_id`` lives (its optional
        ``storage_metadata``: inspect's ``GraphDriver.Data``); None when it says
        nothing or the layer is gone (a container being removed)."""
        try:
            data = self.hook.storage_metadata(id=driver_id)
        except LayerNotFound:
            return None
        return None if data is None else {str(k): str(v) for k, v in data.items()}

    def status(self) -> list:
        """The driver's ``[[key, value]]`` (``docker info``'s DriverStatus)."""
        return list(self.hook.storage_status() or [])

    # container layers: the driver id is the container id
    def create_rw(self, container_id: str, parent_chain: str | None) -> None:
        parent = self.driver_id(parent_chain) if parent_chain else None
        self.hook.storage_create(id=container_id, parent=parent)

    def remove_rw(self, container_id: str) -> None:
        self.hook.storage_remove(id=container_id)

    # scratch layers: the builder's read-write layers of one step, recorded so
    # that a daemon killed in the middle of the step removes them when it starts
    def create_scratch(self, parent_chain: str | None) -> str:
        """A new read-write layer on ``parent_chain``; its driver id."""
        rw = secrets.token_hex(32)
        with self.store.tx() as db:
            db.execute("INSERT INTO scratch_layers (id) VALUES (?)", (rw,))
        try:
            self.create_rw(rw, parent_chain)
        except BaseException:
            self._forget_scratch(rw)
            raise
        return rw

    def remove_scratch(self, rw: str) -> None:
        self.remove_rw(rw)
        self._forget_scratch(rw)

    def _forget_scratch(self, rw):
        with self.store.tx() as db:
            db.execute("DELETE FROM scratch_layers WHERE id=?", (rw,))

    def sweep_scratch(self) -> int:
        """Remove the scratch layers a daemon that died left behind (at start, when
        no build runs); return how many went."""
        gone = 0
        for row in self.store.query("SELECT id FROM scratch_layers"):
            try:
                self.remove_scratch(row["id"])
                gone += 1
            except StorageError as exc:
                log.warning("could not remove the builder's leftover layer %s: %s", row["id"], exc)
        return gone

    def mount(self, driver_id: str) -> str:
        path = self.hook.storage_mount(id=driver_id)
        if not path:
            raise StorageError(f"storage driver {self.driver_name} returned no path for {driver_id}")
        return path

    def unmount(self, driver_id: str) -> None:
        self.hook.storage_unmount(id=driver_id)
