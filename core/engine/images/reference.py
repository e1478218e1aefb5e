"""Image references in Docker's grammar: ``[registry[:port]/]name[:tag][@digest]``.

The grammar is distribution's (``github.com/distribution/reference``)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] component ("/" component)*      at most 255 characters
    domain     := host [":" port]         host: DNS name, IPv4, or [IPv6]
    component  := [a-z0-9]+ (separator [a-z0-9]+)*    separator: "." "_" "__" "-"+
    tag        := [\\w][\\w.-]{0,127}
    digest     := algorithm ":" hex        sha256 needs exactly 64 lowercase hex digits

The first component is a registry only if it has a ``.`` or a ``:`` or is
``localhost`` (or has capitals, which no repository may); otherwise the
reference is on Docker Hub: ``busybox`` is ``docker.io/library/busybox``.

References are stored in their *familiar* form (``busybox:latest``,
``example.com:5000/team/app:1.0``): ``docker.io/library/`` is dropped, the way
``docker images`` shows them.  :class:`Reference` gives both forms.  Every
refusal is an :class:`~dockyard.errors.InvalidParameter` whose message starts
with Docker's ``invalid reference format`` and names the part that is wrong.
"""

import re
from dataclasses import dataclass, replace

from ...errors import InvalidParameter

DEFAULT_DOMAIN = "docker.io"
OFFICIAL_PREFIX = "library/"
NAME_MAX = 255
_HUB_ALIASES = ("docker.io", "index.docker.io")  # as distribution: registry-1.docker.io is not normalised

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _bad(ref, why):
    return InvalidParameter(f"invalid reference format: {ref!r}: {why}")


@dataclass(frozen=True)
class Reference:
    """A parsed reference.  ``domain`` is ``docker.io`` for Docker Hub and ``path``
    the repository inside the registry (``library/busybox``)."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self):
        """The full repository name: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self):
        """The repository as Docker shows it: ``busybox``, ``team/app``, ``host:5000/x``."""
        if self.domain == DEFAULT_DOMAIN:
            return self.path[len(OFFICIAL_PREFIX):] if self.path.startswith(OFFICIAL_PREFIX) else self.path
        return self.name

    def _suffix(self):
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def familiar(self):
        """``busybox:latest``, ``host:5000/app@sha256:...`` (how tags are stored)."""
        return self.familiar_name + self._suffix()

    def __str__(self):
        return self.name + self._suffix()

    def with_tag(self, tag):
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest):
        return replace(self, tag=None, digest=digest)


def parse_reference(ref, default_tag="latest"):
    """Parse ``ref``; a reference with neither tag nor digest gets ``default_tag``
    (pass ``None`` to keep it bare).  Raises :class:`InvalidParameter`."""
    if not isinstance(ref, str) or not ref:
        raise InvalidParameter("invalid reference format: the reference is empty")
    if ref != ref.strip() or any(c.isspace() for c in ref):
        raise _bad(ref, "white space is not allowed")
    name, digest = ref, None
    if "@" in name:
        name, digest = name.split("@", 1)
        if not _DIGEST.match(digest):
            raise _bad(ref, f"digest {digest!r} is not algorithm:hex")
        if digest.startswith("sha256:") and not _SHA256.match(digest):
            raise _bad(ref, f"digest {digest!r}: sha256 needs exactly 64 lowercase hex digits")
    tag = None
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG.match(tag):
            raise _bad(ref, f"tag {tag!r} (a tag is up to 128 of letters, digits, '_', '.', '-', "
                            "not starting with '.' or '-')")
    if not name:
        raise _bad(ref, "the repository name is empty")
    if len(name) > NAME_MAX:
        raise _bad(ref, f"the repository name is longer than {NAME_MAX} characters")
    if _HEX64.match(name):
        raise _bad(ref, "a repository name cannot be a 64-character hexadecimal string (that is an image id)")
    domain, rest = _split_domain(name)
    if not _HOST.match(domain):
        raise _bad(ref, f"registry host {domain!r} is not a host name or host:port")
    for component in rest.split("/"):
        if not component:
            raise _bad(ref, "empty path component (a doubled or trailing '/')")
        if component.lower() == component and not _COMPONENT.match(component):
            raise _bad(ref, f"path component {component!r} (lowercase letters and digits, "
                            "joined by '.', '_', '__' or '-')")
        if not _COMPONENT.match(component):
            raise _bad(ref, f"repository name must be lowercase ({component!r})")
    if domain in _HUB_ALIASES:
        domain = DEFAULT_DOMAIN
        if "/" not in rest:
            rest = OFFICIAL_PREFIX + rest
    if tag is None and digest is None:
        tag = default_tag
    return Reference(domain, rest, tag, digest)


def _split_domain(name):
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        return DEFAULT_DOMAIN, name
    return first, rest


def parse(ref):
    """Return ``(name, tag, digest)`` with ``name`` familiar; raise ``InvalidParameter``."""
    r = parse_reference(ref)
    return r.familiar_name, r.tag, r.digest


def normalize(ref):
    """``busybox`` → ``busybox:latest``; ``docker.io/library/x:1`` → ``x:1``."""
    return parse_reference(ref).familiar()


def repository(name):
    """The familiar form of a repository name with neither tag nor digest:
    ``docker.io/library/busybox`` → ``busybox``."""
    r = parse_reference(name, default_tag=None)
    if r.tag or r.digest:
        raise _bad(name, "a repository name (without tag or digest) is expected here")
    return r.familiar_name


def split_tagged(ref_n):
    """A stored familiar ``name:tag`` → ``(name, tag)``."""
    name, _, tag = ref_n.rpartition(":")
    return name, tag


def is_name_only(ref):
    """True for a reference without tag or digest (``busybox``, ``host:5000/x``)."""
    r = parse_reference(ref, default_tag=None)
    return r.tag is None and r.digest is None


def _glob(pattern):
    """Go's ``path.Match`` as a regex: ``*`` and ``?`` never match ``/``."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise InvalidParameter(f"invalid reference filter {pattern!r}: unclosed '['")
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else body).replace("\\", "\\\\") + "]")
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def matches(pattern, ref_n):
    """Docker's ``reference`` filter: ``pattern`` (a glob) matches the familiar
    ``name:tag`` or just its name."""
    rx = _glob(pattern)
    name = ref_n.split("@", 1)[0].rpartition(":")[0] if ":" in ref_n.split("/")[-1] else ref_n
    return bool(rx.match(ref_n) or rx.match(name))
