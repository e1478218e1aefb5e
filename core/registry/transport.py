"""HTTP/1.1 to registries: TLS with Docker's ``certs.d``, plain HTTP only for
registries named insecure, keep-alive pooling, redirects, retries with backoff.

Blocking on purpose (``http.client``): pulls and pushes run in worker threads, a
download is a loop of reads into the content store, and each blob gets its own
connection from the pool, so parallel transfers are parallel threads.

This module is the one place where socket, TLS and ``http.client`` errors become
registry errors (:mod:`dockyard.registry.errors`): callers see
:class:`RegistryUnreachable`, :class:`TLSFailure` or an HTTP status, never an
``OSError``.  Nothing here falls back from HTTPS to HTTP.
"""

import http.client
import json
import os
import random
import socket
import ssl
import threading
import time
from urllib.parse import urljoin, urlsplit

from .errors import (RegistryError, RegistryNotFound, RegistryUnavailable, RegistryUnreachable, TLSFailure,
                     Unauthorized)

CERTS_D = "/etc/dockyard/certs.d"
#: where CAs are looked for by default: ours, then Docker's (as podman also does)
CERTS_DIRS = (CERTS_D, "/etc/docker/certs.d")
RETRY_STATUS = (429, 500, 502, 503, 504)
REDIRECTS = (301, 302, 303, 307, 308)
USER_AGENT = "dockyard"
BLOCK = 1 << 20  # what http.client reads at once from a file body
_NET_ERRORS = (OSError, http.client.HTTPException)


def _dirs(certs_dir):
    return [certs_dir] if isinstance(certs_dir, (str, os.PathLike)) else list(certs_dir)


def tls_context(host, certs_dir=CERTS_DIRS):
    """The system's CAs plus Docker-style ``<certs_dir>/<host>/*.crt`` CAs and
    ``*.cert``/``*.key`` client certificate pairs (``certs_dir``: one directory or
    several, all read)."""
    ctx = ssl.create_default_context()
    for folder in (os.path.join(d, host) for d in _dirs(certs_dir)):
        if os.path.isdir(folder):
            _load_folder(ctx, folder)
    return ctx


def _load_folder(ctx, folder):
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
    """How to reach one registry host (``127.0.0.1:5000`` as references spell it)."""

    def __init__(self, host, insecure=False, certs_dir=CERTS_DIRS):
        self.host = host
        self.insecure = insecure
        self.scheme = "http" if insecure else "https"
        api_host = "registry-1.docker.io" if host in ("docker.io", "index.docker.io") else host
        self.base = f"{self.scheme}://{api_host}"
        self.certs_dir = certs_dir
        self.ssl = None if insecure else tls_context(host, certs_dir)

    def url(self, path):
        return self.base + path

    def __repr__(self):
        return f"Endpoint({self.base})"


