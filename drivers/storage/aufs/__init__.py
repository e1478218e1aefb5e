"""The ``aufs`` storage driver (Docker's aufs graphdriver layout).

Layout under ``home``::

    diff/<id>/     the layer's own content: the aufs branch of the layer
    layers/<id>    the ids of the layer's ancestors, one per line, nearest first
                   (empty for a layer without parent)
    mnt/<id>/      the mount point of the union
    refs/<id>      the mount reference count, while mounted
    tmp/           layers being created or removed (emptied at init)

A layer exists when both ``layers/<id>`` and ``diff/<id>`` do; create writes
everything in ``tmp/`` and renames ``diff/<id>`` into place last, remove renames
it away first, so a crash leaves only pieces that :func:`storage_init` removes.

A layer without parent is "mounted" by returning its ``diff`` directory; any other
is an aufs mount at ``mnt/<id>`` with the options
``br:<diff/id>=rw:<diff/parent>=ro+wh:...,dio,xino=/dev/shm/aufs.xino`` (the
writable branch first, then the ancestors nearest first).  mount(2) takes at most
one page of options, so like Docker the first mount carries as many branches as
fit and the rest are added one by one, in order, with ``MS_REMOUNT`` and
``append:<dir>=ro+wh`` (see :func:`mount_plan`).  Mounts are reference-counted in
memory and in ``refs/<id>``; a mount found in ``/proc/self/mountinfo`` (left by an
earlier daemon) is adopted, never doubled.

Whiteouts are stored natively, as aufs does (``.wh.<name>`` files, a
``.wh..wh..opq`` marker): these are the OCI names, so apply_diff stores a tar's
whiteout entries as files and diff emits them as they are.  Native diff,
apply_diff, changes and size work on the diff directories without mounting
(:mod:`.branches`: a branch on disk, its whiteouts and the view of the branches
below it), whenever ``parent`` is the layer's own parent; otherwise they return
``None`` and the core's naive fallback runs.

This module is the driver: the layout, the lifecycle, the mounts and the hooks.

No options.  Needs root and a kernel with aufs (``modprobe aufs`` is tried).
"""

import os
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

from dockyard.driverkit.ids import check_id, valid_id
from dockyard.driverkit.mounts import MNT_DETACH, backing_fs, is_mounted, mount, mounts_under, umount
from dockyard.driverkit.naivediff import changes_size
from dockyard.driverkit.refcounts import RefCounts
from dockyard.driverkit.safetar import TarWriter, extract, spool
from dockyard.errors import LayerNotFound, StorageError
from dockyard.hookspecs import hookimpl

from .branches import AufsWhiteouts, BranchView, branch_changes, write_branch

PAGE = os.sysconf("SC_PAGE_SIZE")
MS_REMOUNT = 32
FILESYSTEMS = "/proc/filesystems"
XINO = "/dev/shm/aufs.xino"
#: aufs cannot use these as the file system of its branches (Docker's list)
UNSUPPORTED_FS = ("aufs", "btrfs")
#: the default of aufs' CONFIG_AUFS_BRANCH_MAX_*; only used in error messages
BRANCH_MAX = 127
#: characters aufs' option parser would split a branch path at
BAD_PATH_CHARS = ":,="
DIRS = ("diff", "layers", "mnt", "refs", "tmp")
_MOUNT_LOCK = threading.Lock()  # Docker serialises aufs mount(2) calls too


# ---------------------------------------------------------------- kernel support
def has_aufs():
    try:
        with open(FILESYSTEMS) as f:
            return any(line.split()[-1:] == ["aufs"] for line in f)
    except OSError:
        return False


