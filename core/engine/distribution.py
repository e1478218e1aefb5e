"""Manifests, manifest lists and OCI indexes: media types, parsing with checks,
building, and platform selection.  Pure functions over bytes (no store here).

A manifest names an image config and its layers by *descriptor* (media type,
digest, size); an index (Docker's manifest list) names manifests, one per
platform.  :func:`parse_manifest` and :func:`parse_index` refuse what is not one
(an unknown media type, a schema 1 manifest, a malformed descriptor) with an
:class:`~dockyard.errors.InvalidParameter` naming the field, so nothing is
stored from a document that would not work later.
"""

import hashlib
import json
import platform as _platform
from dataclasses import dataclass, field

from ..errors import InvalidParameter
from .content import DIGEST_RE

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
#: annotations an OCI layout's index.json names images by
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"  # a full reference (Docker, containerd)
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"  # a tag, or a full reference (podman)


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict | None = None
    annotations: dict = field(default_factory=dict)
    urls: tuple = ()

    def to_json(self):
        out = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        return out


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple
    digest: str


def _descriptor(obj, where, kinds=None, what="media type"):
    if not isinstance(obj, dict):
        raise InvalidParameter(f"{where}: a descriptor must be a JSON object")
    media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise InvalidParameter(f"{where}: digest {digest!r} is not sha256:<64 hex>")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidParameter(f"{where}: size {size!r} is not a byte count")
    if not isinstance(media_type, str):
        raise InvalidParameter(f"{where}: the descriptor has no mediaType")
    if kinds is not None and media_type not in kinds:
        raise InvalidParameter(f"{where}: unknown {what} {media_type!r} (known: {', '.join(kinds)})")
    plat = obj.get("platform")
    if plat is not None and not isinstance(plat, dict):
        raise InvalidParameter(f"{where}: platform must be a JSON object")
    annotations = obj.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise InvalidParameter(f"{where}: annotations must be a JSON object")
    return Descriptor(media_type, digest, size, plat, dict(annotations), tuple(obj.get("urls") or ()))


def _document(data, what):
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameter(f"{what} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidParameter(f"{what} is not a JSON object")
    return doc


def _media_type(doc, given, known, what):
    inner = doc.get("mediaType")
    if inner in SCHEMA1 or given in SCHEMA1 or doc.get("schemaVersion") == 1:
        raise InvalidParameter(f"{what}: Docker schema 1 manifests are not supported (deprecated since 2017)")
    if given and inner and given != inner:
        raise InvalidParameter(f"{what}: served as {given!r} but says it is {inner!r}")
    media_type = given or inner
    if media_type is None:  # OCI allows omitting it: tell by the shape
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type not in known:
        raise InvalidParameter(f"{what}: unknown media type {media_type!r} (known: {', '.join(known)})")
    if doc.get("schemaVersion") != 2:
        raise InvalidParameter(f"{what}: schemaVersion {doc.get('schemaVersion')!r} is not 2")
    return media_type


def parse_manifest(data, media_type=None):
    """Check and parse an image manifest (Docker schema 2 or OCI); returns a
    :class:`Manifest`.  ``media_type`` is what it was served or stored as."""
    doc = _document(data, "manifest")
    media_type = _media_type(doc, media_type, MANIFEST_TYPES, "manifest")
    config = _descriptor(doc.get("config"), "manifest config", CONFIG_TYPES, "config media type")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise InvalidParameter("manifest: layers must be a list")
    parsed = tuple(_descriptor(d, f"manifest layer {i}", tuple(LAYER_TYPES), "layer media type")
                   for i, d in enumerate(layers))
    return Manifest(media_type, config, parsed, digest_of(data))


def parse_index(data, media_type=None):
    """Check and parse a manifest list / OCI index; returns ``(media_type,
    [Descriptor])`` (entries of unknown media types are kept: they may be
    attestations a platform choice skips)."""
    doc = _document(data, "index")
    media_type = _media_type(doc, media_type, INDEX_TYPES, "index")
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise InvalidParameter("index: manifests must be a list")
    return media_type, [_descriptor(d, f"index entry {i}") for i, d in enumerate(entries)]


def layer_compression(media_type):
    """``None`` (a plain tar), ``"gzip"`` or ``"zstd"``; unknown types are refused."""
    if media_type not in LAYER_TYPES:
        raise InvalidParameter(f"unknown layer media type {media_type!r}")
    return LAYER_TYPES[media_type]


def this_platform():
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        _platform.machine(), _platform.machine())
    return {"os": "linux", "architecture": arch}


