"""Where a reference lives: its registry host and its repository path there.

``busybox`` → ``docker.io`` / ``library/busybox``; ``127.0.0.1:5000/team/app:1`` →
``127.0.0.1:5000`` / ``team/app``, tag ``1``.  Parsing itself is the image store's
(:func:`dockyard.engine.images.reference.parse`); this only splits off the domain.
"""

from __future__ import annotations

from ..engine.images import reference
from ..errors import InvalidParameter

DOCKER_HUB = "docker.io"


class ImageName:
    def __init__(self, familiar: str, tag: str | None, digest: str | None) -> None:
        self.familiar, self.tag, self.digest = familiar, tag, digest
        first, _, rest = familiar.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            self.domain, self.path = first, rest
        else:
            self.domain, self.path = DOCKER_HUB, familiar if "/" in familiar else f"library/{familiar}"

    @property
    def ref(self) -> str | None:
        """What the manifest is fetched by: the digest if given, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        if self.digest:
            return f"{self.familiar}@{self.digest}"
        return f"{self.familiar}:{self.tag}"


def parse(ref: str, tag: str | None = None) -> ImageName:
    """An :class:`ImageName` for ``ref`` (with ``tag`` if the API gave it apart)."""
    if tag and "@" not in ref:
        ref = f"{ref}:{tag}" if not tag.startswith("sha256:") else f"{ref}@{tag}"
    familiar, tag_, digest = reference.parse(ref)
    if digest and not digest.startswith("sha256:"):
        raise InvalidParameter(f"invalid reference format: {ref!r}: only sha256 digests are supported")
    return ImageName(familiar, tag_, digest)


def registry_host(server: str | None) -> str:
    """The registry host of a login ``serveraddress`` (``https://host:5000/v2/`` → ``host:5000``);
    Docker Hub's many spellings become ``docker.io``."""
    server = (server or "").strip()
    for prefix in ("https://", "http://"):
        if server.startswith(prefix):
            server = server[len(prefix):]
    server = server.split("/", 1)[0]
    if server in ("", "index.docker.io", "registry-1.docker.io", "docker.io"):
        return DOCKER_HUB
    return server
