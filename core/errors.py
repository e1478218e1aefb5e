"""Dockyard's exception tree.  Every error the API reports comes from here.

    DockyardError
    ├── ConfigError (ValueError)          plugins.toml / flags refused at start-up
    ├── PluginError                       a driver or extension could not be loaded
    │   └── DriverUnsupported             the driver says it cannot run here
    ├── NotFound (LookupError)            → HTTP 404
    │   ├── ImageNotFound
    │   ├── ContainerNotFound
    │   └── LayerNotFound
    ├── Conflict                          → HTTP 409 (name in use, image in use...)
    ├── InvalidParameter (ValueError)     → HTTP 400
    ├── StorageError                      storage driver failures
    ├── NoSpace (OSError)                 → HTTP 507: the disk under the data root is full
    ├── ExecError                         exec driver failures (``exit_code`` attr)
    └── NetworkError                      network driver failures

Drivers raise the driver-kind errors; the API maps each class to a status code in
one place (``dockyard.daemon.errors``).

A full disk is not a driver's failure nor a bug: :func:`no_space` turns ENOSPC,
EDQUOT and SQLite's "database or disk is full", wherever in an exception's chain
they are, into :class:`NoSpace` naming the operation and the data root.  Each
operation that writes (load, import, commit, build, pull) translates at its own
entry; the API's error middleware translates whatever escaped them.
"""

import errno
from contextlib import contextmanager

TYPE_CHECKING = False  # typing is not imported at run time: the CLI imports this module
if TYPE_CHECKING:
    from collections.abc import Iterator


class DockyardError(Exception):
    """Base of every error Dockyard raises on purpose."""

    status: int = 500


class ConfigError(DockyardError, ValueError):
    """A configuration file or flag is wrong; the message names file and key."""


class PluginError(DockyardError):
    """A driver or extension could not be loaded or validated."""


class DriverUnsupported(PluginError):
    """A driver reported that it cannot run on this machine (``reason`` attr)."""

    def __init__(self, kind: str, name: str, reason: str) -> None:
        super().__init__(f"{kind} driver {name!r} is unsupported here: {reason}")
        self.kind, self.name, self.reason = kind, name, reason


class NotFound(DockyardError, LookupError):
    status = 404


class ImageNotFound(NotFound):
    pass


class ContainerNotFound(NotFound):
    pass


class LayerNotFound(NotFound):
    pass


class Conflict(DockyardError):
    status = 409


class InvalidParameter(DockyardError, ValueError):
    status = 400


class StorageError(DockyardError):
    """A storage driver operation failed."""


class NoSpace(DockyardError, OSError):
    """The file system holding the data root is full (or over quota): the
    operation was undone and can be retried once there is room.  An ``OSError``
    too (``errno`` ENOSPC or EDQUOT), so ``except OSError`` still catches it."""

    status = 507  # Insufficient Storage (WebDAV), as a registry answers a full disk

    def __init__(self, operation: str, root: object, code: int = errno.ENOSPC) -> None:
        message = f"{operation}: no space left on device under {root}"
        super().__init__(message)
        self.errno, self.strerror = code, message
        self.operation, self.root = operation, root

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else str(self.strerror)


#: SQLite's primary result code for "database or disk is full"
SQLITE_FULL = 13


def full_disk_code(exc: BaseException | None) -> int | None:
    """ENOSPC or EDQUOT if ``exc`` or anything in its chain (``__cause__``,
    ``__context__``) is a full disk, else ``None``.  Drivers wrap the ``OSError``
    in a ``StorageError``; SQLite raises ``OperationalError`` (SQLITE_FULL)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc.errno
        sqlite_code = getattr(exc, "sqlite_errorcode", None)  # sqlite3.Error (not imported: the CLI is light)
        if sqlite_code is not None and (sqlite_code & 0xFF == SQLITE_FULL or "disk is full" in str(exc)):
            return errno.ENOSPC
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def no_space(operation: str, root: object) -> "Iterator[None]":
    """Raise :class:`NoSpace` (``operation: no space left on device under root``)
    for a full disk anywhere in what the block raises; anything else passes."""
    try:
        yield
    except NoSpace:
        raise
    except Exception as exc:
        code = full_disk_code(exc)
        if code is None:
            raise
        raise NoSpace(operation, root, code) from exc


class ExecError(DockyardError):
    """An exec driver operation failed; ``exit_code`` is set when a process
    could not be started (127: not found, 126: not executable)."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    @property
    def status(self) -> int:  # type: ignore[override]  # a class attribute elsewhere
        """A program that cannot be run is the request's fault (400), as in Docker."""
        return 400 if self.exit_code in (126, 127) else 500


class NetworkError(DockyardError):
    """A network driver operation failed."""
