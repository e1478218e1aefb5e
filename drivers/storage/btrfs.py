"""The ``btrfs`` storage driver: every layer is a btrfs subvolume, every child a
snapshot of its parent (Docker's ``btrfs`` graphdriver).

Layout under ``home`` (which must be on btrfs)::

    subvolumes/<id>      layer ``id``: a subvolume (no parent) or a snapshot of
                         ``subvolumes/<parent>``; "mounting" returns this path
    tmp/                 layers being removed (renamed here first, so a crash
                         mid-delete leaves no half layer under ``subvolumes/``)

A snapshot shares all blocks with its parent (copy-on-write), so creating a child
takes the same short time whatever the parent holds.  Nothing is mounted: mount
and unmount only count references (in memory, like ``vfs``).  There is no native
diff: the core's naive fallback walks the trees.

Removing a layer deletes the subvolumes a container created inside its rootfs
first (``btrfs subvolume create`` in a privileged container), after clearing the
read-only flag of the layer and of each of them (a read-only subvolume can neither
be renamed nor have a subvolume inside it deleted), and detaches any mount left
below the layer.

The subvolume calls go through PyPI ``btrfsutil``, imported lazily so that a
machine without it reports why the driver is unusable instead of failing to load.
It must match the system's libbtrfsutil: on Debian 12 (6.2) that is
``btrfsutil<=6.13`` (needs ``libbtrfsutil-dev`` and gcc to build).

Options (``[storage.options.btrfs]``):

``size``
    Quota: the most a layer's whole tree may hold, in bytes or with a binary
    unit (``"10G"``, ``"512m"``).  Like Docker's ``--storage-opt size`` it is a
    qgroup limit on the *referenced* size of the subvolume (what it shares with
    its parent counts too), so a container layer can write at most ``size`` minus
    its image's size; writing more fails with ``EDQUOT`` ("Disk quota exceeded").
    The hooks do not say which layer belongs to a container, so the limit is set
    on every layer created while the option is on: an image whose tree is bigger
    than ``size`` cannot be stored.  Setting it enables btrfs quotas (qgroups) on
    the whole file system holding ``home`` (at daemon start; they stay enabled),
    which costs some write performance.  Off by default.
"""

import ctypes
import errno
import fcntl
import os
import re
import shutil
import struct
import threading
from importlib import metadata
from pathlib import Path

from dockyard.driverkit.ids import check_id, valid_id
from dockyard.driverkit.mounts import MNT_DETACH, backing_fs, mounts_under, umount
from dockyard.driverkit.refcounts import RefCounts
from dockyard.errors import LayerNotFound, StorageError
from dockyard.hookspecs import hookimpl

BTRFS_SUPER_MAGIC = 0x9123683E
PIP_REQUIREMENT = "btrfsutil<=6.13"

# ioctls of linux/btrfs.h (btrfsutil has no quota calls)
_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction, nr, size):
    return (direction << 30) | (size << 16) | (0x94 << 8) | nr


BTRFS_IOC_QUOTA_CTL = _ioc(_IOC_READ | _IOC_WRITE, 40, 16)  # struct btrfs_ioctl_quota_ctl_args
BTRFS_IOC_QGROUP_CREATE = _ioc(_IOC_WRITE, 42, 16)  # struct btrfs_ioctl_qgroup_create_args
BTRFS_IOC_QGROUP_LIMIT = _ioc(_IOC_READ, 43, 48)  # struct btrfs_ioctl_qgroup_limit_args
BTRFS_IOC_QUOTA_RESCAN_WAIT = _ioc(0, 46, 0)
BTRFS_QUOTA_CTL_ENABLE = 1
BTRFS_QGROUP_LIMIT_MAX_RFER = 1 << 0

_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*", re.IGNORECASE)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]

_module = None
_import_lock = threading.Lock()


def _btrfsutil():
    """The ``btrfsutil`` module, imported on first use; ``StorageError`` if missing."""
    global _module
    with _import_lock:
        if _module is None:
            reason = _import_problem()
            if reason:
                raise StorageError(f"btrfs: {reason}")
        return _module


def _import_problem():
    """``None`` if ``btrfsutil`` imports, else a one-line reason."""
    global _module
    if _module is not None:
        return None
    try:
        import btrfsutil
    except ModuleNotFoundError:
        return f"btrfsutil is not installed (pip install '{PIP_REQUIREMENT}')"
    except ImportError as exc:  # e.g. built against a newer libbtrfsutil than the system's
        return f"btrfsutil cannot be imported ({exc}); it must match libbtrfsutil (pip install '{PIP_REQUIREMENT}')"
    _module = btrfsutil
    return None


def _existing(path):
    """``path`` or its nearest existing parent."""
    path = os.path.abspath(str(path))
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    return path


