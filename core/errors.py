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
    ├── ExecError                         exec driver failures (``exit_code`` attr)
    └── NetworkError                      network driver failures

Drivers raise the driver-kind errors; the API maps each class to a status code in
one place (``dockyard.daemon.errors``).
"""


class DockyardError(Exception):
    """Base of every error Dockyard raises on purpose."""

    status = 500


class ConfigError(DockyardError, ValueError):
    """A configuration file or flag is wrong; the message names file and key."""


class PluginError(DockyardError):
    """A driver or extension could not be loaded or validated."""


class DriverUnsupported(PluginError):
    """A driver reported that it cannot run on this machine (``reason`` attr)."""

    def __init__(self, kind, name, reason):
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


class ExecError(DockyardError):
    """An exec driver operation failed; ``exit_code`` is set when a process
    could not be started (127: not found, 126: not executable)."""

    def __init__(self, message, exit_code=None):
        super().__init__(message)
        self.exit_code = exit_code

    @property
    def status(self):
        """A program that cannot be run is the request's fault (400), as in Docker."""
        return 400 if self.exit_code in (126, 127) else 500


class NetworkError(DockyardError):
    """A network driver operation failed."""
