"""A container's file system, as ``docker cp`` reaches it, for the length of a
``with`` (:class:`ContainerFS`), with moby's path rules.

Where the file system is:

* a **running** (or paused) container is reached through ``/proc/<pid>/root``, so
  what it sees -- its root layer and every bind, volume and tmpfs mounted in it --
  is what is copied;
* a **stopped** container's writable layer is mounted for the call (the storage
  driver's mount is reference-counted).  Its mounts are not mounted then; as
  dockerd, which mounts them for the call, a path at or below a bind of a
  directory or a local volume is reached in the mount's source (links in it are
  followed in the scope of that source), a bind of a file is its source file,
  and a read-only one is not written; a tmpfs is not there, the layer below it
  is.  A path in any other mount (another driver's volume) is refused, naming
  the mount.

Paths are resolved as moby's ``container.ResolvePath`` does (:func:`split_path`,
:func:`resolve_in_root`); see :mod:`.archive` for the reading and writing.
"""

from __future__ import annotations

import errno
import os
import stat as st_
from datetime import datetime, timezone
from typing import Protocol

from ...driverkit import fdwalk
from ...driverkit.fdwalk import open_in_root
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
        self._source_fds: dict[str, int] = {}

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
        for fd in self._source_fds.values():
            os.close(fd)
        self._source_fds.clear()
        if self.root_fd is not None:
            os.close(self.root_fd)
            self.root_fd = None
        if self._mounted:
            self._mounted = False
            self.layers.unmount(self.cid)

    def mounts(self, tmpfs=True):
        """In-container destinations of the container's bind, volume and (with
        ``tmpfs``) tmpfs mounts."""
        host = self.rec.host_config
        out = []
        for spec in host.get("Binds") or ():
            parts = spec.split(":")
            if len(parts) >= 2:
                out.append(parts[1])
        out += [m.get("Target") or m.get("Destination") or "" for m in host.get("Mounts") or ()
                if tmpfs or m.get("Type") != "tmpfs"]
        out += list(host.get("Tmpfs") or {}) if tmpfs else []
        out += list(self.rec.config.get("Volumes") or {})  # anonymous volumes
        out += [mp.destination for mp in self.rec.mount_points if tmpfs or mp.type != "tmpfs"]
        return [os.path.normpath(d) for d in out if d]

    def mount_at(self, resolved):
        """The mount point (the innermost) that holds in-container path ``resolved``, or None."""
        path = os.path.normpath(resolved)
        best = None
        for mp in self.rec.mount_points:
            dest = os.path.normpath(mp.destination)
            if (path == dest or path.startswith(dest.rstrip("/") + "/")) and \
                    (best is None or len(dest) > len(os.path.normpath(best.destination))):
                best = mp
        return best

    def reachable_mount(self, resolved):
        """For a stopped container: the mount point holding ``resolved`` whose
        content is reachable without mounting it (a bind of a directory, a local
        volume, a bind of a file at its destination), or None."""
        mp = None if self.running else self.mount_at(resolved)
        if mp is None or not mp.source or (mp.type == "volume" and mp.driver != "local"):
            return None
        if mp.type not in ("bind", "volume"):
            return None
        if os.path.isdir(mp.source):
            return mp
        at = os.path.normpath(resolved) == os.path.normpath(mp.destination)
        return mp if mp.type == "bind" and at and os.path.lexists(mp.source) else None

    def file_binds(self):
        """A stopped container's binds of files: ``{destination: mount point}``."""
        if self.running:
            return {}
        return {os.path.normpath(mp.destination): mp for mp in self.rec.mount_points
                if mp.type == "bind" and mp.source and os.path.lexists(mp.source) and not os.path.isdir(mp.source)}

    def check_unmounted(self, resolved):
        """A stopped container's mounts are not there: refuse a path in one whose
        content cannot be reached in its source."""
        if self.running or self.reachable_mount(resolved) is not None:
            return
        for dest in self.mounts(tmpfs=False):  # a tmpfs has nothing then: the layer below it is read
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

    def _root_of(self, resolved):
        """``(directory fd, path relative to it)`` where ``resolved`` is: the root,
        or for a stopped container the source of the mount holding it."""
        mp = self.reachable_mount(resolved)
        if mp is None:
            return self.root_fd, resolved.lstrip("/")
        if not os.path.isdir(mp.source):  # a bind of a file: the file, in its directory
            directory, name = os.path.split(os.path.normpath(mp.source))
            if directory not in self._source_fds:
                self._source_fds[directory] = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            return self._source_fds[directory], name
        if mp.source not in self._source_fds:
            self._source_fds[mp.source] = os.open(mp.source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        rel = resolved[len(os.path.normpath(mp.destination).rstrip("/")):].lstrip("/")
        return self._source_fds[mp.source], rel or "."

    def open_parent(self, resolved):
        """``(fd of the directory holding resolved, its name there)``: in the root,
        or where :meth:`_root_of` finds a stopped container's mount."""
        root_fd, rel = self._root_of(resolved)
        head, _, name = rel.rpartition("/")
        try:
            return open_in_root(root_fd, head or ".", os.O_PATH | os.O_DIRECTORY), name
        except FileNotFoundError:
            raise PathNotFound(f"Could not find the file {resolved} in container {self.ref}") from None

    def open(self, resolved, flags=os.O_PATH | os.O_NOFOLLOW):
        try:
            return open_in_root(*self._root_of(resolved), flags)
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
