"""Image references in Docker's grammar: ``[registry[:port]/]name[:tag][@digest]``.

References are stored in their *familiar* form (``busybox:latest``,
``example.com:5000/team/app:1.0``): ``docker.io/library/`` is dropped, the way
``docker images`` shows them.
"""

import re

from ..errors import InvalidParameter

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?"
_NAME = re.compile(rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")


def parse(ref):
    """Return ``(name, tag, digest)`` with ``name`` familiar; raise ``InvalidParameter``."""
    if not ref or ref != ref.strip():
        raise InvalidParameter(f"invalid reference format: {ref!r}")
    name, digest = ref, None
    if "@" in name:
        name, digest = name.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidParameter(f"invalid reference format: bad digest in {ref!r}")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidParameter(f"invalid reference format: bad tag in {ref!r}")
    m = _NAME.match(name)
    if not m:
        raise InvalidParameter(
            f"invalid reference format: {ref!r} (repository names must be lowercase)"
        )
    domain, path = m.group("domain"), m.group("path")
    if domain and "." not in domain and ":" not in domain and domain != "localhost":
        path, domain = f"{domain}/{path}", None  # first component was not a host
    if domain in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        domain = None
    if domain is None and path.startswith("library/"):
        path = path[len("library/"):]
    familiar = f"{domain}/{path}" if domain else path
    if tag is None and digest is None:
        tag = "latest"
    return familiar, tag, digest


def normalize(ref):
    """``busybox`` → ``busybox:latest``; ``docker.io/library/x:1`` → ``x:1``."""
    name, tag, digest = parse(ref)
    out = name
    if tag:
        out += f":{tag}"
    if digest:
        out += f"@{digest}"
    return out
