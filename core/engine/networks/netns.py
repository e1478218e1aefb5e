"""Network namespaces the core makes for containers, bind-mounted under the exec
root (``<exec-root>/netns/<container id>``) so that they outlive every process in
them until the container stops, and a restarted daemon finds them.

A namespace is made by a short-lived thread: ``unshare(CLONE_NEWNET)`` moves only
the calling thread, which then bind-mounts its ``/proc/thread-self/ns/net``.
"""

import ctypes
import os
import threading

from ...errors import NetworkError

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MNT_DETACH = 0x2
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _fail(what, path):
    err = ctypes.get_errno()
    return NetworkError(f"{what} network namespace {path}: {os.strerror(err)}")


def create(path):
    """Make a new network namespace and pin it at ``path``; returns ``path``."""
    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
    if os.path.ismount(path):
        return path
    with open(path, "a"):
        pass
    problem = []

    def make():
        if _libc.unshare(CLONE_NEWNET) != 0:
            problem.append(_fail("creating", path))
        elif _libc.mount(b"/proc/thread-self/ns/net", os.fsencode(path), None, MS_BIND, None) != 0:
            problem.append(_fail("pinning", path))

    t = threading.Thread(target=make, name="netns")
    t.start()
    t.join()
    if problem:
        delete(path)
        raise problem[0]
    return path


def delete(path):
    """Unpin and remove it (idempotent)."""
    if os.path.ismount(path):
        _libc.umount2(os.fsencode(path), MNT_DETACH)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
