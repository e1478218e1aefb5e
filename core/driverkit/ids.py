"""Ids that a driver turns into path components of its home.

The engine hands a driver ids it made itself, but a driver is the last line
before the file system: an id that is ``..``, holds a ``/`` or is empty would
name a path outside the driver's home, so every driver checks the ids it joins
to a path.
"""

from __future__ import annotations

import re

from dockyard.errors import StorageError

__all__ = ["check_id", "valid_id"]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_id(id: object, what: str = "layer id") -> str:
    """Return ``id`` if it is a safe path component (``[A-Za-z0-9][A-Za-z0-9_.-]``,
    at most 128 characters); else raise :class:`~dockyard.errors.StorageError`
    naming ``what``."""
    if not isinstance(id, str) or not _ID.fullmatch(id):
        raise StorageError(f"invalid {what} {id!r}")
    return id


def valid_id(id: object) -> bool:
    """``True`` if :func:`check_id` would accept ``id``."""
    return isinstance(id, str) and _ID.fullmatch(id) is not None