class Response:
    """A response whose body is read with :meth:`read` (``n`` bytes at most) or
    :meth:`read_all`; closing it hands a fully read keep-alive connection back."""

    def __init__(self, transport, key, conn, raw, url):
        self._transport, self._key, self._conn, self.raw, self.url = transport, key, conn, raw, url
        self.status, self.reason, self.headers = raw.status, raw.reason, raw.headers

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def read(self, n=1 << 20):
        try:
            return self.raw.read(n)
        except _NET_ERRORS as exc:
            self._conn.close()
            raise RegistryUnreachable(f"connection to {urlsplit(self.url).netloc} lost while reading: "
                                      f"{_describe(exc)}") from None

    def read_all(self, limit=None):
        parts, got = [], 0
        while data := self.read():
            got += len(data)
            if limit is not None and got > limit:
                self.close()
                raise RegistryError(f"answer from {self.url} is larger than {limit} bytes")
            parts.append(data)
        return b"".join(parts)

    def close(self):
        if self._conn is None:
            return
        reusable = self.raw.isclosed() and not self.raw.will_close
        if not reusable:
            self.raw.close()
            self._conn.close()
        self._transport._release(self._key, self._conn if reusable else None)
        self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Transport:
    """Requests to an :class:`Endpoint` and the URLs it sends us to (redirects to
    storage, token realms).  ``retries`` more attempts after a connection error or a
    5xx answer, waiting ``backoff`` seconds doubled each time (capped at 10 s)."""

    def __init__(self, endpoint, timeout=60, retries=4, backoff=0.5):
        self.endpoint = endpoint
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self._idle, self._lock = {}, threading.Lock()
        self._contexts = {}

    # connections -------------------------------------------------------------
    def _ctx(self, scheme, netloc):
        if scheme != "https":
            return None
        if netloc == urlsplit(self.endpoint.base).netloc and self.endpoint.ssl is not None:
            return self.endpoint.ssl
        if netloc not in self._contexts:  # a storage or token host: its own certs.d, if any
            self._contexts[netloc] = tls_context(netloc, self.endpoint.certs_dir)
        return self._contexts[netloc]

    def _acquire(self, key):
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        scheme, netloc = key
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=self.timeout, context=self._ctx(scheme, netloc),
                                               blocksize=BLOCK), False
        if scheme == "http":
            return http.client.HTTPConnection(netloc, timeout=self.timeout, blocksize=BLOCK), False
        raise RegistryError(f"unsupported URL scheme {scheme!r}")

    def _release(self, key, conn):
        if conn is None:
            return
        with self._lock:
            self._idle.setdefault(key, []).append(conn)

    def close(self):
        with self._lock:
            for conns in self._idle.values():
                for conn in conns:
                    conn.close()
            self._idle.clear()

    # requests ----------------------------------------------------------------
    def request(self, method, url, headers=None, body=None, retry=True, redirects=5, on_retry=None):
        """Send one request (``body``: None, bytes, or a callable returning a fresh
        binary file for each attempt, given a Content-Length header); return the :class:`Response` (any status but the
        retried ones once retries are spent).  Redirects are followed for GET and
        HEAD; ``Authorization`` is not sent to another host."""
        attempt = 0
        while True:
            try:
                resp = self._once(method, url, headers, body)
            except RegistryUnreachable as exc:
                if not retry or attempt >= self.retries:
                    raise
                reason = str(exc)
            else:
                if resp.status in REDIRECTS and method in ("GET", "HEAD") and redirects > 0:
                    location = resp.header("Location")
                    resp.read_all()
                    resp.close()
                    if not location:
                        raise RegistryError(f"{url}: redirect without a Location")
                    target = urljoin(url, location)
                    hdrs = dict(headers or {})
                    if urlsplit(target).netloc != urlsplit(url).netloc:
                        hdrs = {k: v for k, v in hdrs.items() if k.lower() != "authorization"}
                    url, headers, redirects = target, hdrs, redirects - 1
                    continue
                if resp.status not in RETRY_STATUS or not retry or attempt >= self.retries:
                    return resp
                reason = f"{resp.status} {resp.reason}"
                resp.read_all(limit=1 << 20)
                resp.close()
            delay = min(self.backoff * 2 ** attempt, 10.0) * (0.9 + 0.2 * random.random())
            attempt += 1
            if on_retry is not None:
                on_retry(attempt, delay, reason)
            time.sleep(delay)

    def _once(self, method, url, headers, body):
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
        for fresh_tries in range(2):
            conn, reused = self._acquire(key)
            data = body() if callable(body) else body
            try:
                conn.request(method, target, body=data, headers=hdrs)
                raw = conn.getresponse()
            except ssl.SSLCertVerificationError as exc:
                conn.close()
                raise TLSFailure(self._tls_hint(parts.netloc, f"certificate refused: {exc.verify_message}")) from None
            except ssl.SSLError as exc:
                conn.close()
                if "WRONG_VERSION_NUMBER" in str(exc) or "record layer" in str(exc).lower():
                    raise TLSFailure(self._tls_hint(parts.netloc, "it does not speak TLS (a plain HTTP "
                                                                  "registry?)")) from None
                raise TLSFailure(self._tls_hint(parts.netloc, f"TLS failed: {exc}")) from None
            except _NET_ERRORS as exc:
                conn.close()
                if reused and fresh_tries == 0 and _stale(exc):
                    continue  # an idle keep-alive connection the server had closed
                raise RegistryUnreachable(f"{method} {parts.scheme}://{parts.netloc}{parts.path}: "
                                          f"{_describe(exc)}") from None
            finally:
                if hasattr(data, "close") and callable(body):
                    data.close()
            return Response(self, key, conn, raw, url)

    def _tls_hint(self, netloc, problem):
        return (f"{netloc}: {problem}; for a private CA put it in {_dirs(self.endpoint.certs_dir)[0]}/{netloc}/ca.crt, "
                f"or, for a plain HTTP registry, start the daemon with --insecure-registry {netloc}")


def _stale(exc):
    return isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                            http.client.BadStatusLine))


def _describe(exc):
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, http.client.IncompleteRead):
        return f"answer cut short ({len(exc.partial)} bytes read, {exc.expected} more expected)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__


def registry_errors(body):
    """``[(code, message)]`` of a registry's ``{"errors": [...]}`` body (or [])."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    return [(str(e.get("code", "")), str(e.get("message", ""))) for e in errors or [] if isinstance(e, dict)]


def raise_for(resp, what):
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
