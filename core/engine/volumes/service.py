"""Volumes: the records, their drivers, and who uses them.

A volume is a row of the store's ``volumes`` table (name, driver, and a JSON
record: ``Name, Driver, Mountpoint, CreatedAt, Labels, Options, Scope, Status``
plus ``Anonymous``); its storage belongs to its driver, one plug-in of the
``dockyard.volume`` entry-point group (``plugins.toml`` ``[volume] drivers``;
each enabled driver gets its own plugin manager, as network drivers do).  The
``local`` driver's home is ``<data-root>/volumes``, Docker's layout; any other
driver's is ``<data-root>/volume/<name>``.

A volume is *in use* while a container record (running or not) names it in its
``MountPoints`` (see :mod:`dockyard.engine.containers.mountpoints`); such a volume
cannot be removed or pruned.  Containers mount a volume through
:meth:`VolumeService.mount` with their id, which the driver counts.

:class:`VolumeService` is the facade: ``/volumes*`` call it, and the container
service uses it to make, mount and release a container's volumes.
"""

from __future__ import annotations

import json
import re
import secrets
import stat
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Protocol

from ...driverkit.fdwalk import Tree
from ...errors import Conflict, InvalidParameter, NotFound
from ...hookspecs.volume import VolumeError
from ..filters import label_match

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
NAME_RULE = '"[a-zA-Z0-9][a-zA-Z0-9_.-]"'


class VolumeNotFound(NotFound):
    pass


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def new_name() -> str:
    """An anonymous volume's name: 64 hex digits, as Docker's."""
    return secrets.token_hex(32)


def tree_size(path: str) -> int:
    """Bytes of everything but directories below ``path`` (hard links once), as
    Docker counts.  Containers write the volume meanwhile: it is walked by fds
    (:mod:`dockyard.driverkit.fdwalk`), never through a directory swapped for a symlink."""
    total, seen = 0, set()
    try:
        with Tree(path) as tree:
            for entry in tree.walk():
                st = entry.st
                if stat.S_ISDIR(st.st_mode):
                    continue
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    except OSError:  # what could be read counts (os.walk's way)
        pass
    return total


LIST_FILTERS = ("dangling", "driver", "label", "name")


class Containers(Protocol):
    """What volumes need of the container records: who uses which volume."""

    def volume_users(self) -> dict[str, list[str]]: ...

    def volumes_in_use(self) -> set[str]: ...


def _dangling(values: list[str]) -> set[bool]:
    wanted = set()
    for v in values:
        if v.lower() in ("true", "1"):
            wanted.add(True)
        elif v.lower() in ("false", "0"):
            wanted.add(False)
        else:
            raise InvalidParameter(f"invalid filter 'dangling={v}'")
    return wanted


