"""``docker cp``'s engine half: stat, read (as a tar) and write (from a tar) paths
inside a container's file system, running or not; and ``docker export``, the
whole file system as a tar.

Where the file system is:

* a **running** (or paused) container is reached through ``/proc/<pid>/root``, so
  what it sees -- its root layer and every bind, volume and tmpfs mounted in it --
  is what is copied;
* a **stopped** container's writable layer is mounted for the call (the storage
  driver's mount is reference-counted).  Its bind and volume mounts are not
  mounted then: a path at or below one is refused, naming the mount.

Paths are resolved as moby's ``container.ResolvePath`` does: the path is taken as
absolute inside the container, its directory is resolved with every symlink
followed *in the scope of the container's root* (an absolute link target or
``..`` never leaves it: :func:`resolve_in_root`), and the last element is kept
as it is (so a symlink is copied as a symlink) unless the path ends in ``/`` or
``/.``.  Extraction resolves the last element too (a tar may be put into a link to
a directory).  The final open goes through ``openat2(RESOLVE_IN_ROOT)``, so even a
link swapped in by the container between the resolution and the open stays in
scope; extraction then opens each entry's parents with ``O_NOFOLLOW``
(:func:`dockyard.driverkit.safetar.extract`).  Reading a directory out walks it relative
to directory fds (:mod:`dockyard.driverkit.fdwalk`), so a running container that swaps a
directory for a symlink to a host path mid-walk is never followed
(CVE-2018-15664); unlike Docker, the container is not paused for it.

Stat results are Docker's ``ContainerPathStat``: ``{name, size, mode, mtime,
linkTarget}`` with ``mode`` in Go's ``os.FileMode`` bits, which is what the docker
CLI decodes.
"""

from __future__ import annotations

import errno
import os
import stat as st_
import tarfile
import tempfile
from datetime import datetime, timezone
from typing import Any, BinaryIO, Callable, Protocol

from ...driverkit import fdwalk
from ...driverkit.fdwalk import (RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS,  # noqa: F401 (this module's API too)
                                 open_in_root)
from ...driverkit.safetar import extract
from ...driverkit.tarwriter import TarWriter
from ...errors import Conflict, DockyardError, InvalidParameter, NotFound
from ...model.container import ContainerRecord

# Go's os.FileMode type bits
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE, _GO_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
_GO_SETUID, _GO_SETGID, _GO_CHARDEV, _GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


class Containers(Protocol):
    def resolve(self, ref: str) -> str: ...

    def get(self, cid: str) -> ContainerRecord: ...


class Layers(Protocol):
    def mount(self, driver_id: str) -> str: ...

    def unmount(self, driver_id: str) -> None: ...


class PathNotFound(NotFound):
    """The path does not exist in the container (HTTP 404)."""


class ReadOnlyFS(DockyardError, PermissionError):
    """The container's root file system (or the volume) is read-only (HTTP 403)."""

    status = 403


def resolve_in_root(root: int | str, path: str) -> str:
    """The in-container absolute path ``path`` means with every symlink followed
    inside ``root`` (an fd, or a path), each link read relative to its
    directory's fd (:func:`dockyard.driverkit.fdwalk.resolve`); missing elements are kept
    as they are.  Raises ``InvalidParameter`` after too many links."""
    fd = root if isinstance(root, int) else os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return "/" + "/".join(fdwalk.resolve(fd, path))
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise InvalidParameter(f"too many symlinks in {path}") from exc
    finally:
        if fd is not root:
            os.close(fd)


def split_path(path: str) -> tuple[str, str, str]:
    """moby's ``ResolvePath`` halves: the absolute path (keeping a trailing ``/``
    or ``/.``), its directory and its last element."""
    if not path:
        raise InvalidParameter("Path cannot be empty")
    absolute = "/" + os.path.normpath("/" + path).lstrip("/")  # normpath keeps a leading //
    if path.endswith("/."):
        absolute = absolute.rstrip("/") + "/."
    elif path.endswith("/") and absolute != "/":
        absolute += "/"
    directory, _, base = absolute.rpartition("/")
    return absolute, directory or "/", base


