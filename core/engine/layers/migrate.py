"""Moving a data root's layers to another storage driver (``dockyard storage migrate``).

Every image layer (parents first) and every container's writable layer is copied
from the active (*source*) driver to the *target* driver -- under the same driver
id, so the metadata needs no change -- by its diff and ``storage_apply_diff``, and
verified:

* an image layer by its **diff ID**: the original layer tar is rebuilt from the
  source layer and its tar-split record (:mod:`dockyard.driverkit.tarsplit`), which must
  hash to the stored diff ID, and applied to the target; the tar rebuilt from the
  target must hash to the diff ID too.  (A layer registered before tar-split
  records existed is verified like a container layer.)
* a container layer (it has no diff ID) by its **canonical diff** -- the core's
  naive diff, which depends only on the two trees -- whose digest must be the same
  on both drivers.

Progress is kept in the metadata store (table ``storage_migration``, meta key
``storage_migration``).  An interrupted migration (error, crash, SIGKILL) is
resumed by running it again: layers already copied and verified are skipped (a
container layer only while its source digest is unchanged); a half-made target
layer is removed and made again.  Until the switch the source driver's data is
untouched and the data root is *pinned* to it (meta key ``storage_driver``), so a
daemon started meanwhile keeps using it.

The switch is one transaction: the pin names the target (the daemon honours the
pin over ``plugins.toml`` and "prior state wins" (:func:`dockyard.plugins.choose`), and refuses a
``--storage-driver`` naming another driver), and container records name it.
Only then are the source driver's layers removed and its home deleted -- or kept
with ``keep_old``.  :meth:`Migration.abort` undoes an unfinished migration.

Refused while a container runs or is paused (naming them), and offline while a
daemon uses the data root (:func:`daemons_using`).
"""

import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ...errors import Conflict, DriverUnsupported, InvalidParameter, NotFound, StorageError
from ... import plugins

META_PIN = plugins.PIN_KEY
META_STATE = "storage_migration"
LOCK_NAME = ".storage-migrate.lock"


def daemons_using(data_root):
    """Pids of running ``dockyard daemon`` processes whose data root is ``data_root``."""
    want, found = os.path.realpath(data_root), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
        except OSError:
            continue
        is_daemon = "dockyard.daemon.main" in argv or any(
            os.path.basename(a) == "dockyard" and "daemon" in argv[i + 1:] for i, a in enumerate(argv))
        if not is_daemon or int(pid) == os.getpid():
            continue
        root = "/var/lib/dockyard"
        for i, arg in enumerate(argv):
            if arg == "--data-root" and i + 1 < len(argv):
                root = argv[i + 1]
            elif arg.startswith("--data-root="):
                root = arg.split("=", 1)[1]
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = "/"
        if os.path.realpath(os.path.join(cwd, root)) == want:
            found.append(int(pid))
    return found


def holds_data(home):
    """``True`` if a driver home holds more than empty skeleton directories."""
    home = Path(home)
    if not home.is_dir():
        return False
    for path in home.rglob("*"):
        if path.is_symlink() or not path.is_dir() or len(path.relative_to(home).parts) >= 2:
            return True
    return False


def _mounts_under(path):
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(prefix)]


def _delete_home(home):
    if _mounts_under(home):
        raise StorageError(f"not deleting {home}: something is still mounted below it")
    shutil.rmtree(home, ignore_errors=False)


@contextmanager
def _mounted(hook, id):
    path = hook.storage_mount(id=id)
    try:
        yield path
    finally:
        hook.storage_unmount(id=id)


def _with_naive(slot):
    from ...driverkit.naivediff import NaiveDiff

    if slot.pm.get_plugin("naive-diff") is None:
        slot.pm.register(NaiveDiff(slot.hook), name="naive-diff")
    return slot