class VolumeService:
    """The volumes of one daemon: ``slots`` are the enabled volume drivers (name ->
    plugins.Slot), ``default`` the one a request that names none gets."""

    def __init__(self, store: Any, slots: dict, default: str, containers: Containers,
                 emit: Callable[[str, str, str, dict], None]) -> None:
        self.store = store
        self.slots = slots
        self.default = default
        self.containers = containers
        self.emit = emit
        self.lock = threading.RLock()  # the table: dockyard.schema's

    # ------------------------------------------------------------ records
    def slot(self, driver: str) -> Any:
        try:
            return self.slots[driver]
        except KeyError:
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found '
                           f"(enabled: {', '.join(sorted(self.slots))})") from None

    def all(self) -> list[dict]:
        return [json.loads(r["data"]) for r in self.store.query("SELECT data FROM volumes ORDER BY name")]

    def find(self, name: str | None) -> dict | None:
        row = self.store.one("SELECT data FROM volumes WHERE name=?", name or "")
        return json.loads(row["data"]) if row else None

    def get(self, name: str) -> dict:
        rec = self.find(name)
        if rec is None:
            raise VolumeNotFound(f"get {name}: no such volume")
        return rec

    def view(self, rec: dict) -> dict:
        """Docker's Volume object."""
        out = {k: rec.get(k) for k in ("CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope")}
        if rec.get("Status"):
            out["Status"] = rec["Status"]
        out["UsageData"] = None
        return out

    def inspect(self, name: str) -> dict:
        """``GET /volumes/{name}``: Docker's Volume object."""
        return self.view(self.get(name))

    def matching(self, filters: dict[str, list[str]]) -> Iterator[dict]:
        """``GET /volumes``: the Volume objects matching Docker's filters (checked first)."""
        for key in filters:
            if key not in LIST_FILTERS:
                raise InvalidParameter(f"invalid filter '{key}'")
        dangling = _dangling(filters["dangling"]) if "dangling" in filters else None
        used = self.containers.volumes_in_use() if dangling is not None else set()
        for vol in self.all():
            if "name" in filters and not any(v in vol["Name"] for v in filters["name"]):
                continue
            if "driver" in filters and vol["Driver"] not in filters["driver"]:
                continue
            if dangling is not None and (vol["Name"] not in used) not in dangling:
                continue
            if label_match(vol.get("Labels"), filters.get("label", ())):
                yield self.view(vol)

    # ------------------------------------------------------------ create / remove
    def create(self, name: str | None = None, driver: str | None = None, options: dict | None = None,
               labels: dict | None = None, anonymous: bool = False) -> dict:
        """Create volume ``name`` (a new 64-hex name if empty); an existing volume of
        that name is returned as it is (Docker's idempotent create)."""
        name = name or new_name()
        if not NAME_RE.match(name):
            raise InvalidParameter(f'create {name}: "{name}" includes invalid characters for a local volume name, '
                                   f"only {NAME_RULE} are allowed. If you intended to pass a host directory, "
                                   "use absolute path")
        for what, value in (("DriverOpts", options), ("Labels", labels)):
            if value is not None and not (isinstance(value, dict) and all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
                raise InvalidParameter(f"create {name}: {what} must be an object of strings")
        with self.lock:
            existing = self.find(name)
            if existing is not None:
                if driver and driver != existing["Driver"]:
                    raise Conflict(f"create {name}: a volume with the same name already exists with driver "
                                   f"{existing['Driver']!r}, not {driver!r}: volume name must be unique")
                return existing
            driver = driver or self.default
            slot = self.slot(driver)
            try:
                info = slot.hook.volume_create(name=name, options=dict(options or {})) or {}
            except InvalidParameter as exc:
                raise InvalidParameter(f"create {name}: {exc}") from None
            caps = {}
            try:
                caps = slot.hook.volume_capabilities() or {}
            except Exception:
                pass
            rec = {"Name": name, "Driver": driver, "Mountpoint": info.get("mountpoint") or "",
                   "CreatedAt": _now(), "Labels": labels if labels is not None else ({} if not anonymous else None),
                   "Options": options if options is not None else ({} if not anonymous else None),
                   "Scope": caps.get("scope") or "local", "Status": info.get("status"),
                   "Anonymous": bool(anonymous)}
            try:
                with self.store.tx() as db:
                    db.execute("INSERT INTO volumes(name, driver, data) VALUES (?,?,?)",
                               (name, driver, json.dumps(rec)))
            except BaseException:
                slot.hook.volume_remove(name=name)
                raise
        self.emit("volume", "create", name, {"driver": driver})
        return rec

    def references(self) -> dict[str, list[str]]:
        """Volume name -> ids of the containers whose records name it."""
        return self.containers.volume_users()

    def remove(self, name: str, force: bool = False) -> None:
        """Remove an unused volume; ``force`` ignores a missing one and drops the
        record even when the driver fails."""
        with self.lock:
            rec = self.find(name)
            if rec is None:
                if force:
                    return
                raise VolumeNotFound(f"get {name}: no such volume")
            users = self.references().get(name)
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            try:
                self.slot(rec["Driver"]).hook.volume_remove(name=name)
            except Exception:
                if not force:
                    raise
            with self.store.tx() as db:
                db.execute("DELETE FROM volumes WHERE name=?", (name,))
        self.emit("volume", "destroy", name, {"driver": rec["Driver"]})

    def prune(self, filters: dict | None = None) -> tuple[list[str], int]:
        """Remove every volume no container uses (API 1.41: named ones too) that
        matches the ``label`` filters; return ``(names, bytes reclaimed)``."""
        filters = filters or {}
        for key in filters:
            if key not in ("label", "label!"):
                raise InvalidParameter(f"invalid filter '{key}'")
        removed, reclaimed = [], 0
        with self.lock:
            used = self.references()
            for rec in self.all():
                if rec["Name"] in used or not label_match(rec.get("Labels"), filters.get("label", ()),
                                                          filters.get("label!", ())):
                    continue
                size = self.size(rec)
                try:
                    self.remove(rec["Name"])
                except (Conflict, VolumeError, OSError):
                    continue
                removed.append(rec["Name"])
                reclaimed += max(size, 0)
        self.emit("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return removed, reclaimed

    # ------------------------------------------------------------ use
    def mount(self, name: str, user: str) -> str:
        rec = self.get(name)
        try:
            return self.slot(rec["Driver"]).hook.volume_mount(name=name, id=user)
        except InvalidParameter as exc:
            raise VolumeError(f"mount {name}: {exc}") from None

    def unmount(self, name: str, user: str) -> None:
        rec = self.find(name)
        if rec is not None:
            self.slot(rec["Driver"]).hook.volume_unmount(name=name, id=user)

    def size(self, rec: dict) -> int:
        """Bytes in the volume (-1 when its driver cannot say)."""
        if rec["Driver"] not in self.slots:
            return -1
        user = "size-" + secrets.token_hex(8)
        try:
            path = self.mount(rec["Name"], user)
        except Exception:
            return -1
        try:
            return tree_size(path)
        finally:
            self.unmount(rec["Name"], user)

    def usage(self) -> list[tuple[dict, int, int]]:
        """``[(volume record, size in bytes or -1, number of containers using it)]``
        for ``system df``."""
        used = self.references()
        return [(rec, self.size(rec), len(used.get(rec["Name"], ()))) for rec in self.all()]
