"""mount(2) and umount2(2), the mount table, and mounting with a private cwd:
what a storage driver that mounts its layers needs.

Every function raises ``OSError`` (with the errno and the path) as the kernel
does; a driver turns it into a :class:`~dockyard.errors.StorageError` naming the
layer.  Paths are absolute (:func:`is_mounted` and :func:`backing_fs` compare
them with ``/proc/self/mountinfo``).

Relative-path mounts
--------------------
overlayfs resolves relative ``lowerdir=`` paths against the cwd of the task that
calls mount(2); relative paths keep a 125+ layer option string under one page.
The cwd is process-wide and the daemon is multi-threaded, so :class:`CwdRunner`
runs such calls in one dedicated thread that first calls ``unshare(CLONE_FS)``:
its cwd is then private and ``chdir`` there never moves the other threads.  If the
kernel refuses the unshare (seccomp), it falls back to ``chdir`` + call + ``chdir``
back under a process-wide lock; threads that use relative paths meanwhile would
be affected, which Dockyard's code does not do (it uses absolute paths).
"""

from __future__ import annotations

import ctypes
import os
import queue
import re
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from _typeshed import StrPath

_T = TypeVar("_T")

__all__ = ["CLONE_FS", "CWD_RUNNER", "MNT_DETACH", "CwdRunner", "backing_fs", "is_mounted", "mount",
           "mountinfo", "mounts_under", "umount"]

MNT_DETACH = 2
CLONE_FS = 0x00000200

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]


def _b(s: StrPath | None) -> bytes | None:
    return os.fsencode(s) if s is not None else None


def mount(source: StrPath | None, target: StrPath, fstype: StrPath | None, flags: int = 0,
          data: StrPath | None = None) -> None:
    """mount(2); raises ``OSError``."""
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(target))


def umount(target: StrPath, flags: int = 0) -> None:
    """umount2(2); raises ``OSError``."""
    if _libc.umount2(_b(target), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(target))


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mountinfo() -> list[tuple[str, str]]:
    """``[(mount point, fs type), ...]`` of this process, in mount order."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            out.append((_unescape(fields[4]), right.split()[0]))
    return out


def _mnt_id(path: str) -> int | None:
    """The id of the mount holding ``path`` (``/proc/self/fdinfo``'s ``mnt_id``),
    or ``None`` where the kernel does not say it; raises ``OSError``."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"mnt_id:"):
                    return int(line.split()[1])
    finally:
        os.close(fd)
    return None


def is_mounted(path: StrPath) -> bool:
    """``True`` if ``path`` is a mount point (``path`` must be absolute, resolved).

    Asked of the kernel for that one path: the mount holding ``path`` is not the
    one holding its directory.  The mount table is the fallback only, because a
    read of ``/proc/self/mountinfo`` while other threads or processes mount and
    unmount may skip lines, and a mount point missed so would be mounted twice."""
    target = os.path.normpath(str(path))
    if target == "/":
        return True
    try:
        mine, parent = _mnt_id(target), _mnt_id(os.path.dirname(target))
    except OSError:
        return False
    if mine is not None and parent is not None:
        return mine != parent
    return any(mp == target for mp, _ in mountinfo())


def mounts_under(path: StrPath) -> list[str]:
    """Mount points strictly below ``path``, deepest first."""
    prefix = str(path).rstrip("/") + "/"
    found = [mp for mp, _ in mountinfo() if mp.startswith(prefix)]
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def backing_fs(path: StrPath) -> str:
    """The file system type holding ``path`` (or its nearest existing parent)."""
    where = os.path.abspath(str(path))
    while not os.path.exists(where) and where != "/":
        where = os.path.dirname(where)
    where = os.path.realpath(where)
    best, fstype = -1, "unknown"
    for mp, fs in mountinfo():  # later mounts shadow earlier ones at the same point
        if (where == mp or where.startswith(mp.rstrip("/") + "/")) and len(mp) >= best:
            best, fstype = len(mp), fs
    return fstype


class CwdRunner:
    """Runs callables with a given cwd without moving other threads' cwd (see
    the module doc)."""

    _fallback_lock = threading.Lock()

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[str, Callable[..., Any], tuple[Any, ...], Future[Any]]] = \
            queue.SimpleQueue()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None
        self.private: bool | None = None

    def run(self, cwd: StrPath, fn: Callable[..., _T], *args: Any) -> _T:
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="dockyard-cwd", daemon=True)
                self._thread.start()
        fut: Future[_T] = Future()
        self._jobs.put((str(cwd), fn, args, fut))
        return fut.result()

    def _loop(self) -> None:
        self.private = _libc.unshare(CLONE_FS) == 0
        while True:
            cwd, fn, args, fut = self._jobs.get()
            try:
                fut.set_result(self._call(cwd, fn, args))
            except BaseException as exc:  # handed to the caller
                fut.set_exception(exc)

    def _call(self, cwd: str, fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        if self.private:
            os.chdir(cwd)
            try:
                return fn(*args)
            finally:
                os.chdir("/")
        with self._fallback_lock:
            old = os.getcwd()
            os.chdir(cwd)
            try:
                return fn(*args)
            finally:
                os.chdir(old)


#: the process-wide runner (one thread is enough: mounts are quick)
CWD_RUNNER = CwdRunner()
