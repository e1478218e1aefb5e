"""What a registry operation raises; every class is a :class:`DockyardError`, so the
API maps it to a status code and a one-line message.

    RegistryError                      anything a registry (or the way to it) did wrong → 500
    ├── RegistryUnreachable (ConnectionError)
    │                                  no connection after the retries (refused, reset, timeout)
    ├── RegistryUnavailable            it kept answering 5xx after the retries
    ├── TLSFailure                     the TLS handshake or the certificate was refused
    ├── Unauthorized (PermissionError) no, wrong or insufficient credentials → 401
    ├── BadContent (DigestMismatch)    a manifest, config or layer that is not what it claims
    │                                  (digest, size, diff ID, truncated or undecodable) → 502
    └── PullCancelled                  the client went away; what finished is kept for a rerun
    RegistryNotFound (NotFound)        no such repository, tag, manifest or platform → 404
    UnsupportedContent (InvalidParameter)
                                       an unknown or refused media type (schema 1, foreign layers) → 400

Builtins are subclassed where they fit (``ConnectionError``, ``PermissionError``), as
attrs does, so callers may catch either.  Two boundaries translate into this tree:
the transport (sockets, TLS, urllib3) and :func:`sent_by_registry` (what the image
model, :mod:`dockyard.imagespec`, refuses in a document a registry sent).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..engine.layers.content import DigestMismatch
from ..errors import DockyardError, NotFound
from ..imagespec import BadDocument, NoMatchingPlatform, UnsupportedMedia


class RegistryError(DockyardError):
    """A registry operation failed; ``code`` is the registry's error code if it gave one."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class RegistryUnreachable(RegistryError, ConnectionError):
    pass


class RegistryUnavailable(RegistryError):
    pass


class TLSFailure(RegistryError):
    pass


class Unauthorized(RegistryError, PermissionError):
    status = 401


class BadContent(RegistryError, DigestMismatch):
    status = 502


class PullCancelled(RegistryError):
    status = 499


class RegistryNotFound(NotFound):
    pass


#: one type for "a media type we do not handle", whoever finds it: the image model or a transfer
UnsupportedContent = UnsupportedMedia


@contextmanager
def sent_by_registry() -> Iterator[None]:
    """Around the image model's checks of what a registry sent: a malformed
    document is the registry's fault (:class:`BadContent`, 502), an index without
    our platform means no such image (:class:`RegistryNotFound`, 404); an
    unsupported media type stays what it is (400)."""
    try:
        yield
    except NoMatchingPlatform as exc:
        raise RegistryNotFound(str(exc)) from None
    except BadDocument as exc:
        raise BadContent(str(exc)) from None
