"""What the client raises, as a tree::

    ClientError                        anything the client raises on purpose
    ├── DaemonUnreachable (ConnectionError)
    │                                  nobody answers at the host (or no permission)
    ├── ProtocolError                  the daemon's answer could not be understood
    └── APIError                       the daemon answered with an error
        ├── NotFound                   ... with status 404
        └── ProgressError              ... inside a 200 progress stream (``{"error": ...}``)

``ClientError`` and ``ProtocolError`` are the wire level's (:mod:`dockyard.wire`),
which raises them too; the rest are what an answer means.  The CLI catches these
by name, so they live apart from the requests that raise them.
"""

from dockyard.wire import ClientError, ProtocolError, loads


class DaemonUnreachable(ClientError, ConnectionError):
    """No daemon answers at ``host`` (socket missing, refused, or not permitted)."""

    def __init__(self, host: str, cause: OSError) -> None:
        self.host = host
        self.cause = cause
        if isinstance(cause, PermissionError):
            msg = (f"permission denied while trying to connect to the Dockyard daemon "
                   f"socket at {host}: {cause.strerror or cause}")
        else:
            msg = f"Cannot connect to the Dockyard daemon at {host}. Is the dockyard daemon running?"
        super().__init__(msg)


class APIError(ClientError):
    """The daemon answered ``status`` with Docker's error body ``{"message": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


class NotFound(APIError, LookupError):
    """The daemon answered 404 (no such container, image, ...)."""


class ProgressError(APIError):
    """An ``{"error": ...}`` message inside a progress stream whose HTTP status was 2xx."""


def api_error(status: int, body: object, reason: str = "") -> APIError:
    """Build the right APIError from an error response's raw ``body``."""
    message = None
    text = body.decode("utf-8", "replace").strip() if isinstance(body, bytes) else str(body or "")
    try:
        parsed = loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("message") is not None:
        message = str(parsed["message"])
    if message is None:
        message = text or reason or f"HTTP {status}"
    return (NotFound if status == 404 else APIError)(status, message)


__all__ = ["ClientError", "ProtocolError", "DaemonUnreachable", "APIError", "NotFound", "ProgressError", "api_error"]
