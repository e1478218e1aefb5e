"""``GET /images/search``: a registry's search API, as dockerd asks it.

Search is not part of the distribution spec (v2); registries that have it serve
Docker's v1 API, ``GET /v1/search?q=TERM&n=LIMIT`` (Docker Hub at
``https://index.docker.io/v1/``).  The rules are dockerd's
(``registry/search.go``, ``search_endpoint_v1.go``):

* ``TERM`` names the registry the way references do (``127.0.0.1:5000/app``:
  that registry, term ``app``; ``busybox``: Docker Hub, where a ``library/``
  prefix is dropped); a term with a scheme is refused.
* A registry other than Docker Hub is first pinged (``/v1/_ping``) over HTTPS; an
  insecure one (:mod:`.endpoints`) then over plain HTTP.  A registry with no
  search API (Debian's docker-registry, any v2-only registry) answers 404 to the
  search itself: dockerd's "Unexpected status code 404", with the reason.
* ``limit`` 1..100 (default 25); ``filters``: ``is-official``, ``is-automated``
  (booleans), ``stars`` (the least star count, the largest given wins).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ..errors import InvalidParameter
from .auth import Credentials
from .errors import RegistryError, RegistryUnreachable, TLSFailure
from .names import DOCKER_HUB
from .transport import Endpoint, Transport

if TYPE_CHECKING:
    from .endpoints import Policy

DEFAULT_LIMIT = 25
FILTERS = ("is-automated", "is-official", "stars")
HUB_SEARCH = "https://index.docker.io"
_FIELDS = ("name", "description", "star_count", "is_official", "is_automated")


def split_term(term: str) -> tuple[str, str]:
    """``(registry host, remote term)`` (moby's splitReposSearchTerm)."""
    first, sep, rest = term.partition("/")
    if not sep or not ("." in first or ":" in first or first == "localhost"):
        return DOCKER_HUB, term
    return first, rest


def check_filters(filters: dict[str, list[str]]) -> tuple[bool | None, bool | None, int | None]:
    """``(is-official, is-automated, least stars)`` of the API's ``filters``."""
    for key in filters:
        if key not in FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")

    def boolean(key: str) -> bool | None:
        values = filters.get(key) or []
        if not values:
            return None
        value = values[-1].lower()
        if value not in ("true", "1", "false", "0"):
            raise InvalidParameter(f"invalid filter '{key}={values[-1]}'")
        return value in ("true", "1")

    stars = None
    for value in filters.get("stars") or []:
        try:
            stars = max(stars or 0, int(value))
        except ValueError:
            raise InvalidParameter(f"invalid filter 'stars={value}'") from None
    return boolean("is-official"), boolean("is-automated"), stars


def search(policy: Policy, certs_dirs: list[str], term: str, limit: int | None = None,
           filters: dict[str, list[str]] | None = None, auth: dict[str, Any] | None = None,
           timeout: int = 60) -> list[dict[str, Any]]:
    """The registry's results for ``term``, filtered as dockerd filters them."""
    official, automated, stars = check_filters(filters or {})
    if "://" in term:
        raise InvalidParameter(f"invalid repository name: repository name ({term}) should not have a scheme")
    limit = limit or DEFAULT_LIMIT
    if not 1 <= limit <= 100:
        raise InvalidParameter(f"limit {limit} is outside the range of [1, 100]")
    host, remote = split_term(term)
    if host == DOCKER_HUB:
        endpoint = Endpoint(DOCKER_HUB, certs_dir=certs_dirs, url=HUB_SEARCH)
        remote = remote.removeprefix("library/")
    else:
        endpoint = Endpoint(host, insecure=policy.is_insecure(host), certs_dir=certs_dirs)
    transport = Transport(endpoint, timeout=timeout)
    try:
        if host != DOCKER_HUB:
            _ping(transport)
        headers = {"X-Docker-Token": "true"}
        creds = Credentials.from_authconfig(auth)
        if creds.username:
            headers["Authorization"] = creds.basic()
        resp = transport.request("GET", endpoint.url("/v1/search?" + urlencode({"q": remote, "n": limit})),
                                 headers)
        body = resp.read_all(limit=8 << 20)
        resp.close()
    finally:
        transport.close()
    if resp.status != 200:
        why = (f": {host} has no search API (GET /v1/search answered 404; registries that serve only the "
               "distribution API v2 have none)") if resp.status == 404 else ""
        raise RegistryError(f"Unexpected status code {resp.status}{why}")
    try:
        results = json.loads(body).get("results") or []
    except (ValueError, AttributeError):
        raise RegistryError(f"error decoding registry search results from {host}") from None
    out = []
    for item in results:
        if not isinstance(item, dict):
            continue
        is_official, is_automated = bool(item.get("is_official")), bool(item.get("is_automated"))
        try:
            star_count = int(item.get("star_count") or 0)
        except (TypeError, ValueError):
            star_count = 0
        if official is not None and is_official != official:
            continue
        if automated is not None and is_automated != automated:
            continue
        if stars is not None and star_count < stars:
            continue
        out.append({"description": str(item.get("description") or ""), "is_official": is_official,
                    "is_automated": is_automated, "name": str(item.get("name") or ""), "star_count": star_count})
    return out


def _ping(transport: Transport) -> None:
    """``GET /v1/_ping``: any answer will do (dockerd reads none of it); an
    insecure registry that fails over HTTPS is tried over plain HTTP."""
    endpoint = transport.endpoint
    try:
        transport.request("GET", endpoint.url("/v1/_ping"), retry=False).close()
        return
    except (TLSFailure, RegistryUnreachable) as exc:
        if not endpoint.plain_fallback:
            raise InvalidParameter(f"invalid registry endpoint {endpoint.base}/v1/: {exc}") from None
        first = exc
    endpoint.to_plain()
    try:
        transport.request("GET", endpoint.url("/v1/_ping"), retry=False).close()
    except (TLSFailure, RegistryUnreachable) as exc:
        raise InvalidParameter(f"invalid registry endpoint {endpoint.base}/v1/. HTTPS attempt: {first}. "
                               f"HTTP attempt: {exc}") from None
