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

Whiteouts are stored natively, as aufs does: ``.wh.<name>`` files hide ``name``
of the lower branches, a ``.wh..wh..opq`` file makes its directory opaque.  These
are the OCI names, so :func:`storage_apply_diff` stores a tar's whiteout entries
as (empty) files and :func:`storage_diff` emits them as they are.  aufs' own
metadata at the branch root (``.wh..wh.aufs``, ``.wh..wh.plnk/``,
``.wh..wh.orph/``) and its temporary ``.wh.*`` directories (rmdir in progress)
are never part of a layer.  Native diff, apply_diff, changes and size work on the
diff directories without mounting, whenever ``parent`` is the layer's own parent;
otherwise they return ``None`` and the core's naive fallback runs.

No options.  Needs root and a kernel with aufs (``modprobe aufs`` is tried).
"""

import os
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

from dockyard.driverkit.fdwalk import Tree
from dockyard.driverkit.ids import check_id, valid_id
from dockyard.driverkit.lowerview import scan
from dockyard.driverkit.mounts import MNT_DETACH, backing_fs, is_mounted, mount, mounts_under, umount
from dockyard.driverkit.naivediff import changes_size, mark_parents
from dockyard.driverkit.refcounts import RefCounts
from dockyard.driverkit.safetar import (WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, TarWriter, Whiteouts,
                                        differs, extract, spool)
from dockyard.errors import LayerNotFound, StorageError
from dockyard.hookspecs import hookimpl

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
ADDED, MODIFIED, DELETED = 1, 0, 2
DIRS = ("diff", "layers", "mnt", "refs", "tmp")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
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


# ---------------------------------------------------------------- whiteouts on disk
def _join(rel, name):
    return f"{rel}/{name}" if rel else name


def classify(entries):
    """Split the ``{name: stat}`` of a branch directory into ``(live, whiteouts,
    opaque)``: the visible entries, the names whited out for lower branches and
    whether the directory is opaque.  aufs metadata (``.wh..wh.*`` other than the
    opaque marker) and directories named ``.wh.*`` (aufs' temporary rmdir names)
    are none of these."""
    live, whiteouts, opaque = {}, set(), False
    for name, st in entries.items():
        if not name.startswith(WHITEOUT_PREFIX):
            live[name] = st
        elif stat.S_ISDIR(st.st_mode):
            continue
        elif name == WHITEOUT_OPAQUE:
            opaque = True
        elif name.startswith(WHITEOUT_META_PREFIX):
            continue
        else:
            whiteouts.add(name[len(WHITEOUT_PREFIX):])
    return live, whiteouts, opaque


def _is_whiteout(dirpath, name):
    try:
        return not stat.S_ISDIR(os.lstat(os.path.join(dirpath, WHITEOUT_PREFIX + name)).st_mode)
    except OSError:
        return False


def _is_opaque(dirpath):
    try:
        return not stat.S_ISDIR(os.lstat(os.path.join(dirpath, WHITEOUT_OPAQUE)).st_mode)
    except OSError:
        return False


def _touch(dir_fd, name):
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444, dir_fd=dir_fd)
    os.close(fd)


def _open_dir(root, rel):
    """An fd of directory ``root/rel`` opened without following symlinks, or ``None``."""
    fd = os.open(root, _DIR_FLAGS)
    for part in rel.split("/") if rel else ():
        try:
            new = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = new
    return fd


class BranchView:
    """The merged tree of aufs branches ``tops`` (nearest first) read from the
    directories without mounting: a ``.wh.<name>`` file hides ``name`` in the
    branches below, an opaque directory or a non-directory stops the search."""

    def __init__(self, tops):
        self.tops = [str(t) for t in tops]

    @staticmethod
    def _probe(top, parts):
        """``((path, stat), False)`` if ``parts`` exists in branch ``top``, else
        ``(None, stop)`` where ``stop`` says deeper branches are hidden."""
        cur, stop = top, False
        for i, part in enumerate(parts):
            path = os.path.join(cur, part)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None, stop or _is_whiteout(cur, part)
            if i == len(parts) - 1:
                return (path, st), False
            if not stat.S_ISDIR(st.st_mode):
                return None, True
            stop = stop or _is_opaque(path)
            cur = path
        return (top, os.lstat(top)), False

    def find(self, rel):
        """``(path, stat)`` of the visible ``rel`` or ``None``."""
        parts = rel.split("/") if rel else []
        for top in self.tops:
            hit, stop = self._probe(top, parts)
            if hit is not None:
                return hit
            if stop:
                break
        return None

    def lstat(self, rel):
        hit = self.find(rel)
        return hit[1] if hit else None

    def listdir(self, rel):
        """``{name: stat}`` of the visible children of directory ``rel``."""
        parts = rel.split("/") if rel else []
        names, masked = {}, set()
        for top in self.tops:
            hit, stop = self._probe(top, parts)
            if hit is None:
                if stop:
                    break
                continue
            path, st = hit
            if not stat.S_ISDIR(st.st_mode):
                break
            live, whiteouts, opaque = classify(scan(path))
            for name, est in live.items():
                if name not in names and name not in masked:
                    names[name] = est
            masked |= whiteouts  # hides the branches below, not this one
            if opaque:
                break
        return names


class AufsWhiteouts(Whiteouts):
    """Whiteout strategy for an aufs branch: OCI whiteouts are stored as the
    (same-named) aufs whiteout files.  As OCI wants, a whiteout hides lower
    content only: one naming something this tar itself makes is dropped (and a
    directory made by the tar then gets an opaque marker, since the lower one was
    deleted); :meth:`settle` does the same for entries made after their whiteout.
    ``lower_stat(rel)`` (optional) gives the metadata of implied parents."""

    create_parents = True

    def __init__(self, lower_stat=None):
        self._lower_stat = lower_stat
        self.stored = []

    @staticmethod
    def _replace_lower(dir_fd, name):
        try:
            st = os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                _touch(fd, WHITEOUT_OPAQUE)
            finally:
                os.close(fd)

    def whiteout(self, dir_fd, name, rel, unpacked):
        if rel in unpacked:
            self._replace_lower(dir_fd, name)
            return
        _touch(dir_fd, WHITEOUT_PREFIX + name)
        self.stored.append(rel)

    def opaque(self, dir_fd, rel, unpacked):
        _touch(dir_fd, WHITEOUT_OPAQUE)

    def implied_dir(self, rel):
        return self._lower_stat(rel) if self._lower_stat else None

    def settle(self, root):
        """After extraction into ``root``: drop stored whiteouts whose name the tar
        made later (the entry replaces the lower one)."""
        for rel in self.stored:
            parent, _, name = rel.rpartition("/")
            fd = _open_dir(root, parent)
            if fd is None:
                continue
            try:
                try:
                    os.lstat(name, dir_fd=fd)
                except FileNotFoundError:
                    continue
                try:
                    os.unlink(WHITEOUT_PREFIX + name, dir_fd=fd)
                except FileNotFoundError:
                    pass
                self._replace_lower(fd, name)
            finally:
                os.close(fd)


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
        try:
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
        diff = self._layer(id)
        ancestors = self._ancestors(id)
        with self.refs.lock:
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

            def listed(rel, entries):  # a directory's opaque marker and whiteouts come before its entries
                live, whiteouts, opaque = classify(dict(entries))
                if opaque:
                    writer.add_opaque(rel)
                for name in sorted(whiteouts - set(live)):
                    writer.add_whiteout(_join(rel, name))
                return [(n, st) for n, st in entries if n in live]

            with Tree(str(self.home / "diff" / id)) as branch:  # a running container's: read by fds
                for e in branch.walk(listed):
                    writer.add_entry(e)
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
        """Changes of the layer's branch against its ancestors, with the same
        rules as the naive fallback, in one walk of the branch
        (:mod:`dockyard.driverkit.fdwalk`: it may be a running container's).  Per
        directory, ``decided`` says how to read it: ``None`` when everything
        below is new, else whether an opaque directory above hides the lower
        ones (then what they have and the branch does not is deleted)."""
        low = self._lower(id)
        out, decided, path = {}, {"": False}, []

        def listed(rel, entries):
            live, whiteouts, opaque = classify(dict(entries))
            hidden = decided.pop(rel, None)
            if hidden is not None:
                hidden = hidden or opaque
                if hidden:
                    gone = set(low.listdir(rel)) - set(live)
                else:
                    gone = {n for n in whiteouts - set(live) if low.find(_join(rel, n)) is not None}
                out.update((_join(rel, n), DELETED) for n in gone)
            path.append((rel, hidden))
            return [(n, st) for n, st in entries if n in live]

        try:
            with Tree(str(self.home / "diff" / id)) as branch:
                for e in branch.walk(listed):
                    parent = e.rel.rpartition("/")[0]
                    while path[-1][0] != parent:
                        path.pop()
                    hidden = path[-1][1]
                    is_dir = stat.S_ISDIR(e.st.st_mode)
                    hit = low.find(e.rel) if hidden is not None else None
                    if hit is None:
                        out[e.rel] = ADDED
                        if is_dir:
                            decided[e.rel] = None
                        continue
                    lpath, lst = hit
                    if differs(lpath, lst, e, e.st):
                        out[e.rel] = MODIFIED
                    if is_dir:  # a directory that replaced a non-directory: its content is new
                        decided[e.rel] = hidden if stat.S_ISDIR(lst.st_mode) else None
        except OSError as exc:
            raise StorageError(f"aufs: changes of layer {id} failed: {exc}") from exc
        return mark_parents(out)
