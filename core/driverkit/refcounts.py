"""Reference counts of mounted layers, which survive a daemon restart.

A layer is mounted once and handed out to every user (a running container, a
``cp``, a diff); the last release unmounts it.  The count is kept in memory and,
when the driver gives a file per layer, on disk too, so a restarted daemon knows
that a container which kept running still holds its layer (Docker's graphdrivers
keep the same count).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from dockyard.errors import StorageError

from .mounts import MNT_DETACH, is_mounted, umount

if TYPE_CHECKING:
    from collections.abc import Callable

    from _typeshed import StrPath

__all__ = ["RefCounts", "atomic_write", "release_mount"]


def atomic_write(path: StrPath, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary name and a rename, so a
    crash leaves the old content or the new, never half of it."""
    tmp = f"{path}.tmp{threading.get_ident()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def release_mount(refs: RefCounts, id: str, target: str, driver: str) -> None:
    """Drop one reference to layer ``id`` in ``refs`` (a :class:`RefCounts`);
    the last one unmounts ``target`` (lazily).  ``driver`` names the driver in
    the :class:`~dockyard.errors.StorageError` raised when the unmount fails."""
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
    in memory only).  :attr:`lock` (reentrant) is held by every method; a driver
    holds it too around a count and the mount or unmount that goes with it.
    """

    def __init__(self, state_path: Callable[[str], StrPath | None] | None = None) -> None:
        self._state_path = state_path
        self._counts: dict[str, int] = {}
        self.lock = threading.RLock()

    def get(self, id: str) -> int:
        with self.lock:
            if id not in self._counts:
                self._counts[id] = self._load(id)
            return self._counts[id]

    def _load(self, id: str) -> int:
        path = self._state_path(id) if self._state_path else None
        if path is None:
            return 0
        try:
            with open(path) as f:
                return max(0, int(f.read().strip() or 0))
        except (OSError, ValueError):
            return 0

    def acquire(self, id: str) -> int:
        """Take one reference; return the new count."""
        with self.lock:
            self.set(id, self.get(id) + 1)
            return self._counts[id]

    def release(self, id: str) -> int:
        """Drop one reference (never below zero); return the new count."""
        with self.lock:
            n = self.get(id)
            if n > 0:
                self.set(id, n - 1)
            return max(0, n - 1)

    def set(self, id: str, count: int) -> None:
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

    def forget(self, id: str) -> None:
        with self.lock:
            self._counts.pop(id, None)

    def clear(self) -> None:
        with self.lock:
            for id in list(self._counts):
                self.set(id, 0)
            self._counts.clear()
