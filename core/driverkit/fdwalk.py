"""Reading a tree that someone else controls: every path component is resolved
relative to a directory fd, so a symlink swapped in mid-walk is never followed.

A running container can rename its own files while the host reads them.  A
walker that joins path strings (``scandir(root + "/x/d")``, ``open(root +
"/x/d/f", O_NOFOLLOW)``) resolves ``x`` and ``d`` again at every call, and a
container that exchanges ``d`` with a symlink to a host path
(``renameat2(RENAME_EXCHANGE)``) makes the host read its own files into the
container's tar (the CVE-2018-15664 class).  ``O_NOFOLLOW`` protects only the
last component.  This module is the one way the host reads container
trees -- ``cp`` out, export, commit and diff (naive and the drivers' native
walks of an upper directory), volume copy-up, ``COPY --from`` -- and it holds
these rules:

* a :class:`Tree` is held by an fd; a directory is opened from its parent's fd
  with ``O_DIRECTORY | O_NOFOLLOW`` and checked (device, inode) against the
  listing that named it; listing is ``scandir(fd)``, ``lstat``/``readlink``
  take ``dir_fd``;
* a regular file is opened ``O_PATH | O_NOFOLLOW`` from its parent's fd,
  checked against its listing, and only then reopened for reading through
  ``/proc/self/fd`` (the same inode, no path resolution): a device node the
  container renamed over a listed file is never opened, so no driver's open
  runs on the host (a watchdog, a tape) -- CAP_MKNOD is a default capability;
* an entry that changed between the listing and its use (gone, or swapped for
  another type or inode) is skipped, never followed;
* xattrs are read through the entry's own fd when there is one (a file being
  read, a directory), otherwise through ``/proc/self/fd/<parent>/<name>`` with
  the ``l*`` calls: the parent is a held fd and the last component is not
  followed (an ``O_PATH`` fd of a symlink cannot ``flistxattr``);
* user-given paths (``docker cp CTR:/a/b``) resolve with
  ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` (:func:`open_in_root`),
  or component by component (:func:`resolve`) where the resolved path itself
  is wanted.

**Order.**  :meth:`Tree.walk` yields parents before children, names sorted
(``str`` order unless a ``key`` says otherwise): the canonical order that
makes a tree's tar the same bytes on every driver.

**File descriptors.**  A walk holds the fds of at most :data:`FD_WINDOW`
directory levels (the deepest ones, plus the top) and one file at a time.  Past
that depth the shallower levels are closed and, when the walk climbs back to
one, reopened from the nearest held ancestor, every component checked against
the inode first seen: a tree thousands of levels deep costs some reopening,
never thousands of fds (nor Python recursion: the walk is a loop).

Stdlib only, and part of the driver kit: it imports nothing of the engine.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from _typeshed import StrPath

    #: ``[(name, lstat)]`` of a directory, sorted
    Listing = list[tuple[str, os.stat_result]]

__all__ = ["FD_WINDOW", "Entry", "Tree", "open_in_root", "read_file_in_root", "read_xattrs", "resolve"]

#: directory levels a walk keeps open at most (besides its top)
FD_WINDOW = 32
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EINVAL)

RESOLVE_NO_MAGICLINKS, RESOLVE_IN_ROOT = 0x02, 0x10
_SYS_OPENAT2 = 437  # the same number on x86_64 and the generic (arm64) table
_libc = ctypes.CDLL(None, use_errno=True)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def open_in_root(root_fd: int, rel: str, flags: int = os.O_PATH) -> int:
    """``openat2(root_fd, rel, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)``: the
    kernel resolves every symlink as if ``root_fd`` were ``/``.  ``EAGAIN`` (a
    rename elsewhere raced a ``..``; the kernel refuses rather than risk an
    escape) is retried a few times."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    path = os.fsencode(rel or ".")
    for _ in range(16):
        fd = _libc.syscall(_SYS_OPENAT2, root_fd, path, ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            break
    raise OSError(err, os.strerror(err), rel)


def read_file_in_root(root: StrPath, rel: str, limit: int) -> bytes | None:
    """The bytes of regular file ``rel`` inside directory ``root`` (a path the
    caller trusts), every symlink resolved inside it (:func:`open_in_root`), or
    ``None`` if it is missing or not a regular file (a FIFO would block the
    reader, a device would run its driver's open on the host).  At most
    ``limit`` bytes are read: a container's ``/etc/passwd`` may be any size."""
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        pfd = open_in_root(root_fd, rel, os.O_PATH)
    except OSError:
        return None
    finally:
        os.close(root_fd)
    try:
        if not stat.S_ISREG(os.fstat(pfd).st_mode):
            return None
        fd = os.open(f"/proc/self/fd/{pfd}", _READ)
    finally:
        os.close(pfd)
    with os.fdopen(fd, "rb") as fh:
        return fh.read(limit)


def read_xattrs(target: int | StrPath, skip: Callable[[str], bool] = lambda name: False) -> dict[str, bytes]:
    """``{name: value}`` of ``target`` (an fd, or a path whose last component is
    not followed), sorted by name, without the names ``skip`` refuses."""
    follow = {} if isinstance(target, int) else {"follow_symlinks": False}
    try:
        names = os.listxattr(target, **follow)
    except OSError:
        return {}
    out: dict[str, bytes] = {}
    for name in sorted(names):
        if skip(name):
            continue
        try:
            out[name] = os.getxattr(target, name, **follow)
        except OSError:
            continue
    return out


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_ino == b.st_ino and a.st_dev == b.st_dev and stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode)


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