def modprobe():
    """Try to load the aufs module, quietly."""
    try:
        subprocess.run(["modprobe", "aufs"], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pass


# ---------------------------------------------------------------- mount options
def mount_plan(rw, ro, options=f"dio,xino={XINO}", page=None):
    """The mount(2) calls that build the union of branch ``rw`` (writable) over
    ``ro`` (read-only, nearest first): ``[(flags, data), ...]``.

    The first call mounts ``br:<rw>=rw:<ro0>=ro+wh:...,<options>`` with as many
    read-only branches as fit in one page (with its NUL); every remaining branch
    is then appended at the bottom, in order, by ``(MS_REMOUNT, "append:<dir>=ro+wh")``.
    ``page`` defaults to the system's page size.
    """
    rw, ro = os.fspath(rw), [os.fspath(b) for b in ro]
    limit = (page or PAGE) - 1
    tail = f",{options}" if options else ""
    data = f"br:{rw}=rw"
    if len(os.fsencode(data + tail)) > limit:
        raise StorageError(f"aufs: branch path {rw} is too long for the mount options")
    used, index = len(os.fsencode(data + tail)), 0
    while index < len(ro):
        part = f":{ro[index]}=ro+wh"
        if used + len(os.fsencode(part)) > limit:
            break
        data += part
        used += len(os.fsencode(part))
        index += 1
    plan = [(0, data + tail)]
    for branch in ro[index:]:
        append = f"append:{branch}=ro+wh"
        if len(os.fsencode(append)) > limit:
            raise StorageError(f"aufs: branch path {branch} is too long for the mount options")
        plan.append((MS_REMOUNT, append))
    return plan
# ---------------------------------------------------------------- the driver
class AufsDriver:
    def __init__(self):
        self.home = None
        self.refs = RefCounts(lambda id: self.home / "refs" / id)

    # ------------------------------------------------------------ helpers
    def _diff(self, id):
        return self.home / "diff" / check_id(id)

    def _layer(self, id):
        if not self.storage_exists(check_id(id)):
            raise LayerNotFound(f"aufs: layer {id} not found")
        return self._diff(id)

    def _ancestors(self, id):
        """The ids of the layer's ancestors, nearest first."""
        try:
            text = (self.home / "layers" / check_id(id)).read_text()
        except FileNotFoundError:
            raise LayerNotFound(f"aufs: layer {id} not found") from None
        except OSError as exc:
            raise StorageError(f"aufs: reading the ancestors of layer {id} failed: {exc}") from exc
        return [line.strip() for line in text.splitlines() if line.strip()]

    def _direct(self, id, parent):
        """``True`` if ``parent`` is the layer's own parent (native ops apply)."""
        self._layer(id)
        ancestors = self._ancestors(id)
        if parent is None:
            return not ancestors
        return bool(ancestors) and ancestors[0] == parent

    def _lower(self, id):
        """A view of the layer's parent tree made from the ancestors' branches."""
        return BranchView([self.home / "diff" / a for a in self._ancestors(id)])

    def _discard(self, id):
        """Remove whatever is left of layer ``id`` (no mount may remain)."""
        trash = Path(tempfile.mkdtemp(prefix=f"rm-{id}-", dir=self.home / "tmp"))
        try:
            for sub in ("diff", "mnt"):
                try:
                    os.rename(self.home / sub / id, trash / sub)
                except FileNotFoundError:
                    pass
            for sub in ("layers", "refs"):
                (self.home / sub / id).unlink(missing_ok=True)
        finally:
            shutil.rmtree(trash, ignore_errors=True)

    # ------------------------------------------------------------ lifecycle
    @hookimpl
    def storage_supported(self, home, options):
        if not has_aufs():
            if os.geteuid() == 0:
                modprobe()
            if not has_aufs():
                return "kernel has no aufs"
        if os.geteuid() != 0:
            return "aufs needs root to mount"
        fs = backing_fs(home)
        if fs in UNSUPPORTED_FS:
            return f"{home} is on {fs}, which cannot hold aufs branches"
        return None

    @hookimpl
    def storage_init(self, home, options):
        if options:
            raise StorageError(f"aufs: unknown option(s) {', '.join(sorted(options))} (aufs has no options)")
        home = Path(home).resolve()
        bad = sorted({c for c in str(home) if c in BAD_PATH_CHARS})
        if bad:
            raise StorageError(f"aufs: home {home} contains {' '.join(bad)}, which aufs mount options cannot carry")
        self.home = home
        try:
            for sub in DIRS:
                (home / sub).mkdir(parents=True, exist_ok=True)
            for leftover in (home / "tmp").iterdir():  # interrupted create/remove
                shutil.rmtree(leftover, ignore_errors=True)
            for sub in ("layers", "refs", "diff", "mnt"):  # pieces of those
                for name in os.listdir(home / sub):
                    if not valid_id(name) or self.storage_exists(name):
                        continue
                    if is_mounted(home / "mnt" / name):
                        umount(home / "mnt" / name, MNT_DETACH)
                    self._discard(name)
        except OSError as exc:
            raise StorageError(f"aufs: preparing {home} failed: {exc}") from exc

    @hookimpl
    def storage_create(self, id, parent):
        check_id(id)
        if self.storage_exists(id):
            raise StorageError(f"aufs: layer {id} exists already")
        ancestors = []
        if parent is not None:
            check_id(parent, "parent id")
            if not self.storage_exists(parent):
                raise StorageError(f"aufs: cannot create layer {id}: parent {parent} not found")
            ancestors = [parent] + self._ancestors(parent)
        try:
            self._discard(id)  # stale pieces of an interrupted create or remove
            stage = Path(tempfile.mkdtemp(prefix=f"{id}-", dir=self.home / "tmp"))
        except OSError as exc:
            raise StorageError(f"aufs: creating layer {id} failed: {exc}") from exc
        done = []
        try:
            diff = stage / "diff"
            diff.mkdir()
            if parent is not None:  # the child starts as an exact copy: same root dir
                st = os.stat(self.home / "diff" / parent)
                os.chown(diff, st.st_uid, st.st_gid)
                os.chmod(diff, stat.S_IMODE(st.st_mode))
                os.utime(diff, ns=(st.st_atime_ns, st.st_mtime_ns))
            else:
                os.chmod(diff, 0o755)
            (stage / "layers").write_text("".join(f"{a}\n" for a in ancestors))
            (self.home / "mnt" / id).mkdir(0o755)
            done.append(self.home / "mnt" / id)
            os.rename(stage / "layers", self.home / "layers" / id)
            done.append(self.home / "layers" / id)
            os.rename(diff, self.home / "diff" / id)  # the layer exists from here on
        except OSError as exc:
            for path in reversed(done):
                try:
                    path.rmdir() if path.is_dir() else path.unlink()
                except OSError:
                    pass
            raise StorageError(f"aufs: creating layer {id} failed: {exc}") from exc
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    @hookimpl
    def storage_remove(self, id):
        check_id(id)
        if not any(os.path.lexists(self.home / sub / id) for sub in ("diff", "layers", "mnt")):
            return
        with self.refs.lock:
            target = self.home / "mnt" / id
            try:
                if is_mounted(target):
                    umount(target, MNT_DETACH)
            except OSError as exc:
                raise StorageError(f"aufs: unmounting layer {id} to remove it failed: {exc.strerror}") from exc
            self.refs.set(id, 0)
            self.refs.forget(id)
            try:  # under the lock: a mount that comes meanwhile finds no layer
                self._discard(id)
            except OSError as exc:
                raise StorageError(f"aufs: removing layer {id} failed: {exc}") from exc

    @hookimpl
    def storage_exists(self, id):
        return (valid_id(id) and (self.home / "layers" / id).is_file()
                and (self.home / "diff" / id).is_dir())

    @hookimpl
    def storage_layers(self):
        """Ids with any of their pieces (``diff/``, ``layers/``, ``mnt/``): a
        remove frees them all."""
        return sorted({name for sub in ("diff", "layers", "mnt") for name in os.listdir(self.home / sub)
                       if valid_id(name)})

    # ------------------------------------------------------------ mounts
    @hookimpl
    def storage_mount(self, id):
        with self.refs.lock:  # a removal holds it from its unmount to its discard
            diff = self._layer(id)
            ancestors = self._ancestors(id)
            n = self.refs.get(id)
            if not ancestors:
                self.refs.set(id, n + 1)
                return str(diff)
            target = self.home / "mnt" / id
            if not is_mounted(target):  # a count without a mount is stale
                n = 0
                self._mount(id, ancestors, target)
            self.refs.set(id, n + 1)  # n == 0 and mounted: adopt an earlier daemon's mount
            return str(target)

    def _mount(self, id, ancestors, target):
        ro = [self.home / "diff" / a for a in ancestors]
        missing = [a for a, d in zip(ancestors, ro) if not d.is_dir()]
        if missing:
            raise StorageError(f"aufs: cannot mount layer {id}: ancestor layer {missing[0]} is missing")
        target.mkdir(0o755, exist_ok=True)
        xino = f"dio,xino={XINO}" if os.path.isdir(os.path.dirname(XINO)) else "dio"
        plan = mount_plan(str(self.home / "diff" / id), [str(d) for d in ro], xino)
        mounted = False
        with _MOUNT_LOCK:
            try:
                for flags, data in plan:
                    mount("none", str(target), "aufs", flags, data)
                    mounted = True
            except OSError as exc:
                if mounted:
                    try:
                        umount(str(target), MNT_DETACH)
                    except OSError:
                        pass
                hint = ""
                if len(ancestors) + 1 > BRANCH_MAX:
                    hint = (f" ({len(ancestors) + 1} branches; aufs is often built for at most "
                            f"{BRANCH_MAX}, see CONFIG_AUFS_BRANCH_MAX_*)")
                raise StorageError(f"aufs: mounting layer {id} failed: {exc.strerror}{hint}") from exc

    @hookimpl
    def storage_unmount(self, id):
        check_id(id)
        with self.refs.lock:
            n = self.refs.get(id)
            if n > 1:
                self.refs.set(id, n - 1)
                return
            self.refs.set(id, 0)
            target = self.home / "mnt" / id
            if is_mounted(target):
                try:
                    umount(target, MNT_DETACH)
                except OSError as exc:
                    raise StorageError(f"aufs: unmounting layer {id} failed: {exc.strerror}") from exc

    @hookimpl
    def storage_cleanup(self):
        if self.home is None:
            return
        with self.refs.lock:
            for mp in mounts_under(self.home / "mnt"):
                try:
                    umount(mp, MNT_DETACH)
                except OSError:
                    pass
            for count in (self.home / "refs").iterdir():
                count.unlink(missing_ok=True)
            self.refs = RefCounts(self.refs._state_path)

    @hookimpl
    def storage_status(self):
        home = self.home
        dirs = 0
        if home is not None:
            try:
                dirs = sum(1 for name in os.listdir(home / "layers") if self.storage_exists(name))
            except OSError:
                pass
        return [["Root Dir", str(home or "")], ["Backing Filesystem", backing_fs(home or "/")],
                ["Dirs", str(dirs)]]

    # ------------------------------------------------------------ native diffs
    @hookimpl
    def storage_apply_diff(self, id, parent, stream):
        if not self._direct(id, parent):
            return None
        diff = self.home / "diff" / id
        strategy = AufsWhiteouts(self._lower(id).lstat)
        size = extract(stream, diff, whiteouts=strategy)
        try:
            strategy.settle(diff)
        except OSError as exc:
            raise StorageError(f"aufs: applying the whiteouts of layer {id} failed: {exc}") from exc
        return size

    @hookimpl
    def storage_diff(self, id, parent):
        if not self._direct(id, parent):
            return None
        out = spool()
        try:
            writer = TarWriter(out)
            write_branch(str(self.home / "diff" / id), writer)
            writer.close()
        except OSError as exc:
            out.close()
            raise StorageError(f"aufs: diff of layer {id} failed: {exc}") from exc
        out.seek(0)
        return out
    @hookimpl
    def storage_changes(self, id, parent):
        if not self._direct(id, parent):
            return None
        return [("/" + rel, kind) for rel, kind in self._changes(id)]

    @hookimpl
    def storage_size(self, id, parent):
        if not self._direct(id, parent):
            return None
        return changes_size(str(self.home / "diff" / id), self._changes(id))
    def _changes(self, id):
        """Changes of the layer's branch against its ancestors (see
        :func:`.branches.branch_changes`)."""
        low = self._lower(id)
        try:
            return branch_changes(str(self.home / "diff" / id), low)
        except OSError as exc:
            raise StorageError(f"aufs: changes of layer {id} failed: {exc}") from exc
