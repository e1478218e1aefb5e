"""One registry, one set of credentials: authenticated requests and the errors
their answers mean.  Pulls and pushes get a :class:`Session` from the
:class:`~dockyard.registry.service.Registry` and share its connections and its
one :class:`~dockyard.registry.retry.Backoff`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urljoin

from .auth import Authenticator
from .errors import Unauthorized
from .retry import Backoff
from .transport import Transport, raise_for

if TYPE_CHECKING:
    from .auth import Credentials
    from .retry import Listener
    from .transport import Endpoint, Response


class Session:
    def __init__(self, endpoint: Endpoint, credentials: Credentials | None = None, backoff: Backoff | None = None,
                 timeout: int = 60, maxsize: int = 4) -> None:
        self.endpoint = endpoint
        self.host = endpoint.host
        self.backoff = backoff or Backoff()
        self.transport = Transport(endpoint, self.backoff, timeout=timeout, maxsize=maxsize)
        self.auth = Authenticator(self.transport, credentials)

    def url(self, path_or_url: str) -> str:
        """A registry API path (``/v2/...``, under a mirror's path prefix if any),
        or a URL the registry gave (absolute or relative to its host)."""
        if path_or_url.startswith("/v2/"):
            return self.endpoint.url(path_or_url)
        return urljoin(self.endpoint.base + "/", path_or_url)

    def request(self, method: str, path: str, scopes: Iterable[str], headers: Mapping[str, str] | None = None,
                body: bytes | Callable[[], Any] | None = None, retry: bool = True,
                listener: Listener | None = None) -> Response:
        """``method path`` (a path on the registry, or a URL it gave us) with the
        authorization ``scopes`` need; one more try after a 401 that a new token may
        cure.  ``body``: None, bytes, or a callable giving a fresh binary file for
        each try.  Returns the :class:`~dockyard.registry.transport.Response`."""
        self.auth.ping(listener)
        scopes = list(scopes)
        url = self.url(path)
        for attempt in range(2):
            hdrs = {**(headers or {}), **self.auth.headers(scopes)}
            data = body() if callable(body) else body
            try:
                resp = self.transport.request(method, url, hdrs, data, retry=retry, listener=listener)
            finally:
                if data is not body and hasattr(data, "close"):
                    data.close()  # type: ignore[union-attr]  # a file body() made
            if resp.status != 401 or attempt or not self.auth.challenged(resp, scopes):
                return resp
            resp.read_all(limit=1 << 20)
            resp.close()
        return resp

    def fail(self, resp: Response, what: str) -> NoReturn:
        """Raise the error a non-2xx answer to ``what`` means (401/403: whose fault)."""
        if resp.status in (401, 403):
            resp.read_all(limit=1 << 20)
            resp.close()
            creds = self.auth.creds
            if creds and (self.auth.scheme == "bearer" or resp.status == 403):
                who = creds.username or "the given token"
                raise Unauthorized(f"{what}: denied: requested access to the resource is denied "
                                   f"({self.host} gives {who} no access)")
            raise Unauthorized(f"{what}: {self.auth.refusal()}")
        raise_for(resp, what)

    def close(self) -> None:
        self.transport.close()
