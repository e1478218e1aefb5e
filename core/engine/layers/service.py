"""The storage service: what clients ask of the layers' storage as a whole.

* ``POST /dockyard/storage/migrate`` (through the daemon): :meth:`StorageService.plan_migration`
  checks a migration and returns the job that runs it; the switch swaps the
  active driver in place (:meth:`~.store.LayerStore.use`), wrappers included, so
  no restart is needed;
* ``dockyard storage migrate --data-root`` (no daemon): :func:`migrate_offline`,
  the same migration on a data root no daemon uses;
* ``/info``: the active driver's name and status.

The layer store (:mod:`.store`) and the content store (:mod:`.content`) are the
collaborators the image, container and registry services get; this facade is
what the front ends call.
"""

from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager
from typing import Any, Callable

from ... import plugins
from ...errors import Conflict, InvalidParameter, NotFound
from .migrate import META_STATE, Migration, daemons_using, migration_lock, source_slot
from .store import LayerStore

Progress = Callable[[dict], None]


class StorageService:
    """The layers' storage of one daemon: its driver, and moving to another one.

    ``options`` are ``plugins.toml``'s storage options (driver name -> dict),
    ``config_source`` names the file in errors."""

    def __init__(self, layers: LayerStore, data_root: str, options: dict, config_source: str) -> None:
        self.layers = layers
        self.store = layers.store
        self.data_root = data_root
        self.options = options
        self.config_source = config_source

    @property
    def driver_name(self) -> str:
        return self.layers.driver_name

    def driver_status(self) -> list[list[str]]:
        """The driver's ``[[key, value]]`` (``docker info``'s DriverStatus)."""
        return [list(pair) for pair in self.layers.status()]

    def layer_count(self) -> int:
        return self.layers.count()

    def migration_lock(self) -> AbstractContextManager[None]:
        """The data root's migration lock (one migration at a time; Conflict if held)."""
        return migration_lock(self.data_root)

    def plan_migration(self, to: str | None, keep_old: bool = False, abort: bool = False,
                       progress: Progress | None = None) -> Callable[[], Any]:
        """Check a migration to driver ``to`` (or the ``abort`` of an unfinished
        one) before anything is written; return the job that runs it.  Hold
        :meth:`migration_lock` from this call to the job's end."""
        if not to and not abort:
            raise InvalidParameter("to: name the storage driver to move the layers to")
        raw = self.store.get_meta(META_STATE)
        state = json.loads(raw) if raw else None
        if not to and state is None:
            raise NotFound("no storage migration to abort")
        home_root = os.path.join(self.data_root, "storage")
        source = source_slot(state, self.layers.slot, home_root, self.options, self.config_source)
        mig = Migration(self.store, source, to or (state or {}).get("to"), home_root=home_root,
                        options=self.options, config_source=self.config_source, keep_old=keep_old,
                        progress=progress, on_switch=self._switch)
        if to or state:
            mig.check()
        return mig.abort if abort else mig.run

    def _switch(self, slot: plugins.Slot) -> None:
        """The migration switched: ``slot`` is the active driver from now on."""
        plugins.adopt_wrappers(self.layers.slot, slot)
        self.layers.use(slot)


def migrate_offline(data_root: str, to: str | None = None, *, config_path: str | None = None,
                    keep_old: bool = False, abort: bool = False, progress: Progress | None = None,
                    fault: Callable[[str, str | None], None] | None = None) -> Any:
    """Migrate ``data_root`` to driver ``to`` (or ``abort``) with no daemon running
    (``dockyard storage migrate --data-root``); returns the driver it ends with."""
    from ...config import load
    from ...store import Store

    data_root = os.path.abspath(data_root)
    if not os.path.exists(os.path.join(data_root, "dockyard.db")):
        raise NotFound(f"no Dockyard data in {data_root}")
    pids = daemons_using(data_root)
    if pids:
        raise Conflict(f"a daemon (pid {', '.join(map(str, pids))}) uses {data_root}: migrate through it "
                       "(drop --data-root) or stop it first")
    config = load(config_path)
    home_root = os.path.join(data_root, "storage")
    store = Store(os.path.join(data_root, "dockyard.db"))
    try:
        with migration_lock(data_root):
            raw = store.get_meta(META_STATE)
            state = json.loads(raw) if raw else None
            options = config.options.get("storage", {})
            current, = plugins.choose("storage", config, data_root)
            source = source_slot(state, current, home_root, options, config.source)
            if source is current:
                source.init()
            mig = Migration(store, source, to or (state or {}).get("to"), home_root=home_root, options=options,
                            config_source=config.source, keep_old=keep_old, progress=progress, fault=fault)
            if abort:
                return mig.abort()
            if not to:
                raise InvalidParameter("name the storage driver to migrate to (--to NAME)")
            return mig.run()
    finally:
        store.close()