class Migration:
    """Moves the layers recorded in ``store`` from slot ``source`` (initialised) to
    the storage driver named ``target``, whose home is ``home_root/target``.

    ``progress(dict)`` receives Docker-style progress messages (``status``, and
    ``id``/``progressDetail`` per layer); ``fault(point, id)`` is called at
    ``"applied"`` (a layer applied, not yet verified), ``"switching"`` and
    ``"removing"`` (an old layer, after the switch), so tests can interrupt there.
    """

    def __init__(self, store, source, target, *, home_root, options=None, config_source="<config>",
                 keep_old=False, progress=None, fault=None, on_switch=None):
        self.store, self.source, self.target_name = store, source, target
        self.home_root, self.options = Path(home_root), dict(options or {})
        self.config_source, self.keep_old = config_source, keep_old
        self.progress = progress or (lambda msg: None)
        self.fault = fault or (lambda point, id: None)
        self.on_switch = on_switch or (lambda slot: None)
        self.target = None  # the tables: dockyard.schema's

    # ------------------------------------------------------------ state
    def state(self):
        raw = self.store.get_meta(META_STATE)
        return json.loads(raw) if raw else None

    def _set_state(self, db, state):
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (META_STATE, json.dumps(state)))

    def _emit(self, status, **extra):
        self.progress({"status": status, **extra})

    def _containers(self):
        """``{"Id", "Name", "_top", "busy"}`` of every container (its record's fields;
        ``_top``: the layer chain its layer is on, kept even if its image is gone)."""
        return [{"Id": r["id"], "Name": r["name"], "_top": r["top_layer"], "busy": bool(r["busy"])}
                for r in self.store.query(
                    "SELECT id, name, top_layer, (data ->> '$.state.running' OR data ->> '$.state.paused') AS busy "
                    "FROM containers ORDER BY id")]

    def _layers(self):
        rows = {r["chain_id"]: r for r in self.store.query("SELECT * FROM layers")}
        depth = {}

        def d(chain):
            if chain not in depth:
                parent = rows[chain]["parent"]
                depth[chain] = 0 if parent is None else d(parent) + 1
            return depth[chain]

        return sorted(rows.values(), key=lambda r: (d(r["chain_id"]), r["chain_id"]))

    # ------------------------------------------------------------ checks
    def check(self):
        """Refuse, before anything is written, what cannot be migrated."""
        state = self.state()
        if state and state["to"] != self.target_name:
            raise Conflict(f"a storage migration from {state['from']} to {state['to']} is unfinished: run it "
                           f"again with --to {state['to']} to finish it, or abort it with --abort")
        if state is None and self.target_name == self.source.name:
            raise InvalidParameter(f"the layers are already kept by storage driver {self.target_name}")
        if self.target_name not in plugins.installed("storage"):
            raise InvalidParameter(f"unknown storage driver {self.target_name!r} "
                                   f"(choices: {', '.join(plugins.installed('storage'))})")
        busy = [c["Name"] for c in self._containers() if c["busy"]]
        if busy:
            raise Conflict(f"cannot migrate storage while containers are running: {', '.join(busy)}; "
                           "stop them first")
        home = self.home_root / self.target_name
        if (state is None or state.get("phase") == "copy") and self.target is None:
            slot = plugins.load_driver("storage", self.target_name, home,
                                       self.options.get(self.target_name, {}), self.config_source)
            reason = slot.supported()
            if reason is not None:
                raise DriverUnsupported("storage", self.target_name, reason)
            if state is None and holds_data(home):
                raise Conflict(f"{home} already holds data (left by an earlier --keep-old migration?); "
                               "remove it first")
            self.target = slot
        return state

    # ------------------------------------------------------------ run
    def run(self):
        """Migrate (or resume, or finish the cleanup); return the target's name."""
        state = self.check()
        if state is None:
            previous = self.store.get_meta(META_PIN)
            state = {"from": self.source.name, "to": self.target_name, "phase": "copy", "keep_old": self.keep_old,
                     "previous_pin": previous, "started": datetime.now(timezone.utc).isoformat()}
            with self.store.tx() as db:
                self._set_state(db, state)
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (META_PIN, self.source.name))
        self.keep_old = self.keep_old or state.get("keep_old", False)
        if state["phase"] == "copy":
            self.target.init()
            _with_naive(self.target)
            _with_naive(self.source)
            self._copy()
            self._switch(state)
        self._cleanup()
        self._emit(f"Done: the storage driver is {self.target_name}", driver=self.target_name)
        return self.target_name

    def _copy(self):
        layers, containers = self._layers(), self._containers()
        total = len(layers) + len(containers)
        self._emit(f"Migrating storage from {self.source.name} to {self.target_name}: "
                   f"{len(layers)} image layers, {len(containers)} containers",
                   layers=len(layers), containers=len(containers))
        keep = {r["driver_id"] for r in layers} | {c["Id"] for c in containers}
        for row in self.store.query("SELECT driver_id FROM storage_migration"):
            if row["driver_id"] not in keep:  # removed since an interrupted run
                self._forget(row["driver_id"])
        by_chain = {r["chain_id"]: r for r in layers}
        children = {}
        for r in layers:
            children.setdefault(r["parent"], []).append(r["driver_id"])
        for c in containers:
            children.setdefault(c["_top"], []).append(c["Id"])
        n = 0
        for row in layers:
            n += 1
            parent = by_chain[row["parent"]]["driver_id"] if row["parent"] else None
            self._one(row["driver_id"], parent, "layer", row, children, n, total,
                      row["chain_id"].removeprefix("sha256:")[:12])
        for c in containers:
            n += 1
            parent = by_chain[c["_top"]]["driver_id"] if c["_top"] else None
            self._one(c["Id"], parent, "container", None, children, n, total, c["Name"])

    def _done(self, did):
        return self.store.one("SELECT * FROM storage_migration WHERE driver_id=?", did)

    def _forget(self, did):
        self.target.hook.storage_remove(id=did)
        with self.store.tx() as db:
            db.execute("DELETE FROM storage_migration WHERE driver_id=?", (did,))

    def _reset(self, did, children, by_parent_chain):
        """Remove ``did`` and (deepest first) what was built on it from the target."""
        for kid in children.get(by_parent_chain, ()):
            chain = self.store.one("SELECT chain_id FROM layers WHERE driver_id=?", kid)
            self._reset(kid, children, chain["chain_id"] if chain else "")  # containers have no children
        if self.target.hook.storage_exists(id=did) or self._done(did):
            self._forget(did)

    def _one(self, did, parent, kind, row, children, n, total, name):
        detail = {"id": name, "progressDetail": {"current": n, "total": total}, "kind": kind}
        split = self._tar_split(row["chain_id"]) if row is not None else None
        done = self._done(did)
        source_tar = None
        if row is None or split is None:
            source_tar = self._canonical(self.source.hook, did, parent)
        if done and self.target.hook.storage_exists(id=did) and (
                source_tar is None or done["digest"] == source_tar[1]):
            if source_tar:
                source_tar[0].close()
            self._emit(f"[{n}/{total}] {kind} {name}: already copied", **detail)
            return
        self._reset(did, children, row["chain_id"] if row is not None else "")
        self.target.hook.storage_create(id=did, parent=parent)
        try:
            if split is not None:
                digest, how = self._copy_exact(did, parent, split, row["diff_id"]), "diff ID"
            else:
                digest, how = self._copy_tree(did, parent, source_tar), "tree"
        except BaseException:
            self.target.hook.storage_remove(id=did)
            raise
        with self.store.tx() as db:
            db.execute("INSERT OR REPLACE INTO storage_migration(driver_id, kind, digest, verified) VALUES (?,?,?,?)",
                       (did, kind, digest, how))
        self._emit(f"[{n}/{total}] {kind} {name}: copied, {how} verified", **detail)

    def _tar_split(self, chain):
        row = self.store.one("SELECT data FROM layer_tarsplit WHERE chain_id=?", chain)
        return bytes(row["data"]) if row else None

    def _copy_exact(self, did, parent, split, diff_id):
        from ...driverkit.tarsplit import TarSplitReader

        with _mounted(self.source.hook, did) as root, TarSplitReader(split, root) as reader:
            self.target.hook.storage_apply_diff(id=did, parent=parent, stream=reader)
            got = reader.drain()
        if got != diff_id:
            raise StorageError(f"layer {did}: the {self.source.name} copy no longer gives its diff ID {diff_id} "
                               f"(got {got}): its content changed; nothing was switched")
        self.fault("applied", did)
        with _mounted(self.target.hook, did) as root, TarSplitReader(split, root) as reader:
            got = reader.drain()
        if got != diff_id:
            raise StorageError(f"layer {did}: the {self.target_name} copy gives {got}, not its diff ID {diff_id}")
        return diff_id

    def _canonical(self, hook, did, parent):
        """``(rewound spool, digest)`` of the canonical diff of ``did``."""
        from ...driverkit.naivediff import NaiveDiff

        out = NaiveDiff(hook).storage_diff(id=did, parent=parent)
        digest = hashlib.sha256()
        while chunk := out.read(1 << 20):
            digest.update(chunk)
        out.seek(0)
        return out, "sha256:" + digest.hexdigest()

    def _copy_tree(self, did, parent, source_tar):
        tar, want = source_tar
        with tar:
            self.target.hook.storage_apply_diff(id=did, parent=parent, stream=tar)
        self.fault("applied", did)
        copy, got = self._canonical(self.target.hook, did, parent)
        copy.close()
        if got != want:
            raise StorageError(f"layer {did}: the {self.target_name} copy differs from the {self.source.name} "
                               f"one (canonical diff {got}, expected {want})")
        return want

    def _switch(self, state):
        self.fault("switching", None)
        with self.store.tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (META_PIN, self.target_name))
            # the records' storage driver (ContainerRecord.driver), set in the stored JSON
            db.execute("UPDATE containers SET data = json_set(data, '$.driver', ?)", (self.target_name,))
            self._set_state(db, {**state, "phase": "cleanup"})
        self._emit(f"Switched to storage driver {self.target_name}", driver=self.target_name)
        self.on_switch(self.target)

    def _cleanup(self):
        home = self.home_root / self.source.name
        ids = [r["driver_id"] for r in self.store.query("SELECT driver_id FROM storage_migration")]
        if self.keep_old:
            self.source.hook.storage_cleanup()
            self._emit(f"Kept the {self.source.name} layers in {home}")
        else:
            depth = {r["driver_id"]: i for i, r in enumerate(self._layers())}
            for did in sorted(ids, key=lambda i: -depth.get(i, len(depth))):  # containers, then top down
                self.fault("removing", did)
                self.source.hook.storage_remove(id=did)
            self.source.hook.storage_cleanup()
            if home.exists():
                _delete_home(home)
            self._emit(f"Removed the {self.source.name} layers ({home})")
        with self.store.tx() as db:
            db.execute("DELETE FROM storage_migration")
            db.execute("DELETE FROM meta WHERE key=?", (META_STATE,))

    # ------------------------------------------------------------ abort
    def abort(self):
        """Undo an unfinished migration: remove the target's layers, restore the pin."""
        state = self.state()
        if state is None:
            raise NotFound("no storage migration to abort")
        if state["phase"] != "copy":
            raise Conflict(f"the migration to {state['to']} has switched already: finish it (run it again) "
                           f"and migrate back with --to {state['from']} if you want")
        self.target_name = state["to"]
        self.check()
        self.target.init()
        ids = [r["driver_id"] for r in self._layers()] + [c["Id"] for c in self._containers()]
        for did in reversed(ids):
            self.target.hook.storage_remove(id=did)
        self.target.hook.storage_cleanup()
        home = self.home_root / self.target_name
        if home.exists():
            _delete_home(home)
        with self.store.tx() as db:
            if state.get("previous_pin"):
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (META_PIN, state["previous_pin"]))
            else:
                db.execute("DELETE FROM meta WHERE key=?", (META_PIN,))
            db.execute("DELETE FROM storage_migration")
            db.execute("DELETE FROM meta WHERE key=?", (META_STATE,))
        self._emit(f"Aborted the migration to {self.target_name}; the storage driver is {self.source.name}")


def source_slot(state, current, home_root, options, config_source):
    """The slot to migrate from: ``current`` (the active one), unless an unfinished
    migration already switched away from another driver (then that one, initialised)."""
    if state is None or state["from"] == current.name:
        return current
    slot = plugins.load_driver("storage", state["from"], os.path.join(home_root, state["from"]),
                               options.get(state["from"], {}), config_source)
    slot.init()
    return slot


@contextmanager
def migration_lock(data_root):
    """Hold the data root's migration lock (one migration at a time)."""
    fd = os.open(os.path.join(data_root, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(f"another storage migration of {data_root} is running") from None
        yield
    finally:
        os.close(fd)
