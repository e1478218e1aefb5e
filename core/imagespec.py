"""The image documents of the OCI image spec and of Docker's schema 2: media types,
descriptors, platforms, manifests and indexes (Docker's manifest lists), and the
image config's ``rootfs``; parsed strictly from bytes, built deterministically.

This is the one model of those documents.  The registry client (pull, push,
``/distribution``) and the image store (what a pull registers, ``load``,
``save``, ``system check``) both use it, so a document is judged the same way
wherever it comes from.  It sits at the bottom of the import graph (the standard
library, attrs and :mod:`dockyard.errors`), below both of its users; the runtime
spec's tables are another module (``shim.oci``).

A manifest names an image config and its layers by *descriptor* (media type,
digest, size); an index names manifests, one per platform.  What does not parse
is refused with an error naming the field:

    InvalidParameter (400)
    ├── BadDocument          malformed: not JSON, a field missing or of the wrong
    │                        type, a digest that is not one, a served type the
    │                        document contradicts
    ├── UnsupportedMedia     well-formed, but not something we handle: Docker
    │                        schema 1, an unknown media type, a digest algorithm
    │                        other than sha256
    └── NoMatchingPlatform   an index without an image for the platform asked for

To the image store they are bad input; the registry client says whose fault they
are (:func:`dockyard.registry.errors.sent_by_registry`: a registry that sends a
malformed manifest answers badly, 502).
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
import re
from typing import Any, Iterable, Sequence

import attrs

from .errors import InvalidParameter

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER_TAR + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER_TAR + "+zstd"
OCI_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
           "application/vnd.docker.distribution.manifest.v1+prettyjws")

MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
CONFIG_TYPES = (DOCKER_CONFIG, OCI_CONFIG)
#: layer media type -> compression (None: a plain tar)
LAYER_TYPES = {
    DOCKER_LAYER_GZIP: "gzip", DOCKER_FOREIGN_GZIP: "gzip", DOCKER_LAYER_TAR: None,
    OCI_LAYER_TAR: None, OCI_LAYER_GZIP: "gzip", OCI_LAYER_ZSTD: "zstd",
    OCI_NONDIST: None, OCI_NONDIST + "+gzip": "gzip", OCI_NONDIST + "+zstd": "zstd",
}
#: layers whose bytes live elsewhere by design: a registry client never fetches them
FOREIGN_LAYER_TYPES = (DOCKER_FOREIGN_GZIP, OCI_NONDIST, OCI_NONDIST + "+gzip", OCI_NONDIST + "+zstd")
#: what a pull asks a registry for, in Docker's order of preference
ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX))
MAX_MANIFEST = 4 << 20  # Docker's limit on a manifest's or an index's size
#: annotations an OCI layout's index.json names images by
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"  # a full reference (Docker, containerd)
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"  # a tag, or a full reference (podman)
#: how buildx marks the attestation manifests of an index (never an image to run)
ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type"

_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
_ANY_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


class BadDocument(InvalidParameter):
    """A manifest, index, config or descriptor that is malformed."""


class UnsupportedMedia(InvalidParameter):
    """A well-formed document of a kind we do not handle."""


class NoMatchingPlatform(InvalidParameter):
    """An index has no image for the platform asked for."""


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- platforms ------------------------------------------------------------------------
@attrs.frozen
class Platform:
    """``os/architecture[/variant]``, as an index entry or ``--platform`` names it."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``"linux/arm64/v8"`` → ``Platform("linux", "arm64", "v8")``."""
        parts = (text or "").split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidParameter(f"invalid platform {text!r}: expected os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def here(cls) -> Platform:
        machine = _platform.machine()
        return cls("linux", _GOARCH.get(machine, machine))

    @classmethod
    def wanted(cls) -> list[Platform]:
        """What a pull without ``--platform`` takes: this machine's platform, then
        linux/amd64 (what most images offer)."""
        here, amd64 = cls.here(), cls("linux", "amd64")
        return [here] if here == amd64 else [here, amd64]

    @classmethod
    def from_json(cls, obj: Any, where: str = "platform") -> Platform:
        if not isinstance(obj, dict):
            raise BadDocument(f"{where}: platform must be a JSON object")
        fields = {}
        for key, name in (("os", "os"), ("architecture", "architecture"), ("variant", "variant"),
                          ("os.version", "os_version")):
            value = obj.get(key)
            if value is not None and not isinstance(value, str):
                raise BadDocument(f"{where}: platform {key} must be a string, not {value!r}")
            fields[name] = value
        return cls(fields["os"] or "", fields["architecture"] or "", fields["variant"] or None,
                   fields["os_version"] or None)

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.variant:
            out["variant"] = self.variant
        return out

    def matches(self, other: Platform) -> bool:
        """Whether ``other`` (an entry's platform) is this one (a wanted platform:
        without a variant, any variant will do)."""
        return (self.os == other.os and self.architecture == other.architecture
                and (self.variant is None or self.variant == other.variant))

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _platform_or_none(value: Platform | dict | None) -> Platform | None:
    return value if value is None or isinstance(value, Platform) else Platform.from_json(value)


# --- descriptors ----------------------------------------------------------------------
@attrs.frozen
class Descriptor:
    """What a manifest or index says of a blob: its media type, sha256 digest and
    size; an index entry also its platform."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = attrs.field(default=None, converter=_platform_or_none)
    annotations: dict[str, str] = attrs.field(factory=dict)
    urls: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    @classmethod
    def from_json(cls, obj: Any, where: str, kinds: Iterable[str] | None = None,
                  kind: str = "a blob") -> Descriptor:
        """Check a descriptor; ``kinds``: the media types allowed (``kind`` names them)."""
        if not isinstance(obj, dict):
            raise BadDocument(f"{where}: a descriptor must be a JSON object, not {type(obj).__name__}")
        media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
        digest = check_digest(digest, where)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadDocument(f"{where} {digest}: invalid size {size!r} (not a byte count)")
        if not isinstance(media_type, str) or not media_type:
            raise BadDocument(f"{where} {digest}: the descriptor has no mediaType")
        if kinds is not None and media_type not in kinds:
            raise UnsupportedMedia(f"{where} {digest} has unknown media type {media_type!r} "
                                   f"(expected {kind}: {', '.join(kinds)})")
        annotations = obj.get("annotations") or {}
        urls = obj.get("urls") or []
        if not isinstance(annotations, dict):
            raise BadDocument(f"{where} {digest}: annotations must be a JSON object")
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise BadDocument(f"{where} {digest}: urls must be a list of strings")
        plat = obj.get("platform")
        return cls(media_type, digest, size, None if plat is None else Platform.from_json(plat, where),
                   dict(annotations), tuple(urls))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = self.platform.to_json()
        return out


def check_digest(digest: Any, where: str) -> str:
    """``digest`` if it is ``sha256:<64 hex>``; else what is wrong with it."""
    if isinstance(digest, str) and _SHA256.match(digest):
        return digest
    if isinstance(digest, str) and _ANY_DIGEST.match(digest) and not digest.startswith("sha256:"):
        raise UnsupportedMedia(f"{where}: digest {digest} uses an unsupported algorithm (only sha256)")
    raise BadDocument(f"{where}: invalid digest {digest!r} (not sha256:<64 hex digits>)")


# --- manifests and indexes ------------------------------------------------------------
@attrs.frozen
class Manifest:
    """An image manifest: its config and its layers, bottom first."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    digest: str


@attrs.frozen
class Index:
    """An OCI index or a Docker manifest list: one manifest per platform (and
    entries of other media types, such as attestations, which are kept)."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    digest: str

    def select(self, want: Platform | None = None) -> Descriptor:
        return select_platform(self.manifests, want)


def media_type_of(data: bytes, header_type: str | None) -> str:
    """A served manifest's media type: the Content-Type unless it is generic, else
    the document's own ``mediaType``, else guessed from its shape (as containerd)."""
    header_type = (header_type or "").split(";")[0].strip()
    if header_type and header_type not in ("application/json", "text/plain", "application/octet-stream"):
        return header_type
    try:
        doc = json.loads(data)
    except ValueError:
        return header_type or "unknown"
    if isinstance(doc, dict):
        if isinstance(doc.get("mediaType"), str):
            return doc["mediaType"]
        if doc.get("schemaVersion") == 1:
            return SCHEMA1[0]  # the unsigned v1+json
        if "manifests" in doc:
            return OCI_INDEX
        if "config" in doc and "layers" in doc:
            return OCI_MANIFEST
    return header_type or "unknown"


def check_type(media_type: str, what: str = "manifest") -> None:
    """Refuse a media type that is neither a manifest's nor an index's."""
    if media_type in SCHEMA1:
        raise UnsupportedMedia(f"{what} has media type {media_type}: Docker schema 1 images are not supported "
                               "(deprecated since 2017: push them again with a current tool to get schema 2)")
    if media_type not in MANIFEST_TYPES + INDEX_TYPES:
        raise UnsupportedMedia(f"{what} has unknown media type {media_type!r} (expected one of "
                               f"{', '.join(MANIFEST_TYPES + INDEX_TYPES)})")


def _document(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadDocument(f"{what} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadDocument(f"{what} is not a JSON object")
    return doc


def _media_type(doc: dict[str, Any], given: str | None, known: Sequence[str], what: str) -> str:
    inner = doc.get("mediaType")
    if inner in SCHEMA1 or given in SCHEMA1 or doc.get("schemaVersion") == 1:
        check_type(SCHEMA1[0], what)
    if given and inner and given != inner:
        raise BadDocument(f"{what}: served as {given!r} but says it is {inner!r}")
    media_type = given or inner
    if media_type is None:  # OCI allows leaving it out: tell by the shape
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type not in known:
        raise UnsupportedMedia(f"{what} has unknown media type {media_type!r} (expected one of {', '.join(known)})")
    if doc.get("schemaVersion") != 2:
        raise UnsupportedMedia(f"{what} has schemaVersion {doc.get('schemaVersion')!r}: only 2 is supported")
    return media_type


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    """Check and parse an image manifest (Docker schema 2 or OCI); ``media_type``
    is what it was served or stored as (None: its own ``mediaType``)."""
    doc = _document(data, "manifest")
    media_type = _media_type(doc, media_type, MANIFEST_TYPES, "manifest")
    config = Descriptor.from_json(doc.get("config"), "image config", CONFIG_TYPES,
                                  "an image config; not a container image?")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise BadDocument(f"manifest ({media_type}): layers must be a list")
    parsed = tuple(Descriptor.from_json(d, f"layer {i + 1}", tuple(LAYER_TYPES), "a layer")
                   for i, d in enumerate(layers))
    return Manifest(media_type, config, parsed, digest_of(data))


def parse_index(data: bytes, media_type: str | None = None) -> Index:
    """Check and parse a manifest list / OCI index."""
    doc = _document(data, "index")
    media_type = _media_type(doc, media_type, INDEX_TYPES, "index")
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise BadDocument(f"index ({media_type}): manifests must be a list")
    return Index(media_type, tuple(Descriptor.from_json(d, f"index entry {i + 1}") for i, d in enumerate(entries)),
                 digest_of(data))


def select_platform(entries: Iterable[Descriptor], want: Platform | None = None) -> Descriptor:
    """The image manifest among an index's ``entries`` for platform ``want``
    (default: :meth:`Platform.wanted`).  Attestations never match; an entry
    without a platform only when it is the index's one image."""
    images = [d for d in entries if d.media_type in MANIFEST_TYPES
              and d.annotations.get(ANNOTATION_REFERENCE_TYPE) != "attestation-manifest"]
    candidates = [want] if want else Platform.wanted()
    for cand in candidates:
        for d in images:
            if d.platform is not None and cand.matches(d.platform):
                return d
    if len(images) == 1 and images[0].platform is None:
        return images[0]
    offered = sorted({str(d.platform) for d in images if d.platform is not None})
    raise NoMatchingPlatform(f"no matching manifest for {candidates[0]} in the manifest list entries "
                             f"(offered: {', '.join(offered) or 'none'})")


def layer_compression(media_type: str) -> str | None:
    """``None`` (a plain tar), ``"gzip"`` or ``"zstd"``; unknown types are refused."""
    if media_type not in LAYER_TYPES:
        raise UnsupportedMedia(f"unknown layer media type {media_type!r}")
    return LAYER_TYPES[media_type]


def check_config(config_bytes: bytes, layer_count: int | None = None, what: str = "image config") -> dict[str, Any]:
    """Parse an image config and check its ``rootfs`` (and that it lists
    ``layer_count`` layers); returns the dict."""
    cfg = _document(config_bytes, what)
    rootfs = cfg.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or not isinstance(rootfs.get("diff_ids"), list):
        raise BadDocument(f"{what}: rootfs must be {{\"type\": \"layers\", \"diff_ids\": [...]}}")
    for d in rootfs["diff_ids"]:
        if not isinstance(d, str) or not _SHA256.match(d):
            raise BadDocument(f"{what}: diff ID {d!r} is not sha256:<64 hex digits>")
    if layer_count is not None and len(rootfs["diff_ids"]) != layer_count:
        raise BadDocument(f"{what} lists {len(rootfs['diff_ids'])} layers (rootfs.diff_ids) but "
                          f"the manifest has {layer_count}")
    return cfg


# --- building -------------------------------------------------------------------------
def build_manifest(config_bytes: bytes, layers: Iterable[tuple[str, str, int]], media_type: str = OCI_MANIFEST,
                   config_media_type: str | None = None) -> bytes:
    """Manifest bytes for ``config_bytes`` and ``layers`` (``[(media type, digest,
    size)]``), deterministic: the same inputs give the same digest."""
    if media_type not in MANIFEST_TYPES:
        raise InvalidParameter(f"unknown manifest media type {media_type!r}")
    config_media_type = config_media_type or (OCI_CONFIG if media_type == OCI_MANIFEST else DOCKER_CONFIG)
    doc = {
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": config_media_type, "digest": digest_of(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": t, "digest": d, "size": s} for t, d, s in layers],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def build_index(descriptors: Iterable[Descriptor], media_type: str = OCI_INDEX) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": [d.to_json() for d in descriptors]}
    return json.dumps(doc, separators=(",", ":")).encode()