def fs_type(path):
    """statfs(2) ``f_type`` of the file system holding ``path``; raises ``OSError``."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _libc.statfs(os.fsencode(str(path)), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    return ctypes.c_ulong.from_buffer(buf).value & 0xFFFFFFFF  # f_type is the first field


def is_btrfs(path):
    return fs_type(_existing(path)) == BTRFS_SUPER_MAGIC


def parse_size(value):
    """Bytes from an int or a string with an optional binary unit (``"10G"``)."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.fullmatch(value)):
        size = int(float(m.group(1)) * 1024 ** _UNITS[m.group(2).lower()])
    else:
        raise ValueError(value)
    if not 0 < size < 1 << 64:
        raise ValueError(value)
    return size


def _human(size):
    for unit in ("PiB", "TiB", "GiB", "MiB", "KiB"):
        scale = 1024 ** (" KMGTP".index(unit[0]))
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


def _ioctl_dir(path, request, arg):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return fcntl.ioctl(fd, request, arg)
    finally:
        os.close(fd)


def _library_version():
    """Version of the libbtrfsutil shared object this process loaded."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if "/libbtrfsutil.so" in path:
                    name = os.path.basename(os.path.realpath(path))
                    return name.partition(".so.")[2] or name
    except OSError:
        pass
    return "unknown"


def _build_version():
    """Version of the PyPI ``btrfsutil`` binding in use."""
    try:
        return f"btrfsutil {metadata.version('btrfsutil')}"
    except metadata.PackageNotFoundError:
        return "btrfsutil (unknown version)"


class BtrfsDriver:
    def __init__(self):
        self.home = None
        self.size = None
        self.refs = RefCounts()

    # ------------------------------------------------------------ helpers
    def _path(self, id):
        return self.home / "subvolumes" / check_id(id)

    def _fail(self, what, exc):
        detail = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
        return StorageError(f"btrfs: {what} failed: {detail}")

    # ------------------------------------------------------------ lifecycle
    @hookimpl
    def storage_supported(self, home, options):
        where = _existing(home)
        try:
            if fs_type(where) != BTRFS_SUPER_MAGIC:
                return f"{home} is not on btrfs ({backing_fs(where)})"
        except OSError as exc:
            return f"cannot tell the file system of {where}: {exc.strerror}"
        reason = _import_problem()
        if reason:
            return reason
        if os.geteuid() != 0:
            return "the btrfs driver needs root (to delete subvolumes)"
        return None

    @hookimpl
    def storage_init(self, home, options):
        options = dict(options or {})
        size = options.pop("size", None)
        if options:
            raise StorageError(f"btrfs: unknown option(s) {', '.join(sorted(options))} (known: size)")
        if size is not None:
            try:
                size = parse_size(size)
            except (ValueError, OverflowError):
                raise StorageError(f"btrfs option size: {size!r} is not a positive size (bytes, or e.g. \"10G\")") \
                    from None
        home = Path(home).resolve()
        try:
            if not is_btrfs(home):
                raise StorageError(f"btrfs: {home} is not on btrfs ({backing_fs(home)})")
            _btrfsutil()
            self.home = home
            (home / "subvolumes").mkdir(parents=True, exist_ok=True)
            (home / "tmp").mkdir(mode=0o700, exist_ok=True)
            leftovers = list((home / "tmp").iterdir())
        except OSError as exc:
            raise self._fail(f"preparing {home}", exc) from exc
        for leftover in leftovers:  # an interrupted remove; best effort, retried at the next start
            try:
                self._delete(leftover, "leftover " + leftover.name)
            except StorageError:
                pass
        if size is not None:
            self._enable_quota()
        self.size = size

    def _enable_quota(self):
        try:  # idempotent: the kernel returns 0 when quotas are on already
            _ioctl_dir(self.home, BTRFS_IOC_QUOTA_CTL, struct.pack("=QQ", BTRFS_QUOTA_CTL_ENABLE, 0))
            _ioctl_dir(self.home, BTRFS_IOC_QUOTA_RESCAN_WAIT, 0)  # qgroup numbers are right only after it
        except OSError as exc:
            raise StorageError(f"btrfs option size: enabling quotas on {self.home} failed: {exc.strerror}") from exc

    def _limit(self, id, path):
        args = struct.pack("=QQQQQQ", 0, BTRFS_QGROUP_LIMIT_MAX_RFER, self.size, 0, 0, 0)  # qgroup 0: this subvolume
        try:
            _ioctl_dir(path, BTRFS_IOC_QGROUP_LIMIT, args)
        except OSError as exc:
            raise StorageError(f"btrfs: setting the quota of layer {id} failed: {exc.strerror}") from exc

    @hookimpl
    def storage_create(self, id, parent):
        bu = _btrfsutil()
        path = self._path(id)
        if os.path.lexists(path):
            raise StorageError(f"btrfs: layer {id} exists already")
        if parent is not None:
            src = self._path(parent)
            if not src.is_dir():
                raise StorageError(f"btrfs: cannot create layer {id}: parent {parent} not found")
        try:
            if parent is None:
                bu.create_subvolume(path)
            else:
                bu.create_snapshot(src, path)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise StorageError(f"btrfs: layer {id} exists already") from exc
            what = "creating subvolume" if parent is None else f"snapshotting layer {parent} as"
            raise self._fail(f"{what} layer {id}", exc) from exc
        try:
            if parent is None:
                os.chmod(path, 0o755)
            if self.size is not None:
                self._limit(id, path)
        except BaseException as exc:  # nothing may be left behind
            try:
                bu.delete_subvolume(path, recursive=True)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise self._fail(f"creating layer {id}", exc) from exc
            raise

    @hookimpl
    def storage_remove(self, id):
        path = self._path(id)
        if not os.path.lexists(path):
            return
        with self.refs.lock:
            self.refs.forget(id)
        for mp in mounts_under(path):  # left by a container; the core never removes a mounted layer
            try:
                umount(mp, MNT_DETACH)
            except OSError as exc:
                raise StorageError(f"btrfs: unmounting {mp} to remove layer {id} failed: {exc.strerror}") from exc
        bu = _btrfsutil()
        trash = self.home / "tmp" / f"rm-{id}"
        try:
            if bu.is_subvolume(path) and bu.get_subvolume_read_only(path):
                bu.set_subvolume_read_only(path, False)  # a read-only subvolume cannot be renamed
            if os.path.lexists(trash):
                self._delete(trash, f"layer {id}")
            os.rename(path, trash)
        except OSError as exc:
            raise self._fail(f"removing layer {id}", exc) from exc
        self._delete(trash, f"layer {id}")

    def _delete(self, path, what):
        """Delete ``path``: a subvolume with the subvolumes nested in it, or a
        plain directory tree (which may hold subvolumes too)."""
        bu = _btrfsutil()
        path = str(path)
        try:
            if not os.path.isdir(path) or os.path.islink(path):
                os.unlink(path)
                return
            if not bu.is_subvolume(path):
                for dirpath, dirnames, _ in os.walk(path):  # top-down, never into symlinks
                    for name in list(dirnames):
                        sub = os.path.join(dirpath, name)
                        if not os.path.islink(sub) and bu.is_subvolume(sub):
                            self._delete(sub, what)
                            dirnames.remove(name)
                shutil.rmtree(path)
                return
            qgroup = bu.subvolume_id(path)
            # parents first: a subvolume inside a read-only one cannot be deleted
            for rel, _ in bu.SubvolumeIterator(path):
                sub = os.path.join(path, rel)
                if bu.get_subvolume_read_only(sub):
                    bu.set_subvolume_read_only(sub, False)
            if bu.get_subvolume_read_only(path):
                bu.set_subvolume_read_only(path, False)
            bu.delete_subvolume(path, recursive=True)
        except OSError as exc:
            raise self._fail(f"deleting {what}", exc) from exc
        self._drop_qgroup(qgroup)

    def _drop_qgroup(self, subvol_id):
        """Destroy the qgroup a deleted subvolume leaves behind, if quotas are on
        (newer kernels remove it themselves, a busy one stays: both are fine)."""
        try:
            _ioctl_dir(self.home, BTRFS_IOC_QGROUP_CREATE, struct.pack("=QQ", 0, subvol_id))
        except OSError:
            pass

    @hookimpl
    def storage_exists(self, id):
        return valid_id(id) and self.home is not None and (self.home / "subvolumes" / id).is_dir()

    @hookimpl
    def storage_layers(self):
        return [name for name in os.listdir(self.home / "subvolumes") if valid_id(name)]

    # ------------------------------------------------------------ mounts
    @hookimpl
    def storage_mount(self, id):
        path = self._path(id)
        if not path.is_dir():
            raise LayerNotFound(f"btrfs: layer {id} not found")
        self.refs.acquire(id)
        return str(path)

    @hookimpl
    def storage_unmount(self, id):
        check_id(id)
        self.refs.release(id)

    @hookimpl
    def storage_cleanup(self):
        self.refs.clear()

    @hookimpl
    def storage_status(self):
        return [
            ["Backing Filesystem", backing_fs(self.home or "/")],
            ["Build Version", _build_version()],
            ["Library Version", _library_version()],
            ["Quota", f"{_human(self.size)} per layer" if self.size is not None else "off"],
        ]