def select_platform(entries, want=None):
    """The index entry for platform ``want`` (default: this machine's); entries
    without a platform count as matching only when nothing else does."""
    want = want or this_platform()
    images = [d for d in entries if d.media_type in MANIFEST_TYPES]
    for d in images:
        p = d.platform or {}
        if p.get("os") == want["os"] and p.get("architecture") == want["architecture"] and \
                (not want.get("variant") or p.get("variant") == want["variant"]):
            return d
    unplatformed = [d for d in images if not d.platform]
    if len(unplatformed) == 1:
        return unplatformed[0]
    have = sorted({f"{(d.platform or {}).get('os')}/{(d.platform or {}).get('architecture')}" for d in images})
    raise InvalidParameter(f"no image for platform {want['os']}/{want['architecture']} in the index "
                           f"(it has: {', '.join(have) or 'none'})")


def build_manifest(config_bytes, layers, media_type=OCI_MANIFEST, config_media_type=None):
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


def build_index(descriptors, media_type=OCI_INDEX):
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": [d.to_json() for d in descriptors]}
    return json.dumps(doc, separators=(",", ":")).encode()


def check_config(config_bytes, layer_count=None, what="image config"):
    """Parse an image config and check its ``rootfs``; returns the dict."""
    cfg = _document(config_bytes, what)
    rootfs = cfg.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or not isinstance(rootfs.get("diff_ids"), list):
        raise InvalidParameter(f"{what}: rootfs must be {{\"type\": \"layers\", \"diff_ids\": [...]}}")
    for d in rootfs["diff_ids"]:
        if not isinstance(d, str) or not DIGEST_RE.match(d):
            raise InvalidParameter(f"{what}: diff ID {d!r} is not sha256:<64 hex>")
    if layer_count is not None and len(rootfs["diff_ids"]) != layer_count:
        raise InvalidParameter(f"{what} lists {len(rootfs['diff_ids'])} layers (rootfs.diff_ids) but "
                               f"the manifest has {layer_count}")
    return cfg


def v1_ids(config, chains):
    """Legacy (``docker save``) layer ids: one per layer, each the sha256 of the
    layer's v1 JSON with its chain ID and parent, as Docker's ``v1.CreateID``."""
    ids, parent = [], ""
    for i, chain in enumerate(chains):
        body = legacy_json(config, i, len(chains), "", parent)
        body.pop("id", None)
        body["layer_id"] = chain
        if parent:
            body["parent"] = "sha256:" + parent
        parent = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        ids.append(parent)
    return ids


def legacy_json(config, index, count, v1_id, parent):
    """The ``<id>/json`` of layer ``index`` in a ``docker save`` archive: the
    image's v1 fields for the top layer, a bare record for the others."""
    if index == count - 1:
        body = {k: config[k] for k in ("comment", "created", "container", "container_config",
                                       "docker_version", "author", "config", "architecture",
                                       "variant", "os") if config.get(k) not in (None, "")}
    else:
        body = {"created": "1970-01-01T00:00:00Z", "container_config": {"Cmd": None}, "os": config.get("os", "linux")}
    out = {"id": v1_id} if v1_id else {}
    if parent:
        out["parent"] = parent
    out.update(body)
    return out
