"""Where a registry is reached: which hosts are *insecure*, and the mirrors a pull
of each registry host tries first.  The rules are dockerd's
(``registry/config.go``, ``service_v2.go``, ``distribution/pull.go``):

* **Insecure registries** are named by ``HOST[:PORT]`` or by a CIDR
  (``--insecure-registry 10.0.0.0/8``); loopback (``127.0.0.0/8``, ``::1/128``) is
  always insecure, a stop-gap dockerd keeps for registries on the same host.  A
  name matches exactly (or without its port); otherwise the host (its address, or
  what its name resolves to) must lie in a CIDR.  An insecure registry is still
  tried over HTTPS first, with the certificate not verified; only when that fails
  at the transport (no TLS there, or no answer) does plain HTTP follow.
* **Mirrors** are given per registry host (``--registry-mirror HOST=URL``, or a bare
  URL meaning Docker Hub, as dockerd's flag; ``[registry."HOST"] mirrors = [...]``
  in ``plugins.toml``).  A pull tries each mirror in order and falls back to the
  registry itself when none has the image, unless ``mirror_fallback = false``.
  A mirror's URL keeps its scheme: ``http://`` is plain HTTP.  Pushes never go to
  mirrors.

Resolving a name blocks: :meth:`Policy.is_insecure` is called by pulls and pushes
in their worker threads, never on the daemon's event loop.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .names import DOCKER_HUB, registry_host

log = logging.getLogger("dockyard.registry")

#: always insecure, as in dockerd (moby's loadInsecureRegistries)
LOOPBACK = ("127.0.0.0/8", "::1/128")

_HOSTPORT = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_insecure(values: Iterable[str] | None) -> list[str]:
    """Check ``--insecure-registry`` values (``HOST[:PORT]`` or a CIDR); return them,
    a CIDR in its canonical form.  A leading ``http://``/``https://`` is dropped,
    as dockerd does (with a warning)."""
    out: list[str] = []
    for given in values or ():
        value = given.strip()
        scheme, sep, rest = value.partition("://")
        if sep:
            if scheme.lower() not in ("http", "https"):
                raise ConfigError(f"--insecure-registry {value!r}: should not contain '://'")
            log.warning("insecure registry %s should not contain '%s://': it is dropped", value, scheme)
            value = rest
        try:
            out.append(str(ipaddress.ip_network(value, strict=False)) if "/" in value else _hostport(value))
        except ValueError:
            raise ConfigError(f"--insecure-registry {given!r}: expected HOST:PORT (e.g. 127.0.0.1:5000) or a "
                              "CIDR (e.g. 10.0.0.0/8), without a path") from None
    return out


def _hostport(value: str) -> str:
    if not _HOSTPORT.match(value):
        raise ValueError(value)
    return value


def validate_mirror(url: str, where: str = "--registry-mirror") -> str:
    """A mirror's URL, normalised (no trailing ``/``), as dockerd's ValidateMirror
    checks it: an ``http``/``https`` scheme, no query, fragment or credentials."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where} {url!r}: invalid mirror: must use either 'https://' or 'http://'")
    if parts.query or parts.fragment:
        raise ConfigError(f"{where} {url!r}: invalid mirror: query or fragment at end of the URI")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{where} {url!r}: invalid mirror: username/password not allowed in URI")
    return url.strip().rstrip("/")


def parse_mirror_flags(values: Iterable[str] | None) -> dict[str, list[str]]:
    """``--registry-mirror HOST=URL`` (or a bare ``URL``: a mirror of Docker Hub)
    → ``{registry host: [mirror URL, ...]}`` in the order given."""
    out: dict[str, list[str]] = {}
    for value in values or ():
        host, sep, url = value.partition("=")
        if not sep or "://" in host:
            host, url = DOCKER_HUB, value
        host = registry_host(host)
        if not host or not _HOSTPORT.match(host):
            raise ConfigError(f"--registry-mirror {value!r}: expected HOST=URL or URL (a mirror of Docker Hub)")
        mirror = validate_mirror(url)
        if mirror not in out.setdefault(host, []):
            out[host].append(mirror)
    return out


def mirrors_from(flags: Iterable[str] | None, registries: Mapping[str, Mapping[str, Any]],
                 source: str = "plugins.toml") -> tuple[dict[str, list[str]], list[str]]:
    """The daemon's mirrors: ``--registry-mirror`` flags first, then the config
    file's ``[registry."HOST"] mirrors``; and the hosts with ``mirror_fallback =
    false``.  Returns ``(mirrors, no_fallback)``."""
    mirrors = parse_mirror_flags(flags)
    no_fallback: list[str] = []
    for given, table in registries.items():
        host = registry_host(given)
        for url in table.get("mirrors", []):
            mirror = validate_mirror(url, f"{source}: registry.\"{given}\".mirrors:")
            if mirror not in mirrors.setdefault(host, []):
                mirrors[host].append(mirror)
        if table.get("mirror_fallback") is False:
            no_fallback.append(host)
    return {h: urls for h, urls in mirrors.items() if urls}, no_fallback


class Policy:
    """The daemon's registry endpoints: ``insecure`` (names and CIDRs, loopback
    added), ``mirrors`` (``{host: [URL, ...]}``) and the hosts whose pulls must not
    fall back to the registry when every mirror misses (``no_fallback``)."""

    def __init__(self, insecure: Iterable[str] = (), mirrors: Mapping[str, Iterable[str]] | None = None,
                 no_fallback: Iterable[str] = ()) -> None:
        self.insecure: list[str] = []
        self.cidrs: list[Network] = []
        for value in parse_insecure(insecure):
            if "/" in value:
                self.cidrs.append(ipaddress.ip_network(value))
            else:
                self.insecure.append(value)
        self.cidrs += [ipaddress.ip_network(n) for n in LOOPBACK if ipaddress.ip_network(n) not in self.cidrs]
        self.mirrors = {registry_host(h): list(urls) for h, urls in (mirrors or {}).items() if urls}
        self.no_fallback = {registry_host(h) for h in no_fallback}

    def is_insecure(self, host: str) -> bool:
        """Is ``host`` (``name[:port]``, as references spell it) insecure?"""
        if host in self.insecure or _strip_port(host) in self.insecure:
            return True
        name = _strip_port(host).strip("[]")
        try:
            addresses = {ipaddress.ip_address(name)}
        except ValueError:
            try:
                infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
            except (OSError, UnicodeError):
                return False  # unresolvable: no CIDR can match (dockerd's isCIDRMatch)
            addresses = {ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos}
        return any(_unmapped(a) in net for a in addresses for net in self.cidrs)

    def mirrors_of(self, host: str) -> list[str]:
        return list(self.mirrors.get(registry_host(host), ()))

    def falls_back(self, host: str) -> bool:
        return registry_host(host) not in self.no_fallback

    def info(self) -> dict[str, Any]:
        """The registry part of ``GET /info`` (dockerd's RegistryConfig)."""
        hub = self.mirrors_of(DOCKER_HUB)
        index = {DOCKER_HUB: {"Name": DOCKER_HUB, "Mirrors": [m + "/" for m in hub], "Secure": True,
                              "Official": True}}
        for name in self.insecure:
            index[name] = {"Name": name, "Mirrors": [m + "/" for m in self.mirrors_of(name)], "Secure": False,
                           "Official": False}
        return {"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
                "InsecureRegistryCIDRs": [str(n) for n in self.cidrs], "IndexConfigs": index,
                "Mirrors": [m + "/" for m in hub]}


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _unmapped(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    mapped = getattr(addr, "ipv4_mapped", None)
    return mapped if mapped is not None else addr
