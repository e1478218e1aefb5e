"""The ``devicemapper`` storage driver (Docker's devicemapper graphdriver).

Every layer is a thin device in a device-mapper thin-pool, holding a whole
file system; a child layer is a copy-on-write snapshot of its parent's device,
so creating one costs no copying at all.  As in Docker, one *base device* is
made when the pool is new (``create_thin`` + ``mkfs``, with an empty ``rootfs``
directory in it) and every layer without a parent is a snapshot of it: mkfs
runs once per pool, not once per layer.

Layout under ``home``::

    devicemapper/data, devicemapper/metadata   the pool's sparse loop files (loop-lvm)
    metadata/pool.json, base.json              next device id, device-name prefix; base device
    metadata/layers/<id>.json                  {"device_id": n, "size": bytes, "parent": id}
    metadata/transactions/<n>.json             a device being created (rolled back at start-up)
    metadata/mounts/<id>                       the mount reference count, while mounted
    mnt/<id>/                                  the layer's file system, mounted while in use
    mnt/<id>/rootfs/                           what storage_mount returns (lost+found stays out)

Device-mapper names start with ``dockyard-<major>:<minor>-<inode of home>`` (like
Docker's ``docker-8:1-1234-pool``), so several homes can share one kernel:
``<prefix>-pool``, ``<prefix>-base`` and ``<prefix>-<id>``.

The pool is set up by ``storage_init`` (or on first use after ``storage_cleanup``)
and removed, with its loop devices, by ``storage_cleanup``: it is defined only
while the daemon runs.  A layer's device is active only while it is mounted;
snapshotting an active origin suspends it (freezing its file system) around the
``create_snap`` message.  Mounts are reference-counted; a mount left by an
earlier daemon is adopted, never doubled.

There is no native diff: the core's naive fallback mounts the layers and walks them.
Options: see :mod:`dockyard.drivers.storage.dm.options` (``dm.thinpooldev``,
``dm.loopdatasize``, ``dm.basesize``, ``dm.fs``, ...).
"""

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

from dockyard.driverkit.ids import check_id, valid_id
from dockyard.driverkit.mounts import MNT_DETACH, is_mounted, mount, mounts_under, umount
from dockyard.driverkit.refcounts import RefCounts
from dockyard.errors import LayerNotFound, StorageError
from dockyard.hookspecs import hookimpl

from .dm import dmsetup
from .dm.dmsetup import DmError
from .dm.metadata import Store
from .dm.options import human_size, parse_options
from .dm.pool import ThinPool

