"""What the cni driver keeps of each attachment, and what it asks of namespaces.

An attachment's record (``<home>/attachments/<endpoint id>.json``) holds what
its DEL needs: the configuration list as the ADD ran it, the ``CNI_*`` values,
the runtime arguments (port mappings) and the result.  It is written before
the first plugin runs and removed after the last DEL, so that a DEL after a
daemon restart, or a crash half way, runs the plugins with what their ADD had.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import socket
import threading

from dockyard.errors import NetworkError

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


class Records:
    """The attachment records under ``home``."""

    def __init__(self, home: str) -> None:
        self.dir = os.path.join(home, "attachments")

    def _path(self, endpoint_id: str) -> str:
        if not endpoint_id or not all(c in "0123456789abcdefABCDEF" for c in endpoint_id):
            raise NetworkError(f"endpoint id {endpoint_id!r} is not hexadecimal")
        return os.path.join(self.dir, endpoint_id + ".json")

    def get(self, endpoint_id: str) -> dict | None:
        try:
            with open(self._path(endpoint_id), "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise NetworkError(f"cni driver: attachment record of endpoint {endpoint_id[:12]}: {e}") from None

    def put(self, endpoint_id: str, record: dict) -> None:
        path = self._path(endpoint_id)
        os.makedirs(self.dir, 0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "w") as fh:
                json.dump(record, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise NetworkError(f"cni driver: writing {path}: {e.strerror}") from None

    def remove(self, endpoint_id: str) -> None:
        try:
            os.unlink(self._path(endpoint_id))
        except FileNotFoundError:
            pass

    def all(self) -> dict[str, dict]:
        """``{endpoint id: record}`` of every record (unreadable ones left out)."""
        out = {}
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return {}
        for name in names:
            if name.endswith(".json"):
                try:
                    rec = self.get(name[:-5])
                except NetworkError:
                    continue
                if rec is not None:
                    out[name[:-5]] = rec
        return out


def is_netns(path: str) -> bool:
    """Whether ``path`` is (a bind mount of) a network namespace still."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False
    finally:
        os.close(fd)


def interface_names(path: str) -> set[str]:
    """The interface names in the network namespace at ``path``, read by a thread
    of its own that enters it (``setns`` moves only the calling thread, which
    then ends)."""
    box: dict = {}

    def run() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, "not a network namespace" if err == errno.EINVAL else os.strerror(err))
            finally:
                os.close(fd)
            box["names"] = {name for _, name in socket.if_nameindex()}
        except OSError as e:
            box["error"] = e

    thread = threading.Thread(target=run, name="dy-cni-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise NetworkError(f"network namespace {path}: {box['error'].strerror or box['error']}")
    return box["names"]
