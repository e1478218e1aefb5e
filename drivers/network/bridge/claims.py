"""Which live daemon owns a bridge or an nft table: a locked file per name.

dockerd is alone on its host; Dockyard daemons on different data roots are not.
Two daemons on one Linux bridge each add their gateway to it and hand out
addresses the other does not know; two daemons on one nft table replace each
other's rules.  So a daemon *claims* each bridge it names (the default one, and a
user network's ``com.docker.network.bridge.name``) and its table before touching
them, and a second daemon is refused, told which daemon has it.

A claim is an exclusive ``flock`` on ``/run/dockyard-network/<kind>.<name>``,
holding the owner's pid and data root.  The kernel drops the lock the instant the
owner's last descriptor of it closes (a crash or a SIGKILL too, so a dead daemon
never blocks the next one); the descriptor is close-on-exec, so no container or
shim inherits it.  The directory is root's alone (``0700``): a user who cannot
write there cannot squat a name to keep the daemon from starting, as anyone could
with an abstract unix socket.  A released claim's file is removed under its lock;
a claimant that locked a file removed meanwhile finds its inode gone from the
path and starts again.
"""

import errno
import fcntl
import json
import os
import threading

from dockyard.errors import NetworkError

DIRECTORY = "/run/dockyard-network"


class Claims:
    """The claims of one driver (one daemon), by ``(kind, name)``."""

    def __init__(self, data_root, directory=DIRECTORY):
        self.directory = directory
        self._owner = json.dumps({"pid": os.getpid(), "data_root": str(data_root)}).encode()
        self._lock = threading.Lock()
        self._held = {}  # (kind, name) -> fd

    def _path(self, kind, name):
        return os.path.join(self.directory, f"{kind}.{name}")

    def claim(self, kind, name):
        """Claim ``name``: ``None`` when it is ours now (or was already), else
        the holder as ``{"pid", "data_root"}`` (values may be ``"?"`` while it
        is still writing them)."""
        with self._lock:
            if (kind, name) in self._held:
                return None
            path = self._path(kind, name)
            for _ in range(10):
                try:
                    os.makedirs(self.directory, mode=0o700, exist_ok=True)
                    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
                except OSError as e:
                    raise NetworkError(f"claiming {kind} {name} ({path}): {e.strerror}") from None
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    os.close(fd)
                    if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise NetworkError(f"claiming {kind} {name} ({path}): {e.strerror}") from None
                    return self._holder(path)
                try:
                    current = os.stat(path).st_ino
                except FileNotFoundError:
                    current = None
                if current != os.fstat(fd).st_ino:  # released and removed meanwhile: again
                    os.close(fd)
                    continue
                try:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, self._owner, 0)
                except OSError as e:
                    os.close(fd)
                    raise NetworkError(f"claiming {kind} {name} ({path}): {e.strerror}") from None
                self._held[(kind, name)] = fd
                return None
            raise NetworkError(f"claiming {kind} {name} ({path}): it keeps being removed under us")

    @staticmethod
    def _holder(path):
        try:
            with open(path, "rb") as fh:
                found = json.loads(fh.read() or b"{}")
        except (OSError, ValueError):
            found = {}
        return {"pid": found.get("pid", "?"), "data_root": found.get("data_root", "?")}

    def holds(self, kind, name):
        with self._lock:
            return (kind, name) in self._held

    def release(self, kind, name):
        """Give ``name`` up (its file goes).  Idempotent."""
        with self._lock:
            fd = self._held.pop((kind, name), None)
            if fd is not None:
                self._drop(kind, name, fd)

    def release_all(self):
        with self._lock:
            for (kind, name), fd in list(self._held.items()):
                self._drop(kind, name, fd)
            self._held.clear()

    def _drop(self, kind, name, fd):
        try:
            os.unlink(self._path(kind, name))  # still locked: no claimant can hold this inode
        except OSError:
            pass
        os.close(fd)


def describe(holder):
    """``"pid 12, data root /var/lib/dockyard"`` of a :meth:`Claims.claim` answer."""
    return f"pid {holder['pid']}, data root {holder['data_root']}"