def go_mode(mode: int) -> int:
    """A ``st_mode`` as Go's ``os.FileMode``."""
    out = st_.S_IMODE(mode) & 0o777
    kind = st_.S_IFMT(mode)
    out |= {st_.S_IFDIR: _GO_DIR, st_.S_IFLNK: _GO_SYMLINK, st_.S_IFBLK: _GO_DEVICE,
            st_.S_IFCHR: _GO_DEVICE | _GO_CHARDEV, st_.S_IFIFO: _GO_PIPE, st_.S_IFSOCK: _GO_SOCKET}.get(kind, 0)
    if mode & st_.S_ISUID:
        out |= _GO_SETUID
    if mode & st_.S_ISGID:
        out |= _GO_SETGID
    if mode & st_.S_ISVTX:
        out |= _GO_STICKY
    return out


def _go_time(ns: int) -> str:
    dt = datetime.fromtimestamp(ns // 1_000_000_000, timezone.utc)
    frac = ns % 1_000_000_000
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


class ContainerFS:
    """A container's file system for the length of a ``with``: ``root`` (a host
    path) and ``root_fd``; see the module doc for running vs stopped."""

    def __init__(self, containers: Containers, layers: Layers, ref: str) -> None:
        self.layers, self.ref = layers, ref
        self.cid = containers.resolve(ref)
        self.rec = containers.get(self.cid)
        self.running = self.rec.state.running
        self.root = self.root_fd = None
        self._mounted = False

    def __enter__(self):
        if self.running:
            self.root = f"/proc/{self.rec.state.pid}/root"
        else:
            self.root = self.layers.mount(self.cid)
            self._mounted = True
        try:
            self.root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            self.__exit__()
            raise Conflict(f"container {self.cid[:12]}: its file system is gone ({exc.strerror}); "
                           "is it stopping?") from None
        return self

    def __exit__(self, *exc):
        if self.root_fd is not None:
            os.close(self.root_fd)
            self.root_fd = None
        if self._mounted:
            self._mounted = False
            self.layers.unmount(self.cid)

    def mounts(self):
        """In-container destinations of the container's bind, volume and tmpfs mounts."""
        host = self.rec.host_config
        out = []
        for spec in host.get("Binds") or ():
            parts = spec.split(":")
            if len(parts) >= 2:
                out.append(parts[1])
        out += [m.get("Target") or m.get("Destination") or "" for m in host.get("Mounts") or ()]
        out += list(host.get("Tmpfs") or {})
        out += list(self.rec.config.get("Volumes") or {})  # anonymous volumes
        out += [mp.destination for mp in self.rec.mount_points]
        return [os.path.normpath(d) for d in out if d]

    def check_unmounted(self, resolved):
        """A stopped container's mounts are not there: refuse a path in one."""
        if self.running:
            return
        for dest in self.mounts():
            if resolved == dest or resolved.startswith(dest.rstrip("/") + "/"):
                raise Conflict(f"{resolved} is in the mount at {dest} of container {self.cid[:12]}, which is "
                               "stopped: its mounts are only reachable while it runs (start it to copy there)")

    def resolve(self, path, follow_last=False):
        """``(absolute path, resolved in-container path)``; see the module doc."""
        absolute, directory, base = split_path(path)
        if follow_last or base in ("", "."):
            resolved = resolve_in_root(self.root_fd, absolute)
            if base == ".":
                resolved = resolved.rstrip("/") + "/."
            elif base == "" and resolved != "/":
                resolved += "/"  # a trailing slash: it must be a directory
        else:
            resolved = resolve_in_root(self.root_fd, directory).rstrip("/") + "/" + base
        self.check_unmounted(os.path.normpath(resolved))
        return absolute, resolved

    def open(self, resolved, flags=os.O_PATH | os.O_NOFOLLOW):
        try:
            return open_in_root(self.root_fd, resolved.lstrip("/"), flags)
        except FileNotFoundError:
            raise PathNotFound(f"Could not find the file {resolved} in container {self.ref}") from None
        except NotADirectoryError:
            raise InvalidParameter(f"{resolved} in container {self.ref}: not a directory") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InvalidParameter(f"{resolved} in container {self.ref}: too many levels of symbolic links") from None
            raise

    def stat(self, path):
        """Docker's ``ContainerPathStat`` of ``path``."""
        absolute, resolved = self.resolve(path)
        fd = self.open(resolved, os.O_PATH | (0 if resolved.endswith(("/", "/.")) else os.O_NOFOLLOW))
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
        link = ""
        if st_.S_ISLNK(info.st_mode):
            link = resolve_in_root(self.root_fd, absolute)
        name = absolute.rstrip("/").rpartition("/")[2] if absolute not in ("/", "/.") else "/"
        if absolute.endswith("/."):
            name = "."
        return {"name": name, "size": info.st_size, "mode": go_mode(info.st_mode),
                "mtime": _go_time(info.st_mtime_ns), "linkTarget": link}


def _renaming_writer(fileobj, rename):
    """A :class:`TarWriter` whose entry names (and hard-link targets) go through
    ``rename`` (moby's ``TarResourceRebase``)."""
    writer = TarWriter(fileobj)
    real = writer.tar.addfile

    def addfile(ti, f=None):
        ti.name = rename(ti.name)
        if ti.type == tarfile.LNKTYPE:
            ti.linkname = rename(ti.linkname)
        return real(ti, f)

    writer.tar.addfile = addfile
    return writer


def _target(resolved):
    """The resolved path to open: without a trailing ``/`` or ``/.``."""
    if resolved.endswith("/."):
        resolved = resolved[:-2]
    return resolved.rstrip("/") or "/"


# ------------------------------------------------------------------ extracting
def _scan(spooled):
    """Entry names and kinds (``True`` for a directory) of a spooled tar."""
    out = []
    try:
        with tarfile.open(fileobj=spooled, mode="r|*") as tar:
            for ti in tar:
                tar.members.clear()
                out.append((ti.name, ti.isdir()))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidParameter(f"the archive to extract is not a valid tar: {exc}") from None
    spooled.seek(0)
    return out


def _check_overwrites(dest_fd, entries):
    """``noOverwriteDirNonDir``: refuse replacing a directory by a non-directory
    or the reverse (checked before anything is written)."""
    for name, is_dir in entries:
        rel = os.path.normpath(name).lstrip("/")
        if rel in ("", ".") or rel.startswith("../"):
            continue
        parent, _, base = rel.rpartition("/")
        try:
            pfd = open_in_root(dest_fd, parent or ".", os.O_PATH)
        except OSError:
            continue  # the parent is new: nothing below it can clash
        try:
            existing = os.lstat(base, dir_fd=pfd)
        except OSError:
            continue
        finally:
            os.close(pfd)
        if st_.S_ISDIR(existing.st_mode) and not is_dir:
            raise InvalidParameter(f"cannot overwrite directory \"/{rel}\" with non-directory \"{name}\"")
        if is_dir and not st_.S_ISDIR(existing.st_mode):
            raise InvalidParameter(f"cannot overwrite non-directory \"/{rel}\" with directory \"{name}\"")


def _chown_entries(dest_fd, entries, uid, gid):
    for name, _ in entries:
        rel = os.path.normpath(name).lstrip("/")
        if rel.startswith("../"):
            continue
        parent, _, base = rel.rpartition("/")
        try:
            pfd = open_in_root(dest_fd, parent or ".", os.O_PATH)
        except OSError:
            continue
        try:
            os.chown(base or ".", uid, gid, dir_fd=pfd, follow_symlinks=False)
        except OSError:
            pass  # a whiteout or an entry a later one replaced
        finally:
            os.close(pfd)


class ContainerArchives:
    """``docker cp`` and ``docker export`` of the containers of ``containers`` (their
    records), whose layers ``layers`` mounts; ``resolve_user`` maps a ``User``
    through an image's passwd file (``copyUIDGID``); tars to extract that must be
    read twice are spooled in ``tmpdir``."""

    def __init__(self, containers: Containers, layers: Layers, resolve_user: Callable[[str, str], dict],
                 emit: Callable[[str, str, str, dict], None], tmpdir: str) -> None:
        self.containers, self.layers, self.resolve_user = containers, layers, resolve_user
        self.emit, self.tmpdir = emit, tmpdir

    def fs(self, ref: str) -> ContainerFS:
        return ContainerFS(self.containers, self.layers, ref)

    def stat_path(self, ref: str, path: str) -> dict:
        """Docker's ``ContainerPathStat`` of ``path`` in the container."""
        with self.fs(ref) as fs:
            return fs.stat(path)

    def write_archive(self, ref: str, path: str, fileobj: BinaryIO) -> None:
        """Write ``path`` of the container as a tar to ``fileobj`` (moby's
        ``archivePath``): entries are named from the path's last element (``.`` for a
        path ending in ``/.``).  The tree is read relative to directory fds
        (:mod:`dockyard.driverkit.fdwalk`): the container may swap a directory for a symlink
        meanwhile, the walk never follows it (CVE-2018-15664), without pausing it."""
        with self.fs(ref) as fs:
            absolute, resolved = fs.resolve(path)
            target = _target(resolved)
            new = "." if absolute.endswith("/.") else (absolute.rstrip("/").rpartition("/")[2] or ".")
            fd = fs.open(target, os.O_PATH | (0 if resolved != target else os.O_NOFOLLOW))
            try:
                info = os.fstat(fd)
                if st_.S_ISDIR(info.st_mode):
                    with fdwalk.Tree(fd) as tree:
                        writer = _renaming_writer(fileobj, lambda n: new if n == "." else f"{new}/{n}")
                        writer.add_entry(tree.top(), ".")
                        writer.add_tree(tree)
                        writer.close()
                else:
                    parent = fs.open(os.path.dirname(target) or "/", os.O_PATH | os.O_DIRECTORY)
                    try:
                        name = os.path.basename(target)
                        writer = _renaming_writer(fileobj, lambda n: new)
                        writer.add_entry(fdwalk.Entry(name, name, os.lstat(name, dir_fd=parent), parent))
                        writer.close()
                    finally:
                        os.close(parent)
            finally:
                os.close(fd)
            self.emit("container", "archive-path", fs.cid, {"name": fs.rec.name, "path": path})

    def put_archive(self, ref: str, path: str, stream: Any, no_overwrite_dir_non_dir: bool = False,
                    copy_uid_gid: bool = False) -> int:
        """Extract the tar read from ``stream`` into directory ``path`` of the
        container (moby's ``extractToDir``); returns the bytes of file content written."""
        with self.fs(ref) as fs:
            absolute, resolved = fs.resolve(path, follow_last=True)
            target = _target(resolved)
            fd = fs.open(target, os.O_PATH)
            try:
                if not st_.S_ISDIR(os.fstat(fd).st_mode):
                    raise InvalidParameter("extraction point is not a directory")
                in_mount = any(target == d or target.startswith(d.rstrip("/") + "/") for d in fs.mounts())
                if fs.rec.host_config.get("ReadonlyRootfs") and not in_mount:
                    raise ReadOnlyFS("container rootfs is marked read-only")
                owner = None
                user = fs.rec.config.get("User")
                if copy_uid_gid and user:
                    try:
                        found = self.resolve_user(fs.root, user)
                    except ValueError as exc:
                        raise InvalidParameter(f"copyUIDGID: {exc}") from None
                    owner = (found["uid"], found["gid"])
                entries = None
                source = stream
                spooled = None
                if no_overwrite_dir_non_dir or owner:
                    spooled = tempfile.TemporaryFile(dir=self.tmpdir)
                    while chunk := stream.read(1 << 20):
                        spooled.write(chunk)
                    spooled.seek(0)
                    entries = _scan(spooled)
                    source = spooled
                try:
                    if no_overwrite_dir_non_dir:
                        _check_overwrites(fd, entries)
                    try:
                        size = extract(source, f"/proc/self/fd/{fd}")
                    except OSError as exc:
                        if exc.errno == errno.EROFS:
                            raise ReadOnlyFS(f"{absolute}: read-only file system") from None
                        raise
                    except DockyardError as exc:
                        if "Read-only file system" in str(exc):
                            raise ReadOnlyFS(f"{absolute}: read-only file system") from None
                        raise InvalidParameter(str(exc)) from None
                    if owner:
                        _chown_entries(fd, entries, *owner)
                finally:
                    if spooled is not None:
                        spooled.close()
            finally:
                os.close(fd)
        self.emit("container", "extract-to-dir", fs.cid, {"name": fs.rec.name, "path": path})
        return size

    def export(self, ref: str, fileobj: BinaryIO) -> None:
        """Write the container's whole file system to ``fileobj`` as a plain tar.
        The container may be running: its tree is read relative to directory fds
        (:mod:`dockyard.driverkit.fdwalk`), so a directory it swaps for a symlink
        meanwhile is never followed."""
        cid = self.containers.resolve(ref)
        rec = self.containers.get(cid)
        root = self.layers.mount(cid)
        try:
            with fdwalk.Tree(root) as tree:
                writer = TarWriter(fileobj)
                writer.add_tree(tree)
                writer.close()
        finally:
            self.layers.unmount(cid)
        self.emit("container", "export", cid, rec.event_attributes())
