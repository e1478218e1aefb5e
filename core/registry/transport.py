"""HTTP/1.1 to registries, on urllib3 2: TLS with Docker's ``certs.d``, plain HTTP
only for insecure registries (after HTTPS failed) and ``http://`` mirrors,
keep-alive pooling per host, redirects, retries with backoff.

Blocking on purpose: pulls and pushes run in worker threads, a download is a loop
of reads into the content store, and each blob takes its own connection from the
pool (``maxsize`` per host), so parallel transfers are parallel threads.

What urllib3 does here: the pools (a :class:`urllib3.PoolManager` per session,
whose HTTPS pools each get their host's TLS context from ``certs.d``: CA files
``*.crt``, client certificate pairs ``*.cert``/``*.key``, on top of the system's
CAs); redirects of GET and HEAD (a registry sends blob downloads to its storage),
dropping ``Authorization`` on the way to another host (``Retry``'s
``remove_headers_on_redirect``); retries, paced by the one
:class:`~dockyard.registry.retry.Backoff` (and ``Retry-After``).  The step from
HTTPS to HTTP of an insecure registry is the ping's
(:meth:`dockyard.registry.auth.Authenticator.ping`), never a request's.

This module is the one place where urllib3's, socket and TLS errors become
registry errors (:mod:`dockyard.registry.errors`): callers see
:class:`RegistryUnreachable`, :class:`TLSFailure` or an HTTP status, never an
``OSError`` or a urllib3 exception.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
from typing import IO, Any, Iterable, NoReturn
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import MaxRetryError

from .errors import (RegistryError, RegistryNotFound, RegistryUnavailable, RegistryUnreachable, TLSFailure,
                     Unauthorized)
from .retry import Backoff, Listener, describe

CERTS_D = "/etc/dockyard/certs.d"
#: where CAs are looked for by default: ours, then Docker's (as podman also does)
CERTS_DIRS = (CERTS_D, "/etc/docker/certs.d")
USER_AGENT = "dockyard"
BLOCK = 1 << 20  # what a request body is read and sent by
DRAIN = 64 << 10  # an unread rest of an answer up to this is read, to keep the connection
_NET_ERRORS = (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError)


def _dirs(certs_dir: str | os.PathLike[str] | Iterable[str]) -> list[str | os.PathLike[str]]:
    return [certs_dir] if isinstance(certs_dir, (str, os.PathLike)) else list(certs_dir)


def tls_context(host: str, certs_dir: str | Iterable[str] = CERTS_DIRS, verify: bool = True) -> ssl.SSLContext:
    """The system's CAs plus Docker-style ``<certs_dir>/<host>/*.crt`` CAs and
    ``*.cert``/``*.key`` client certificate pairs (``certs_dir``: one directory or
    several, all read).  ``verify=False``: an insecure registry's, whose
    certificate is not checked (dockerd's InsecureSkipVerify); client certificates
    are still offered.  (An unverified context skips loading the system's CAs:
    ~20 ms that nothing would read.)"""
    ctx = ssl.create_default_context() if verify else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for folder in (os.path.join(d, host) for d in _dirs(certs_dir)):
        if os.path.isdir(folder):
            _load_folder(ctx, folder)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _load_folder(ctx: ssl.SSLContext, folder: str) -> None:
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        try:
            if name.endswith(".crt"):
                ctx.load_verify_locations(cafile=path)
            elif name.endswith(".cert"):
                key = path[:-len(".cert")] + ".key"
                if not os.path.exists(key):
                    raise TLSFailure(f"{path}: client certificate without its key {os.path.basename(key)}")
                ctx.load_cert_chain(path, key)
        except (ssl.SSLError, OSError) as exc:
            raise TLSFailure(f"{path}: cannot load: {exc}") from None


class Endpoint:
    """How to reach one registry host (``127.0.0.1:5000`` as references spell it).

    ``insecure``: the certificate is not verified, and :meth:`to_plain` may turn
    the endpoint to plain HTTP once HTTPS failed at the transport (``plain_fallback``,
    dockerd's second endpoint of an insecure registry).  ``url``: a mirror's URL
    (scheme, host and an optional path prefix), used as given."""

    def __init__(self, host: str, insecure: bool = False, certs_dir: str | Iterable[str] = CERTS_DIRS,
                 url: str | None = None) -> None:
        self.host = host
        self.insecure = insecure
        self.certs_dir = certs_dir
        self.mirror = url is not None
        if url is not None:
            parts = urlsplit(url)
            self.scheme, self.netloc, prefix = parts.scheme, parts.netloc, parts.path.rstrip("/")
        else:
            api_host = "registry-1.docker.io" if host in ("docker.io", "index.docker.io") else host
            self.scheme, self.netloc, prefix = "https", api_host, ""
        self.base = f"{self.scheme}://{self.netloc}{prefix}"
        self.plain_fallback = insecure and url is None
        self.ssl = None if self.scheme == "http" else tls_context(
            self.netloc if self.mirror else host, certs_dir, verify=not insecure)

    def to_plain(self) -> None:
        """Plain HTTP from now on (an insecure registry that does not speak TLS)."""
        self.scheme, self.plain_fallback, self.ssl = "http", False, None
        self.base = "http://" + self.base.split("://", 1)[1]

    def url(self, path: str) -> str:
        return self.base + path

    def __repr__(self) -> str:
        return f"Endpoint({self.base})"


class Response:
    """An answer whose body is read with :meth:`read` (``n`` bytes at most) or
    :meth:`read_all`, as sent (no content decoding); closing it hands the
    connection back to its pool, or drops it if much of the body is unread."""

    def __init__(self, raw: urllib3.BaseHTTPResponse, url: str) -> None:
        self.raw, self.url, self._open = raw, url, True
        self.status, self.reason, self.headers = raw.status, raw.reason, raw.headers

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def read(self, n: int = 1 << 20) -> bytes:
        try:
            return self.raw.read(n, decode_content=False)
        except _NET_ERRORS as exc:
            self.close()
            where = urlsplit(getattr(self.raw, "url", None) or self.url).netloc or urlsplit(self.url).netloc
            raise RegistryUnreachable(f"connection to {where} lost while reading: {describe(exc)}") from None

    def read_all(self, limit: int | None = None) -> bytes:
        parts, got = [], 0
        while data := self.read():
            got += len(data)
            if limit is not None and got > limit:
                self.close()
                raise RegistryError(f"answer from {self.url} is larger than {limit} bytes")
            parts.append(data)
        return b"".join(parts)

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        raw = self.raw
        left = raw.length_remaining
        if raw.closed or (left is not None and left <= DRAIN):
            raw.drain_conn()  # nothing or little left: read it, the connection goes back to the pool
        else:
            raw.close()  # a body left unread: the connection cannot carry another request
            raw.release_conn()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Pools(urllib3.PoolManager):
    """urllib3's pools, each HTTPS one with its host's TLS context: the registry's
    from its :class:`Endpoint`, a storage or token host's from its own ``certs.d``
    folder (if any)."""

    def __init__(self, endpoint: Endpoint, timeout: float, maxsize: int) -> None:
        super().__init__(num_pools=10, maxsize=maxsize, block=False, blocksize=BLOCK,
                         timeout=urllib3.Timeout(connect=timeout, read=timeout))
        self.endpoint = endpoint
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def connection_from_host(self, host: str | None, port: int | None = None, scheme: str | None = "http",
                             pool_kwargs: dict[str, Any] | None = None) -> urllib3.HTTPConnectionPool:
        if scheme == "https":
            pool_kwargs = {**(pool_kwargs or {}), "ssl_context": self._context(host, port)}
        return super().connection_from_host(host, port, scheme, pool_kwargs)

    def _context(self, host: str | None, port: int | None) -> ssl.SSLContext:
        netloc = str(host) if port in (None, 443) else f"{host}:{port}"
        if netloc == self.endpoint.netloc and self.endpoint.ssl is not None:
            return self.endpoint.ssl
        with self._lock:
            if netloc not in self._contexts:
                self._contexts[netloc] = tls_context(netloc, self.endpoint.certs_dir)
            return self._contexts[netloc]


class Transport:
    """Requests to an :class:`Endpoint` and the URLs it sends us to (redirects to
    storage, token realms), paced by ``backoff``; ``maxsize`` connections kept per
    host."""

    def __init__(self, endpoint: Endpoint, backoff: Backoff | None = None, timeout: float = 60,
                 maxsize: int = 4) -> None:
        self.endpoint = endpoint
        self.backoff = backoff or Backoff()
        self._pools = _Pools(endpoint, timeout, maxsize)

    def close(self) -> None:
        self._pools.clear()

    def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                body: bytes | IO[bytes] | None = None, retry: bool = True,
                listener: Listener | None = None) -> Response:
        """Send one request (``body``: None, bytes, or a binary file read once, given
        a Content-Length header); return the :class:`Response`: any status, the
        retried ones once the retries are spent.  ``retry=False``: no second try
        (a request that must not be repeated).  GET and HEAD follow redirects;
        ``Authorization`` does not go to another host.  ``listener`` hears the
        retries (:class:`~dockyard.registry.retry.Listener`)."""
        hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
        try:
            raw = self._pools.urlopen(method, url, headers=hdrs, body=body,
                                      retries=self.backoff.retry(listener, None if retry else 0),
                                      redirect=method in ("GET", "HEAD"), preload_content=False,
                                      decode_content=False)
        except MaxRetryError as exc:
            raise self._error(method, url, exc.reason or exc, exc.pool) from None
        except _NET_ERRORS as exc:
            raise self._error(method, url, exc) from None
        return Response(raw, url)

    def _error(self, method: str, url: str, exc: BaseException,
               pool: urllib3.connectionpool.ConnectionPool | None = None) -> RegistryError:
        parts = urlsplit(url)
        netloc, scheme = parts.netloc, parts.scheme
        if pool is not None and getattr(pool, "host", None):  # the host that failed (maybe a redirect's)
            netloc = pool.host if pool.port in (None, 80, 443) else f"{pool.host}:{pool.port}"
            scheme = pool.scheme or scheme
        tls = _ssl_error(exc)
        if tls is not None:
            if isinstance(tls, ssl.SSLCertVerificationError):
                return TLSFailure(self._tls_hint(netloc, f"certificate refused: {tls.verify_message}"))
            if "WRONG_VERSION_NUMBER" in str(tls) or "record layer" in str(tls).lower():
                return TLSFailure(self._tls_hint(netloc, "it does not speak TLS (a plain HTTP registry?)"))
            return TLSFailure(self._tls_hint(netloc, f"TLS failed: {tls}"))
        if isinstance(exc, urllib3.exceptions.LocationValueError):
            return RegistryError(f"{method} {url}: {exc}")
        return RegistryUnreachable(f"{method} {scheme}://{netloc}{parts.path if netloc == parts.netloc else ''}: "
                                   f"{describe(exc)}")

    def _tls_hint(self, netloc: str, problem: str) -> str:
        folder = (_dirs(self.endpoint.certs_dir) or [CERTS_D])[0]
        return (f"{netloc}: {problem}; for a private CA put it in {folder}/{netloc}/ca.crt, "
                f"or, for a plain HTTP registry, start the daemon with --insecure-registry {netloc}")


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` under urllib3's wrapping, if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError):
            return cur
        nxt = cur.__cause__ or cur.__context__
        if nxt is None and cur.args and isinstance(cur.args[0], BaseException):
            nxt = cur.args[0]
        cur = nxt
    return None


def registry_errors(body: bytes) -> list[tuple[str, str]]:
    """``[(code, message)]`` of a registry's ``{"errors": [...]}`` body (or [])."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    return [(str(e.get("code", "")), str(e.get("message", ""))) for e in errors or [] if isinstance(e, dict)]


def raise_for(resp: Any, what: str) -> NoReturn:
    """Raise the error that a non-2xx answer ``resp`` to ``what`` means."""
    body = resp.read_all(limit=1 << 20) if resp.status != 304 else b""
    resp.close()
    errs = registry_errors(body)
    code = errs[0][0] if errs else None
    detail = "; ".join(f"{c.lower().replace('_', ' ')}: {m}" if c else m for c, m in errs) or (
        body.decode("utf-8", "replace").strip()[:200] or f"{resp.status} {resp.reason}")
    if resp.status == 401:
        raise Unauthorized(f"{what}: unauthorized: {detail}", code)
    if resp.status == 403:
        raise Unauthorized(f"{what}: denied: {detail}", code)
    if resp.status == 404:
        raise RegistryNotFound(f"{what} not found: {detail}")  # Docker's words
    if resp.status >= 500:
        raise RegistryUnavailable(f"{what}: the registry answered {resp.status} {resp.reason} "
                                  f"(after retries): {detail}", code)
    raise RegistryError(f"{what}: {resp.status} {resp.reason}: {detail}", code)
