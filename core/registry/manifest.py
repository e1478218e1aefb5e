"""Manifests, indexes and descriptors of the OCI image spec and Docker's schema 2:
media types, strict parsing, and platform selection.  Stdlib only.

What is refused, with the media type named: Docker schema 1 (signed or not: it has no
content-addressed config), foreign / non-distributable layers (their bytes live
elsewhere, by design never fetched), and any media type not listed here.
"""

import json
import platform as _platform
import re

from .errors import BadContent, RegistryNotFound, UnsupportedContent

from ..engine.distribution import (  # the media types: one list for the store and the wire
    CONFIG_TYPES as CONFIGS,
    DOCKER_CONFIG,  # noqa: F401 (push.py builds configs with mf.DOCKER_CONFIG)
    DOCKER_FOREIGN_GZIP,
    DOCKER_LAYER_GZIP as DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX_TYPES as INDEXES,
    MANIFEST_TYPES as MANIFESTS,
    OCI_CONFIG,  # noqa: F401
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_TAR as OCI_LAYER,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    OCI_NONDIST,
    SCHEMA1,
)

#: what a pull asks for, in order of preference (Docker's order)
ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX))
LAYERS = (DOCKER_LAYER, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD)
FOREIGN_LAYERS = (DOCKER_FOREIGN_GZIP, OCI_NONDIST, OCI_NONDIST + "+gzip", OCI_NONDIST + "+zstd")

MAX_MANIFEST = 4 << 20  # Docker's limit
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_ANY_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


class Descriptor(dict):
    """A checked OCI descriptor: ``digest`` (sha256 only), ``size``, ``mediaType``."""

    digest = property(lambda self: self["digest"])
    size = property(lambda self: self["size"])
    media_type = property(lambda self: self["mediaType"])


def descriptor(raw, what, default_type=None):
    if not isinstance(raw, dict):
        raise BadContent(f"{what}: a descriptor must be an object, not {type(raw).__name__}")
    digest, size = raw.get("digest"), raw.get("size")
    media_type = raw.get("mediaType") or default_type
    if not isinstance(digest, str) or not _ANY_DIGEST.match(digest):
        raise BadContent(f"{what}: invalid digest {digest!r}")
    if not _DIGEST.match(digest):
        raise UnsupportedContent(f"{what}: digest {digest} uses an unsupported algorithm (only sha256)")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BadContent(f"{what} {digest}: invalid size {size!r}")
    if not isinstance(media_type, str) or not media_type:
        raise BadContent(f"{what} {digest}: no mediaType")
    return Descriptor(raw, mediaType=media_type)


def media_type_of(data, header_type):
    """The manifest's media type: the Content-Type unless it is generic, else the
    document's own ``mediaType``, else guessed from its shape (as containerd does)."""
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


def check_type(media_type, what="manifest"):
    if media_type in SCHEMA1:
        raise UnsupportedContent(f"{what} has media type {media_type}: Docker schema 1 images are not "
                                 "supported (push them again with a current tool to get schema 2)")
    if media_type not in MANIFESTS + INDEXES:
        raise UnsupportedContent(f"{what} has unknown media type {media_type!r} (expected one of "
                                 f"{', '.join(MANIFESTS + INDEXES)})")


def _load(data, what):
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadContent(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadContent(f"{what} is not a JSON object")
    if doc.get("schemaVersion") != 2:
        raise UnsupportedContent(f"{what} has schemaVersion {doc.get('schemaVersion')!r}, only 2 is supported")
    return doc


def parse_manifest(data, media_type):
    """``(config descriptor, [layer descriptors])`` of an image manifest."""
    what = f"manifest ({media_type})"
    doc = _load(data, what)
    if doc.get("mediaType") not in (None, media_type):
        raise BadContent(f"{what} says it is a {doc['mediaType']}")
    config = descriptor(doc.get("config"), "image config")
    if config.media_type not in CONFIGS:
        raise UnsupportedContent(f"image config has unknown media type {config.media_type!r} "
                                 "(not a container image?)")
    if not isinstance(doc.get("layers"), list):
        raise BadContent(f"{what} has no layers list")
    layers = []
    for i, raw in enumerate(doc["layers"]):
        layer = descriptor(raw, f"layer {i + 1}")
        if layer.media_type in FOREIGN_LAYERS:
            raise UnsupportedContent(f"layer {layer.digest} is a foreign (non-distributable) layer "
                                     f"({layer.media_type}): such layers are not fetched")
        if layer.media_type not in LAYERS:
            raise UnsupportedContent(f"layer {layer.digest} has unknown media type {layer.media_type!r} "
                                     f"(expected one of {', '.join(LAYERS)})")
        layers.append(layer)
    return config, layers


def parse_index(data, media_type):
    """The ``manifests`` descriptors of a manifest list / OCI index."""
    doc = _load(data, f"index ({media_type})")
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise BadContent(f"index ({media_type}) has no manifests list")
    return [descriptor(raw, f"index entry {i + 1}") for i, raw in enumerate(entries)]


def goarch():
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        _platform.machine(), _platform.machine())


def wanted_platforms():
    """This machine's platform first, then linux/amd64 (what most images offer)."""
    here = ("linux", goarch())
    return [here] + ([("linux", "amd64")] if here != ("linux", "amd64") else [])


def parse_platform(text):
    """``"linux/arm64/v8"`` → ``("linux", "arm64", "v8")``."""
    parts = (text or "").split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UnsupportedContent(f"invalid platform {text!r}: expected os/arch[/variant]")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def select_platform(entries, want=None):
    """The entry of an index for platform ``want`` ((os, arch[, variant]); default: this
    machine's, then linux/amd64).  Entries without a platform (attestations) never match."""
    candidates = [want] if want else wanted_platforms()
    for cand in candidates:
        os_, arch, variant = (tuple(cand) + (None,))[:3]
        matches = [e for e in entries if isinstance(e.get("platform"), dict)
                   and e["platform"].get("os") == os_ and e["platform"].get("architecture") == arch
                   and (variant is None or e["platform"].get("variant") == variant)]
        for entry in matches:
            if entry.media_type in MANIFESTS:
                return entry
    offered = sorted({"/".join(filter(None, (e["platform"].get("os"), e["platform"].get("architecture"),
                                             e["platform"].get("variant"))))
                      for e in entries if isinstance(e.get("platform"), dict)})
    raise RegistryNotFound(f"no matching manifest for {'/'.join(filter(None, candidates[0]))} in the manifest "
                           f"list entries (offered: {', '.join(offered) or 'none'})")