class Entry:
    """One entry of a tree: ``rel`` (path from the tree's top, ``""`` for the top
    itself), ``name``, ``st`` (its lstat when listed), ``dir_fd`` (its parent's
    fd) and, for a directory met by a walk, ``fd`` (its own, readable).

    The fds belong to the walk or lookup that made the entry: use an entry
    before the walk moves on, never keep one."""

    __slots__ = ("rel", "name", "st", "dir_fd", "fd")

    def __init__(self, rel: str, name: str, st: os.stat_result, dir_fd: int | None, fd: int | None = None) -> None:
        self.rel, self.name, self.st, self.dir_fd, self.fd = rel, name, st, dir_fd, fd

    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    def _proc_path(self) -> str:
        return f"/proc/self/fd/{self.dir_fd}/{self.name}"

    def open(self) -> int | None:
        """An fd to read this regular file, or ``None`` when the name no longer
        holds the file that was listed (the caller skips it)."""
        if self.dir_fd is None:
            return None
        try:
            pfd = os.open(self.name, _PATH, dir_fd=self.dir_fd)
        except OSError as exc:
            if exc.errno in _GONE:
                return None
            raise
        try:
            if not stat.S_ISREG(self.st.st_mode) or not _same(os.fstat(pfd), self.st):
                return None
            return os.open(f"/proc/self/fd/{pfd}", _READ)
        finally:
            os.close(pfd)

    def readlink(self) -> str:
        """The symlink's target; ``OSError`` if the name is no longer a symlink."""
        if self.dir_fd is None:
            raise OSError(errno.EINVAL, "not a symlink", self.rel)
        return os.readlink(self.name, dir_fd=self.dir_fd)

    def xattrs(self, fd: int | None = None, skip: Callable[[str], bool] = lambda name: False) -> dict[str, bytes]:
        """Sorted xattrs, read through ``fd`` (the open file), the entry's own
        directory fd, or its name in its parent (last component not followed)."""
        if fd is None:
            fd = self.fd
        if fd is None and self.dir_fd is None:
            return {}
        return read_xattrs(fd if fd is not None else self._proc_path(), skip)

    def xattr(self, name: str) -> bytes | None:
        """One xattr's value, ``None`` if it has none."""
        try:
            if self.fd is not None:
                return os.getxattr(self.fd, name)
            if self.dir_fd is None:
                return None
            return os.getxattr(self._proc_path(), name, follow_symlinks=False)
        except OSError:
            return None


class _Level:
    """A directory of the walk's current path: its fd (``None`` while closed for
    the window), identity, and the entries left to walk."""

    __slots__ = ("rel", "name", "st", "fd", "todo")

    def __init__(self, rel: str, name: str, st: os.stat_result, fd: int | None,
                 todo: Iterator[tuple[str, os.stat_result]]) -> None:
        self.rel, self.name, self.st, self.fd, self.todo = rel, name, st, fd, todo