MKFS = {"ext4": ["mkfs.ext4", "-q", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0"],
        "xfs": ["mkfs.xfs", "-q", "-f", "-K"]}
FS_PACKAGE = {"ext4": "e2fsprogs", "xfs": "xfsprogs"}
RESERVED = ("base", "pool")  # <prefix>-base and <prefix>-pool name the base device and the pool


def _has_device_mapper():
    """``/proc/misc`` lists device-mapper, or ``/dev/mapper/control`` opens (a node
    left by an earlier dmsetup run on a kernel without device-mapper does not)."""
    try:
        with open("/proc/misc") as f:
            if any(line.split()[1:] == ["device-mapper"] for line in f):
                return True
    except OSError:
        pass
    try:
        os.close(os.open("/dev/mapper/control", os.O_RDWR | os.O_CLOEXEC))
        return True
    except OSError:
        return False


def _modprobe(module):
    tool = dmsetup.which("modprobe")
    if tool is None:
        return False
    try:
        return subprocess.run([tool, module], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


class DevicemapperDriver:
    def __init__(self):
        self.home = self.opts = self.store = self.pool = None
        self.prefix = None
        self.refs = RefCounts(lambda id: self.home / "metadata" / "mounts" / id)
        self.lock = self.refs.lock  # one lock for every pool and mount change

    # ------------------------------------------------------------ helpers
    @contextmanager
    def _errors(self, doing, id=None):
        """The one place where tool and OS failures become ``StorageError``s."""
        what = f"devicemapper: {doing}" + (f" {id}" if id else "")
        try:
            yield
        except DmError as exc:
            raise StorageError(f"{what}: {exc.action} {exc.device}: {exc.message}") from exc
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise StorageError(f"{what}: {exc.strerror or exc}{where}") from exc

    def _name(self, id):
        return f"{self.prefix}-{id}"

    @staticmethod
    def _check(id, what="layer id"):
        check_id(id, what)
        if id in RESERVED:
            raise StorageError(f"devicemapper: {what} {id!r} is reserved")
        return id

    def _layer(self, id):
        self._check(id)
        info = self.store.layer(id)
        if info is None:
            raise LayerNotFound(f"devicemapper: layer {id} not found")
        return info

    def _activate(self, name, info):
        """Activate the thin device ``name`` (if it is not) and return its path."""
        if name not in dmsetup.devices():
            self.pool.ensure()
            dmsetup.create(name, self.pool.thin_table(info["device_id"], info["size"]))
        return f"/dev/mapper/{name}"

    def _deactivate(self, name):
        if name in dmsetup.devices():
            dmsetup.remove(name)

    def _mount_opts(self):
        opts = ["nouuid"] if self.opts.fs == "xfs" else []  # every snapshot has its origin's uuid
        if self.opts.mountopt:
            opts.append(self.opts.mountopt)
        return ",".join(opts) or None

    # ------------------------------------------------------------ lifecycle
    @hookimpl
    def storage_supported(self, home, options):
        if os.geteuid() != 0:
            return "devicemapper needs root"
        if not _has_device_mapper():
            _modprobe("dm_mod")
            if not _has_device_mapper():
                return "kernel has no device-mapper (no /dev/mapper/control)"
        if dmsetup.which("dmsetup") is None:
            return "dmsetup not found (apt install dmsetup)"
        try:
            opts = parse_options(options)
        except StorageError:
            opts = None  # storage_init names the bad option
        try:
            if "thin-pool" not in dmsetup.targets():
                _modprobe("dm_thin_pool")
                if "thin-pool" not in dmsetup.targets():
                    return "kernel has no device-mapper thin-pool target (modprobe dm-thin-pool failed)"
        except DmError as exc:
            return f"device-mapper is not usable: {exc.message}"
        if opts is not None and opts.thinpooldev is None:
            if dmsetup.which("losetup") is None:
                return "losetup not found (apt install mount)"
            if not os.path.exists("/dev/loop-control") and not _modprobe("loop"):
                return "kernel has no loop devices (no /dev/loop-control)"
        fs = opts.fs if opts is not None else "ext4"
        if dmsetup.which(MKFS[fs][0]) is None:
            return f"{MKFS[fs][0]} not found (apt install {FS_PACKAGE[fs]})"
        return None

    @hookimpl
    def storage_init(self, home, options):
        opts = parse_options(options)
        self.home = Path(home).resolve()
        self.opts = opts
        self.store = Store(self.home / "metadata")
        with self.lock, self._errors("starting in", str(self.home)):
            self.store.init()
            (self.home / "metadata" / "mounts").mkdir(mode=0o700, exist_ok=True)
            (self.home / "mnt").mkdir(mode=0o700, exist_ok=True)
            pool_info = self.store.pool()
            if "prefix" not in pool_info:
                st = os.stat(self.home)
                pool_info = {**pool_info, "prefix": f"dockyard-{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
                                                    f"-{st.st_ino}"}
                self.store.save_pool(pool_info)
            self.prefix = pool_info["prefix"]
            self.pool = ThinPool(self.home, opts, self.store, self.prefix)
            self.pool.ensure()
            self._rollback()
            self._base()

    def _rollback(self):
        """Delete thin devices whose creation was interrupted before their layer was recorded."""
        base = self.store.base()
        for tx in self.store.pending():
            dev, layer = tx["device_id"], tx.get("layer")
            info = base if layer == "base" else (self.store.layer(layer) if valid_id(layer) else None)
            if not info or info.get("device_id") != dev:
                self.pool.delete(dev)
            self.store.commit(dev)

    def _base(self):
        """The base device every parentless layer is a snapshot of: made once per pool."""
        base = self.store.base()
        if base is not None:
            if self.opts.basesize_set and base["size"] != self.opts.basesize:
                raise StorageError(f"devicemapper option dm.basesize: {human_size(self.opts.basesize)} differs "
                                   f"from the existing base device ({human_size(base['size'])}); it cannot change "
                                   "once the pool has layers")
            if base.get("fs", "ext4") != self.opts.fs:
                raise StorageError(f"devicemapper option dm.fs: {self.opts.fs} differs from the existing base "
                                   f"device ({base.get('fs')})")
            return
        name = self._name("base")
        size = self.opts.basesize
        device_id = self.pool.new_device("base")
        try:
            dev = dmsetup.create(name, self.pool.thin_table(device_id, size))
            try:
                dmsetup.run([*MKFS[self.opts.fs], *self.opts.mkfsarg, dev], "making a file system on", dev)
                mp = self.home / "mnt" / ".base"  # never a layer id (they start alphanumeric)
                mp.mkdir(mode=0o700, exist_ok=True)
                mount(dev, mp, self.opts.fs, 0, self._mount_opts())
                try:
                    os.mkdir(mp / "rootfs", 0o755)
                    os.chmod(mp / "rootfs", 0o755)
                finally:
                    umount(mp)
                mp.rmdir()
            finally:
                dmsetup.remove(name)
            self.store.save_base({"device_id": device_id, "size": size, "fs": self.opts.fs})
        except BaseException:
            self._undo(device_id)
            raise
        self.store.commit(device_id)

    def _undo(self, device_id):
        """Delete a half-made device (best effort: the first error is the one reported)."""
        try:
            self.pool.delete(device_id)
            self.store.commit(device_id)
        except (DmError, OSError):
            pass  # the transaction stays open; the next start rolls it back

    @hookimpl
    def storage_create(self, id, parent):
        self._check(id)
        if parent is not None:
            self._check(parent, "parent id")
        with self.lock, self._errors("creating layer", id):
            if self.store.layer(id) is not None:
                raise StorageError(f"devicemapper: layer {id} exists already")
            if parent is None:
                origin, origin_name = self.store.base(), self._name("base")
            else:
                origin, origin_name = self.store.layer(parent), self._name(parent)
                if origin is None:
                    raise StorageError(f"devicemapper: cannot create layer {id}: parent {parent} not found")
            self.pool.ensure()
            self.pool.check_free_space(self.opts.min_free_percent)
            active = origin_name in dmsetup.devices()
            device_id = self.pool.new_device(id, origin["device_id"], origin_name if active else None)
            try:
                self.store.save_layer(id, {"device_id": device_id, "size": origin["size"], "parent": parent})
            except BaseException:
                self._undo(device_id)
                raise
            self.store.commit(device_id)

    @hookimpl
    def storage_remove(self, id):
        self._check(id)
        with self.lock, self._errors("removing layer", id):
            info = self.store.layer(id)
            mp = self.home / "mnt" / id
            if info is not None:
                if is_mounted(mp):
                    umount(mp)
                self.refs.set(id, 0)
                self.pool.ensure()
                self._deactivate(self._name(id))
                self.pool.delete(info["device_id"])
                self.store.delete_layer(id)
            self.refs.forget(id)
            if mp.is_dir() and not is_mounted(mp):
                shutil.rmtree(mp, ignore_errors=True)

    @hookimpl
    def storage_exists(self, id):
        return valid_id(id) and id not in RESERVED and self.store is not None and self.store.layer(id) is not None

    @hookimpl
    def storage_layers(self):
        """The layers of the metadata (a thin device without one has no id)."""
        return [id for id in self.store.layer_ids() if valid_id(id) and id not in RESERVED]

    @hookimpl
    def storage_metadata(self, id):
        """Docker's devicemapper ``GraphDriver.Data``: the thin device's id in the
        pool, its device-mapper name and its size in bytes (as strings)."""
        info = self._layer(id)
        return {"DeviceId": str(info["device_id"]), "DeviceName": self._name(id), "DeviceSize": str(info["size"])}

    # ------------------------------------------------------------ mounts
    @hookimpl
    def storage_mount(self, id):
        with self.lock, self._errors("mounting layer", id):
            info = self._layer(id)
            mp = self.home / "mnt" / id
            n = self.refs.get(id)
            if not is_mounted(mp):  # a count without a mount is stale
                n = 0
                self.pool.ensure()
                dev = self._activate(self._name(id), info)
                mp.mkdir(mode=0o755, exist_ok=True)
                try:
                    mount(dev, mp, self.opts.fs, 0, self._mount_opts())
                except OSError:
                    self._deactivate(self._name(id))
                    raise
            rootfs = mp / "rootfs"
            if not rootfs.is_dir():  # made in the base device; only a foreign fs lacks it
                rootfs.mkdir(mode=0o755)
            self.refs.set(id, n + 1)  # n == 0 and mounted: adopt an earlier daemon's mount
            return str(rootfs)

    @hookimpl
    def storage_unmount(self, id):
        self._check(id)
        with self.lock, self._errors("unmounting layer", id):
            n = self.refs.get(id)
            if n > 1:
                self.refs.set(id, n - 1)
                return
            mp = self.home / "mnt" / id
            if is_mounted(mp):
                umount(mp)
            self.refs.set(id, 0)
            if self.store.layer(id) is not None:
                self._deactivate(self._name(id))

    @hookimpl
    def storage_cleanup(self):
        if self.pool is None:
            return
        failures = []
        with self.lock:
            for mp in mounts_under(self.home / "mnt"):
                try:
                    umount(mp)
                except OSError:
                    try:
                        umount(mp, MNT_DETACH)
                    except OSError as exc:
                        failures.append(f"unmounting {mp}: {exc.strerror}")
            for count in (self.home / "metadata" / "mounts").glob("*"):
                count.unlink(missing_ok=True)
            self.refs.clear()
            try:
                for name in dmsetup.devices():
                    if name.startswith(self.prefix + "-") and name != self.pool.name:
                        try:
                            dmsetup.remove(name)
                        except DmError as exc:
                            failures.append(f"{exc.action} {name}: {exc.message}")
                if not failures:
                    self.pool.deactivate()
            except DmError as exc:
                failures.append(f"{exc.action} {exc.device}: {exc.message}")
        if failures:
            raise StorageError("devicemapper: cleanup failed: " + "; ".join(failures))

    # ------------------------------------------------------------ status
    @hookimpl
    def storage_status(self):
        if self.pool is None:
            return [["Pool Name", "(not initialised)"]]
        base = self.store.base() or {}
        status = [["Pool Name", self.pool.name],
                  ["Pool Blocksize", human_size(self.pool.block_bytes)],
                  ["Base Device Size", human_size(base.get("size", self.opts.basesize))],
                  ["Backing Filesystem", self.opts.fs],
                  ["Udev Sync Supported", str(dmsetup.udev_running()).lower()]]
        with self.lock, self._errors("reading the status of", self.pool.name):
            self.pool.ensure()
            if self.pool.owned:
                loops = [(dmsetup.loop_of(p) or ["?"])[0] for p in (self.pool.data_file, self.pool.meta_file)]
                status += [["Data file", loops[0]], ["Metadata file", loops[1]],
                           ["Data loop file", str(self.pool.data_file)],
                           ["Metadata loop file", str(self.pool.meta_file)]]
            use = self.pool.usage()
        for kind, label in (("data", "Data"), ("meta", "Metadata")):
            total, used = use[f"{kind}_total"], use[f"{kind}_used"]
            status += [[f"{label} Space Used", human_size(used)], [f"{label} Space Total", human_size(total)],
                       [f"{label} Space Available", human_size(total - used)]]
        minimum = use["data_total"] * self.opts.min_free_percent / 100
        status += [["Thin Pool Minimum Free Space", human_size(minimum)],
                   ["Thin Pool Mode", use["mode"] + (" (needs_check)" if use["needs_check"] else "")],
                   ["Layers", str(len(self.store.layer_ids()))]]
        return status
