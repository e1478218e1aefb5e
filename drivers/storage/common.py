"""Helpers shared by the storage drivers: layer ids, mountinfo, mount(2) and
reference counts of mounted layers, and a read-only view of overlay lower layers.

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

import ctypes
import os
import queue
import re
import stat
import threading
from concurrent.futures import Future

from dockyard.errors import StorageError
from dockyard.safetar import OVERLAY_OPAQUE_XATTR, is_whiteout_dev

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MNT_DETACH = 2
CLONE_FS = 0x00000200

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]


def check_id(id, what="layer id"):
    """Refuse ids that could name a path outside the driver's home."""
    if not isinstance(id, str) or not _ID.fullmatch(id):
        raise StorageError(f"invalid {what} {id!r}")
    return id


def valid_id(id):
    return isinstance(id, str) and _ID.fullmatch(id) is not None


def _b(s):
    return os.fsencode(s) if s is not None else None


def mount(source, target, fstype, flags=0, data=None):
    """mount(2); raises ``OSError``."""
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(target))


def umount(target, flags=0):
    """umount2(2); raises ``OSError``."""
    if _libc.umount2(_b(target), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(target))


def _unescape(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mountinfo():
    """``[(mount point, fs type), ...]`` of this process, in mount order."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            out.append((_unescape(fields[4]), right.split()[0]))
    return out


def is_mounted(path):
    """``True`` if ``path`` is a mount point (``path`` must be absolute, resolved)."""
    path = str(path)
    return any(mp == path for mp, _ in mountinfo())


def mounts_under(path):
    """Mount points strictly below ``path``, deepest first."""
    prefix = str(path).rstrip("/") + "/"
    found = [mp for mp, _ in mountinfo() if mp.startswith(prefix)]
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def backing_fs(path):
    """The file system type holding ``path`` (or its nearest existing parent)."""
    path = os.path.abspath(str(path))
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    path = os.path.realpath(path)
    best, fstype = -1, "unknown"
    for mp, fs in mountinfo():  # later mounts shadow earlier ones at the same point
        if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) >= best:
            best, fstype = len(mp), fs
    return fstype


def atomic_write(path, text):
    tmp = f"{path}.tmp{threading.get_ident()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class CwdRunner:
    """Runs callables with a given cwd without moving other threads' cwd (see
    the module doc)."""

    _fallback_lock = threading.Lock()

    def __init__(self):
        self._jobs = queue.SimpleQueue()
        self._start = threading.Lock()
        self._thread = None
        self.private = None

    def run(self, cwd, fn, *args):
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="dockyard-cwd", daemon=True)
                self._thread.start()
        fut = Future()
        self._jobs.put((str(cwd), fn, args, fut))
        return fut.result()

    def _loop(self):
        self.private = _libc.unshare(CLONE_FS) == 0
        while True:
            cwd, fn, args, fut = self._jobs.get()
            try:
                fut.set_result(self._call(cwd, fn, args))
            except BaseException as exc:  # handed to the caller
                fut.set_exception(exc)

    def _call(self, cwd, fn, args):
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


def release_mount(refs, id, target, driver):
    """Drop one reference to layer ``id``; the last one unmounts ``target``."""
    with refs.lock:
        if refs.release(id) > 0:
            return
        if is_mounted(target):
            try:
                umount(target, MNT_DETACH)
            except OSError as exc:
                raise StorageError(f"{driver}: unmounting layer {id} failed: {exc.strerror}") from exc


class RefCounts:
    """Mount reference counts, kept in memory and (optionally) persisted in a
    small file per layer, so a restarted daemon knows a layer is still in use.

    ``state_path(id)`` returns the file for ``id`` (or ``None`` to keep the count
    in memory only).
    """

    def __init__(self, state_path=None):
        self._state_path = state_path
        self._counts = {}
        self.lock = threading.RLock()

    def get(self, id):
        with self.lock:
            if id not in self._counts:
                self._counts[id] = self._load(id)
            return self._counts[id]

    def _load(self, id):
        path = self._state_path(id) if self._state_path else None
        try:
            with open(path) as f:
                return max(0, int(f.read().strip() or 0))
        except (TypeError, OSError, ValueError):
            return 0

    def acquire(self, id):
        """Take one reference; return the new count."""
        with self.lock:
            self.set(id, self.get(id) + 1)
            return self._counts[id]

    def release(self, id):
        """Drop one reference (never below zero); return the new count."""
        with self.lock:
            n = self.get(id)
            if n > 0:
                self.set(id, n - 1)
            return max(0, n - 1)

    def set(self, id, count):
        with self.lock:
            self._counts[id] = count
            path = self._state_path(id) if self._state_path else None
            if path is None:
                return
            if count > 0:
                atomic_write(path, f"{count}\n")
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def forget(self, id):
        with self.lock:
            self._counts.pop(id, None)

    def clear(self):
        with self.lock:
            for id in list(self._counts):
                self.set(id, 0)
            self._counts.clear()


def is_opaque(path):
    try:
        return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def scan(path):
    with os.scandir(path) as it:
        return {e.name: e.stat(follow_symlinks=False) for e in it}


class LowerView:
    """The parent's merged tree as overlayfs sees it, read from the lower diff
    directories (nearest first) without mounting: whiteouts hide, an opaque
    directory or a non-directory stops the search in deeper layers."""

    def __init__(self, tops):
        self.tops = [os.path.realpath(t) for t in tops]

    @staticmethod
    def _probe(top, parts):
        """``((path, stat), False)`` if ``parts`` exists in layer ``top``, else
        ``(None, stop)`` where ``stop`` says deeper layers are hidden."""
        cur, stop = top, False
        for i, part in enumerate(parts):
            path = os.path.join(cur, part)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None, stop
            if i == len(parts) - 1:
                return (path, st), False
            if not stat.S_ISDIR(st.st_mode):
                return None, True
            stop = stop or is_opaque(path)
            cur = path
        return (top, os.lstat(top)), False

    def find(self, rel):
        parts = rel.split("/") if rel else []
        for top in self.tops:
            hit, stop = self._probe(top, parts)
            if hit is not None:
                return None if is_whiteout_dev(hit[1]) else hit
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
            for name, est in scan(path).items():
                if name in names or name in masked:
                    continue
                if is_whiteout_dev(est):
                    masked.add(name)
                else:
                    names[name] = est
            if is_opaque(path):
                break
        return names