class Tree:
    """A directory tree to read, held by an fd from start to :meth:`close`.

    ``top`` is a path the caller trusts up to its last component (the storage
    driver's own directory, a mount point the daemon made, ``/proc/<pid>/root``)
    or an fd (``O_PATH`` is fine; the tree reopens it for reading and leaves the
    caller's fd alone).  ``key`` orders names (default: ``str`` order)."""

    def __init__(self, top: int | StrPath, key: Callable[[str], Any] | None = None) -> None:
        self.fd: int | None
        if isinstance(top, int):
            self.fd = os.open(f"/proc/self/fd/{top}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        else:
            self.fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.key = key
        self._chain: list[list[Any]] = []  # the lookup cursor: [[name, fd or None], ...] from the top

    def close(self) -> None:
        for item in self._chain:
            _close(item[1])
        self._chain = []
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ listing
    def _list(self, fd: int) -> Listing:
        """``[(name, lstat)]`` of directory ``fd``, sorted; entries gone before
        their lstat are left out."""
        out: Listing = []
        with os.scandir(fd) as it:
            for e in it:
                try:
                    out.append((e.name, e.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue
        key = self.key
        out.sort(key=(lambda item: item[0]) if key is None else (lambda item: key(item[0])))
        return out

    def _top_fd(self) -> int:
        if self.fd is None:
            raise ValueError("the tree is closed")
        return self.fd

    def top(self) -> Entry:
        """The :class:`Entry` of the top directory itself (``rel`` ``""``)."""
        fd = self._top_fd()
        return Entry("", "", os.fstat(fd), None, fd)

    # ------------------------------------------------------------ walking
    def walk(self, listed: Callable[[str, Listing], Listing] | None = None) -> Iterator[Entry]:
        """Yield an :class:`Entry` for everything below the top, parents first,
        names sorted.  A directory's entry carries its own ``fd`` while it is
        yielded.  ``listed(rel, entries)``, if given, is called with each
        directory's sorted ``[(name, lstat)]`` (``rel`` ``""`` for the top)
        before its children, and returns the entries to walk (a filter, and the
        place to act once per directory, e.g. to emit whiteouts)."""
        top = self._top_fd()
        listing = self._list(top)
        stack = [_Level("", "", os.fstat(top), top, iter(listed("", listing) if listed else listing))]
        try:
            while stack:
                level = stack[-1]
                item = next(level.todo, None)
                if item is None:
                    done = stack.pop()
                    if len(stack) > 0:
                        _close(done.fd)
                    continue
                pfd = level.fd if level.fd is not None else self._reopen(stack)
                if pfd is None:  # the directory was swapped away meanwhile: the rest of it is skipped
                    level.todo = iter(())
                    continue
                name, st = item
                rel = f"{level.rel}/{name}" if level.rel else name
                if not stat.S_ISDIR(st.st_mode):
                    yield Entry(rel, name, st, pfd)
                    continue
                fd = self._open_dir(pfd, name, st)
                if fd is None:
                    continue
                try:
                    yield Entry(rel, name, st, pfd, fd)
                    children = self._list(fd)
                    if listed:
                        children = listed(rel, children)
                except BaseException:
                    os.close(fd)
                    raise
                stack.append(_Level(rel, name, st, fd, iter(children)))
                self._trim(stack)
        finally:
            for level in stack[1:]:
                _close(level.fd)

    @staticmethod
    def _open_dir(pfd: int, name: str, st: os.stat_result) -> int | None:
        """``name`` in ``pfd`` opened as the directory ``st`` describes, or ``None``."""
        try:
            fd = os.open(name, _DIR, dir_fd=pfd)
        except OSError as exc:
            if exc.errno in _GONE:
                return None
            raise
        if not _same(os.fstat(fd), st):
            os.close(fd)
            return None
        return fd

    @staticmethod
    def _trim(stack: list[_Level]) -> None:
        """Close the shallowest levels' fds beyond :data:`FD_WINDOW` (the top stays)."""
        for level in stack[1:max(1, len(stack) - FD_WINDOW)]:
            if level.fd is not None:
                os.close(level.fd)
                level.fd = None

    def _reopen(self, stack: list[_Level]) -> int | None:
        """Reopen the closed levels down to the deepest one from the nearest open
        ancestor, each checked against the inode first seen; ``None`` if one is
        no longer there (then the levels below it are given up too)."""
        start = len(stack) - 1
        while (pfd := stack[start].fd) is None:
            start -= 1
        for i in range(start + 1, len(stack)):
            fd = self._open_dir(pfd, stack[i].name, stack[i].st)
            if fd is None:
                for level in stack[start + 1:i]:
                    _close(level.fd)
                    level.fd = None
                return None
            stack[i].fd = pfd = fd
        self._trim(stack)
        return stack[-1].fd

    # ------------------------------------------------------------ lookups
    def dir_fd(self, rel: str) -> int | None:
        """An fd of directory ``rel`` (``""``: the top), every component opened
        from the top with ``O_NOFOLLOW``; ``None`` if it is missing, not a
        directory or a symlink.  Valid until the next lookup: consecutive
        lookups of nearby paths (a sorted list) reuse the open parents."""
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"{rel!r}: '..' is not a path below the top")
        chain = self._chain
        same = 0
        while same < len(chain) and same < len(parts) and chain[same][0] == parts[same]:
            same += 1
        for item in chain[same:]:
            _close(item[1])
        del chain[same:]
        start = same
        while start > 0 and chain[start - 1][1] is None:
            start -= 1
        for i in range(start, len(parts)):
            pfd = chain[i - 1][1] if i else self.fd
            try:
                fd = os.open(parts[i], _DIR, dir_fd=pfd)
            except OSError as exc:
                if exc.errno not in _GONE:
                    raise
                for item in chain[start:]:
                    _close(item[1])
                del chain[start:]
                return None
            if i < len(chain):
                chain[i][1] = fd
            else:
                chain.append([parts[i], fd])
        for item in chain[:max(0, len(chain) - FD_WINDOW)]:
            _close(item[1])
            item[1] = None
        return chain[-1][1] if chain else self.fd

    def entry(self, rel: str) -> Entry | None:
        """The :class:`Entry` of ``rel`` as it is now, or ``None`` if it is not
        there (or a parent is not a directory)."""
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"{rel!r}: '..' is not a path below the top")
        rel = "/".join(parts)
        if not rel:
            return self.top()
        parent, _, name = rel.rpartition("/")
        pfd = self.dir_fd(parent)
        if pfd is None:
            return None
        try:
            st = os.lstat(name, dir_fd=pfd)
        except OSError as exc:
            if exc.errno in _GONE:
                return None
            raise
        return Entry(rel, name, st, pfd)

    def lstat(self, rel: str) -> os.stat_result | None:
        """``lstat`` of ``rel``, or ``None`` if it is not there."""
        found = self.entry(rel)
        return found.st if found is not None else None

    def listdir(self, rel: str) -> dict[str, os.stat_result]:
        """``{name: lstat}`` of directory ``rel``; empty if it is not one."""
        fd = self.dir_fd(rel)
        return dict(self._list(fd)) if fd is not None else {}

    def subtree(self, rel: str) -> Tree | None:
        """A new :class:`Tree` of directory ``rel``, or ``None``."""
        fd = self.dir_fd(rel)
        return Tree(fd, self.key) if fd is not None else None


def resolve(root_fd: int, path: str, max_links: int = 255) -> list[str]:
    """The components of ``path`` inside the directory ``root_fd`` with every
    symlink followed *there* (an absolute target or ``..`` never leaves it) and
    missing components kept, as :func:`dockyard.driverkit.shim.rootpath.resolve` does,
    but every link read relative to its directory's fd: a component the
    container swaps meanwhile can change the answer, never make it read the
    host's links.  Raises ``OSError(ELOOP)`` after ``max_links`` links."""
    todo = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    fds: list[int | None] = []  # fds[i]: fd of done[:i+1], or None once missing
    links = 0
    try:
        while todo:
            part = todo.pop(0)
            if part == "..":
                if done:
                    done.pop()
                    _close(fds.pop())
                continue
            pfd = fds[-1] if fds else root_fd
            target = fd = None
            if pfd is not None:
                try:
                    target = os.readlink(part, dir_fd=pfd)
                except OSError as exc:  # not a link, or not there
                    if exc.errno not in _GONE:
                        raise
            if target is None:
                if pfd is not None:
                    try:
                        fd = os.open(part, _PATH | os.O_DIRECTORY, dir_fd=pfd)
                    except OSError as exc:  # not there, or not a directory: the rest is lexical
                        if exc.errno not in _GONE:
                            raise
                done.append(part)
                fds.append(fd)
                continue
            links += 1
            if links > max_links:
                raise OSError(errno.ELOOP, f"too many levels of symbolic links in {path}")
            if target.startswith("/"):
                for fd in fds:
                    _close(fd)
                done, fds = [], []
            todo[:0] = [p for p in target.split("/") if p not in ("", ".")]
        return done
    finally:
        for fd in fds:
            _close(fd)
