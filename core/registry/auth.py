"""Registry authentication: the ``/v2/`` ping, ``WWW-Authenticate`` challenges, HTTP
basic, and the bearer token flow of the distribution spec.

The flow: ``GET /v2/`` answers 200 (anonymous access) or 401 with a challenge.
``Basic realm=...`` means every request carries the user's password; ``Bearer
realm=...,service=...`` means tokens: ``GET <realm>?service=..&scope=repository:<name>:pull``
with the credentials as basic auth (or none, for anonymous pulls) answers
``{"token": ..., "expires_in": ...}``, sent as ``Authorization: Bearer``.  Tokens are
cached per set of scopes until they expire; a 401 on a request whose challenge
names a scope we hold no token for (``error="insufficient_scope"``) fetches one and
retries once.  ``registrytoken`` (a bearer token given by the client) is used as is;
``identitytoken`` (an OAuth2 refresh token) is exchanged with a POST to the realm.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from .errors import RegistryError, RegistryNotFound, RegistryUnreachable, TLSFailure, Unauthorized
from .transport import raise_for

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .retry import Listener
    from .transport import Response, Transport

log = logging.getLogger("dockyard.registry")
_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


def parse_challenge(header: str | None) -> tuple[str | None, dict[str, str]]:
    """``'Bearer realm="r",service="s"'`` → ``("bearer", {"realm": "r", "service": "s"})``."""
    header = (header or "").strip()
    if not header:
        return None, {}
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m:
            break
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", m.group(2)) if m.group(2) is not None else m.group(3)
        pos = m.end()
    return scheme.lower(), params


class Credentials:
    """What a client gave for one registry (Docker's AuthConfig): user and password,
    or a bearer ``registry_token``, or an OAuth2 ``identity_token``."""

    def __init__(self, username: str | None = None, password: str | None = None, identity_token: str | None = None,
                 registry_token: str | None = None) -> None:
        self.username, self.password = username or None, password or None
        self.identity_token, self.registry_token = identity_token or None, registry_token or None

    @classmethod
    def from_authconfig(cls, cfg: Mapping[str, Any] | None) -> Credentials:
        cfg = cfg or {}
        user, password = cfg.get("username"), cfg.get("password")
        if not user and cfg.get("auth"):
            try:
                user, _, password = base64.b64decode(cfg["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise Unauthorized("the credentials' auth field is not base64 user:password") from None
        return cls(user, password, cfg.get("identitytoken"), cfg.get("registrytoken"))

    def __bool__(self) -> bool:
        return bool(self.username or self.identity_token or self.registry_token)

    def basic(self) -> str:
        raw = f"{self.username or ''}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def scope(repo: str, *actions: str) -> str:
    return f"repository:{repo}:{','.join(actions)}"


class Authenticator:
    """Authorization headers for requests to one registry with one set of credentials."""

    def __init__(self, transport: Transport, credentials: Credentials | None = None) -> None:
        self.transport = transport
        self.creds = credentials or Credentials()
        self.host = transport.endpoint.host
        self.scheme: str | None = None
        self.params: dict[str, str] = {}
        self._pinged = False
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def ping(self, listener: Listener | None = None) -> None:
        """``GET /v2/``: learn how this registry wants to be authenticated."""
        with self._lock:
            if self._pinged:
                return
            resp = self._first_answer(listener)
            if resp.status == 401:
                self.scheme, self.params = parse_challenge(resp.header("WWW-Authenticate"))
                resp.read_all(limit=1 << 20)
                resp.close()
            elif resp.status == 404:
                resp.close()
                raise RegistryNotFound(f"{self.host} does not serve the registry API (GET /v2/ answered 404)")
            elif resp.status >= 300:
                raise_for(resp, f"{self.host}: GET /v2/")
            else:
                resp.read_all(limit=1 << 20)
                resp.close()
            if self.scheme not in (None, "basic", "bearer"):
                raise RegistryError(f"{self.host} asks for unsupported authentication {self.scheme!r}")
            self._pinged = True

    def _first_answer(self, listener: Listener | None) -> Response:
        """``GET /v2/`` as dockerd's endpoints go: an insecure registry over HTTPS
        first (one try: its certificate unchecked), then, if that failed at the
        transport (no TLS there, no answer), over plain HTTP; a mirror once (a
        mirror that is down is skipped, not waited for)."""
        endpoint = self.transport.endpoint
        if endpoint.plain_fallback:
            try:
                return self.transport.request("GET", endpoint.url("/v2/"), retry=False)
            except (TLSFailure, RegistryUnreachable) as exc:
                log.debug("%s: HTTPS failed (%s): insecure registry, trying plain HTTP", self.host, exc)
                endpoint.to_plain()
        return self.transport.request("GET", endpoint.url("/v2/"), listener=listener, retry=not endpoint.mirror)

    def headers(self, scopes: list[str]) -> dict[str, str]:
        """The Authorization header for a request needing ``scopes`` (``[]``: none)."""
        if self.scheme == "basic":
            return {"Authorization": self.creds.basic()} if self.creds.username else {}
        if self.scheme == "bearer":
            return {"Authorization": f"Bearer {self.token(scopes)}"}
        return {}

    def challenged(self, resp: Response, scopes: list[str]) -> bool:
        """After a 401: True if a new token for the challenge's scope may help."""
        scheme, params = parse_challenge(resp.header("WWW-Authenticate"))
        if scheme != "bearer" or self.scheme != "bearer":
            return False
        wanted = sorted(set(scopes) | ({params["scope"]} if params.get("scope") else set()))
        key = tuple(wanted)
        with self._lock:
            had = key in self._tokens
            self._tokens.pop(key, None)
        if params.get("scope") and params["scope"] not in scopes:
            scopes.append(params["scope"])
            return True
        return not had

    def token(self, scopes: list[str]) -> str:
        if self.creds.registry_token:
            return self.creds.registry_token
        key = tuple(sorted(set(scopes)))
        with self._lock:
            cached = self._tokens.get(key)
            if cached and cached[1] > time.monotonic():
                return cached[0]
        token, ttl = self._fetch_token(list(key))
        with self._lock:
            self._tokens[key] = (token, time.monotonic() + max(ttl - 5, 1))
        return token

    def _fetch_token(self, scopes: list[str]) -> tuple[str, int]:
        realm = self.params.get("realm")
        if not realm or urlsplit(realm).scheme not in ("http", "https"):
            raise RegistryError(f"{self.host}: bearer challenge without a usable realm ({realm!r})")
        query = [("service", self.params["service"])] if self.params.get("service") else []
        query += [("scope", s) for s in scopes]
        if self.creds.identity_token:
            body = urlencode(query + [("grant_type", "refresh_token"), ("refresh_token", self.creds.identity_token),
                                      ("client_id", "dockyard")]).encode()
            resp = self.transport.request("POST", realm, body=body,
                                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        else:
            if self.creds.username:
                query.append(("account", self.creds.username))
            headers = {"Authorization": self.creds.basic()} if self.creds.username else {}
            sep = "&" if "?" in realm else "?"
            resp = self.transport.request("GET", realm + (sep + urlencode(query) if query else ""), headers=headers)
        if resp.status in (401, 403):
            resp.read_all(limit=1 << 20)
            resp.close()
            raise Unauthorized(self.refusal())
        if resp.status >= 300:
            raise_for(resp, f"{self.host}: token from {realm}")
        raw = resp.read_all(limit=1 << 20)
        resp.close()
        try:
            doc = json.loads(raw)
            token = doc.get("token") or doc.get("access_token")
            ttl = int(doc.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            raise RegistryError(f"{self.host}: the token server {realm} answered no token") from None
        if not token:
            raise RegistryError(f"{self.host}: the token server {realm} answered no token")
        return token, ttl

    def refusal(self) -> str:
        if self.creds:
            return f"unauthorized: incorrect username or password for {self.host}"
        return f"unauthorized: {self.host} requires authentication: run `dockyard login {self.host}`"

    def login(self) -> None:
        """Check the credentials the way ``docker login`` does; raise Unauthorized."""
        self.ping()
        if self.scheme == "basic":
            resp = self.transport.request("GET", self.transport.endpoint.url("/v2/"), headers=self.headers([]))
            resp.read_all(limit=1 << 20)
            resp.close()
            if resp.status in (401, 403):
                raise Unauthorized(self.refusal())
            if resp.status >= 300:
                raise RegistryError(f"{self.host}: GET /v2/ answered {resp.status} {resp.reason}")
        elif self.scheme == "bearer":
            self.token([])
