"""The container records: one :class:`~dockyard.model.container.ContainerRecord` per
container, kept in the store's ``containers`` table as the JSON the model's converter
makes of it (``data``; the Docker API's shapes are its views), and a lock per
container.

Every part of the engine that reads or changes a record goes through
:class:`ContainerRecords`; the networks and volumes services get it as their
narrow view of the containers (who is on a network, who uses a volume).
"""

from __future__ import annotations

import re
import threading
from typing import Any

from ...errors import Conflict, ContainerNotFound, InvalidParameter
from ...model.container import ContainerRecord
from ...model.convert import dumps, loads
from . import listing


class ContainerRecords:
    """The records in ``store``; :meth:`lock` serialises changes to one container."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()

    def lock(self, cid: str) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault(cid, threading.RLock())

    def forget_lock(self, cid: str) -> None:
        with self._locks_guard:
            self._locks.pop(cid, None)

    def resolve(self, ref: str) -> str:
        """Full id from a name, an id or a unique id prefix (Docker's rules)."""
        if not ref:
            raise ContainerNotFound("No such container: ")
        row = self.store.one("SELECT id FROM containers WHERE id=? OR name=?", ref, ref.lstrip("/"))
        if row:
            return row["id"]
        rows = self.store.query("SELECT id FROM containers WHERE id LIKE ?", ref + "%") \
            if re.fullmatch(r"[0-9a-f]+", ref) else []
        if len(rows) == 1:
            return rows[0]["id"]
        if len(rows) > 1:
            raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
        raise ContainerNotFound(f"No such container: {ref}")

    def get(self, cid: str) -> ContainerRecord:
        row = self.store.one("SELECT data FROM containers WHERE id=?", cid)
        if row is None:
            raise ContainerNotFound(f"No such container: {cid}")
        return loads(row["data"], ContainerRecord)

    def save(self, rec: ContainerRecord) -> None:
        with self.store.tx() as db:
            db.execute("UPDATE containers SET data=? WHERE id=?", (dumps(rec), rec.id))

    def all(self) -> list[ContainerRecord]:
        return [loads(r["data"], ContainerRecord) for r in self.store.query("SELECT data FROM containers")]

    def name_free(self, name: str) -> bool:
        return self.store.one("SELECT 1 FROM containers WHERE name=?", name) is None

    def insert(self, rec: ContainerRecord, top_layer: str | None) -> None:
        """Record a new container made on layer chain ``top_layer`` (its image's top
        layer, which the layer store keeps while the row names it, even once the
        image is deleted); a Conflict if its name is taken."""
        with self.store.tx() as db:
            clash = db.execute("SELECT id FROM containers WHERE name=?", (rec.name,)).fetchone()
            if clash:
                raise name_conflict(rec.name, clash["id"])
            db.execute("INSERT INTO containers(id, name, image_id, top_layer, data) VALUES (?,?,?,?,?)",
                       (rec.id, rec.name, rec.image_id, top_layer, dumps(rec)))

    def top_layer(self, cid: str) -> str | None:
        """The layer chain container ``cid``'s read-write layer is made on (None:
        an image without layers, or no such container)."""
        row = self.store.one("SELECT top_layer FROM containers WHERE id=?", cid)
        return row["top_layer"] if row else None

    def rename(self, rec: ContainerRecord) -> None:
        """Store ``rec`` under its (new) name (a Conflict if another container has it)."""
        with self.store.tx() as db:
            clash = db.execute("SELECT id FROM containers WHERE name=? AND id<>?", (rec.name, rec.id)).fetchone()
            if clash:
                raise name_conflict(rec.name, clash["id"])
            db.execute("UPDATE containers SET name=?, data=? WHERE id=?", (rec.name, dumps(rec), rec.id))

    def delete(self, cid: str) -> None:
        with self.store.tx() as db:
            db.execute("DELETE FROM containers WHERE id=?", (cid,))

    def release_addresses(self, cid: str) -> None:
        """Drop the IP allocations of ``cid`` (made before its record named them)."""
        if self.store.one("SELECT 1 FROM ip_allocations WHERE owner=? LIMIT 1", cid):
            with self.store.tx() as db:
                db.execute("DELETE FROM ip_allocations WHERE owner=?", (cid,))

    # --- what other services ask -------------------------------------------------
    def users_of_image(self, image_id: str) -> list[tuple[str, bool]]:
        """``[(container id, running)]`` of the containers made from ``image_id``."""
        out = []
        for row in self.store.query("SELECT id, data ->> '$.state.running' AS running FROM containers "
                                    "WHERE image_id=?", image_id):
            out.append((row["id"], bool(row["running"])))
        return out

    def on_network(self, network: str) -> list[tuple[str, str, dict[str, Any]]]:
        """See :func:`.listing.on_network`."""
        return listing.on_network(self.store, network)

    def volumes_in_use(self) -> set[str]:
        """See :func:`.listing.volumes_in_use`."""
        return listing.volumes_in_use(self.store)

    def volume_users(self) -> dict[str, list[str]]:
        """Volume name -> ids of the containers whose records name it."""
        out: dict[str, list[str]] = {}
        for crec in self.all():
            for mp in crec.mount_points:
                if mp.type == "volume" and mp.name:
                    out.setdefault(mp.name, []).append(crec.id)
        return out


def name_conflict(name: str, holder: str) -> Conflict:
    """Docker's error for a name another container has."""
    return Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{holder}". You have to remove (or rename) that container to be able to reuse that name.')
