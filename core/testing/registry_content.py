"""Crafting images and talking to a registry directly, for tests that need content
no client would push: several layers, OCI or Docker manifests, gzip, zstd or plain
layers, multi-platform indexes, wrong digests, truncated blobs, unknown media types.

    base = tar_layer(open(busybox_rootfs_tar, "rb").read())     # an uncompressed layer tar
    img = make_image([base, tar_layer({"etc/motd": b"hi\\n"})], oci=True, compression="zstd")
    push_image(reg.url, "team/app", "v1", img)                   # blobs, then the manifest
    idx = make_index([(img, {"os": "linux", "architecture": "amd64"}), ...])
    put_manifest(reg.url, "team/app", "multi", idx.manifest, idx.media_type)

Standard library plus ``zstandard`` (for zstd layers only).
"""

import gzip
import hashlib
import io
import json
import tarfile
import urllib.error
import urllib.request
from urllib.parse import urljoin

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT_ALL = ", ".join([DOCKER_MANIFEST, OCI_MANIFEST, DOCKER_LIST, OCI_INDEX])
_LAYER_TYPES = {
    (False, "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    (True, "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    (True, "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    (True, None): "application/vnd.oci.image.layer.v1.tar",
}


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_layer(files):
    """An uncompressed layer tar: ``files`` is ``{path: bytes}`` (or already a tar's bytes)."""
    if isinstance(files, bytes):
        return files
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def compress(data, compression):
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(data)
    if compression is None:
        return data
    raise ValueError(f"unknown compression {compression!r}")


class Image:
    """A crafted image: ``blobs`` ({digest: bytes}, config and layers), ``config``,
    ``manifest`` bytes, its ``media_type`` and ``digest``, ``diff_ids``, ``layers``
    (the manifest's layer descriptors)."""

    def __init__(self, blobs, config, manifest, media_type, diff_ids, layers):
        self.blobs, self.config, self.manifest, self.media_type = blobs, config, manifest, media_type
        self.diff_ids, self.layers = diff_ids, layers
        self.digest, self.config_digest = digest(manifest), digest(config)


def make_image(tars, oci=False, compression="gzip", arch="amd64", os_="linux", cmd=("sh",), layer_type=None,
               diff_ids=None, labels=None):
    """An image of the uncompressed layer ``tars``.  ``layer_type`` overrides the layers'
    media type and ``diff_ids`` the config's (to craft bad images)."""
    if not oci and compression != "gzip":
        raise ValueError("Docker schema 2 layers are gzip; use oci=True for zstd or plain layers")
    blobs, layers = {}, []
    for tar in tars:
        blob = compress(tar, compression)
        blobs[digest(blob)] = blob
        layers.append({"mediaType": layer_type or _LAYER_TYPES[(oci, compression)], "size": len(blob),
                       "digest": digest(blob)})
    ids = diff_ids or [digest(t) for t in tars]
    config = json.dumps({
        "architecture": arch, "os": os_, "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": list(cmd), "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Labels": labels or None},
        "rootfs": {"type": "layers", "diff_ids": ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(len(tars))],
    }, sort_keys=True).encode()
    blobs[digest(config)] = config
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json" if oci
                      else "application/vnd.docker.container.image.v1+json",
                      "size": len(config), "digest": digest(config)},
           "layers": layers}
    return Image(blobs, config, json.dumps(doc, indent=2).encode(), media_type, ids, layers)


class Index:
    def __init__(self, manifest, media_type):
        self.manifest, self.media_type, self.digest = manifest, media_type, digest(manifest)


def make_index(entries, oci=True):
    """A manifest list / OCI index of ``[(Image, platform dict)]``."""
    media_type = OCI_INDEX if oci else DOCKER_LIST
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "manifests": [{"mediaType": img.media_type, "size": len(img.manifest), "digest": img.digest,
                          "platform": platform} for img, platform in entries]}
    return Index(json.dumps(doc, indent=2).encode(), media_type)


# --- HTTP ------------------------------------------------------------------------------------------
def http(method, url, body=None, headers=None, ok=(200, 201, 202, 204)):
    """One request: ``(status, headers, body bytes)``; raises AssertionError unless
    ``status in ok`` (``ok=None``: any status)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            out = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        out = exc.code, exc.headers, exc.read()
    if ok and out[0] not in ok:
        raise AssertionError(f"{method} {url}: {out[0]} {out[2][:300]!r}")
    return out


def put_blob(base_url, repo, data):
    """Upload ``data`` as a blob of ``repo`` (one POST, one PUT); return its digest."""
    d = digest(data)
    _, headers, _ = http("POST", f"{base_url}/v2/{repo}/blobs/uploads/", b"")
    location = urljoin(base_url, headers["Location"])
    sep = "&" if "?" in location else "?"
    http("PUT", f"{location}{sep}digest={d}", data, {"Content-Type": "application/octet-stream"})
    return d


def put_manifest(base_url, repo, ref, data, media_type):
    """PUT a manifest or index; return the digest the registry answers."""
    if not isinstance(data, bytes):
        data = json.dumps(data).encode()
    _, headers, _ = http("PUT", f"{base_url}/v2/{repo}/manifests/{ref}", data, {"Content-Type": media_type})
    return headers.get("Docker-Content-Digest")


def push_image(base_url, repo, tag, image, skip_blobs=()):
    """Upload an :class:`Image`'s blobs (but ``skip_blobs``) and its manifest as ``repo:tag``."""
    for d, data in image.blobs.items():
        if d not in skip_blobs:
            put_blob(base_url, repo, data)
    return put_manifest(base_url, repo, tag, image.manifest, image.media_type)


def get_manifest(base_url, repo, ref, accept=ACCEPT_ALL):
    """``(bytes, content type)`` of a manifest or index."""
    _, headers, body = http("GET", f"{base_url}/v2/{repo}/manifests/{ref}", headers={"Accept": accept})
    return body, headers.get("Content-Type")


def get_blob(base_url, repo, d):
    return http("GET", f"{base_url}/v2/{repo}/blobs/{d}")[2]


# --- daemons that use test registries, and what a failed transfer may leave ----------------------
def registry_daemon(base, hosts, busybox_tar=None, extra_args=()):
    """A started :class:`~dockyard.testing.daemon.Daemon` that treats ``hosts`` as
    insecure registries, with ``busybox`` imported if ``busybox_tar`` is given."""
    from .daemon import Daemon

    args = [a for h in hosts for a in ("--insecure-registry", h)]
    d = Daemon(base, extra_args=[*args, *extra_args]).start()
    if busybox_tar is not None:
        res = d.cli("import", str(busybox_tar), "busybox")
        if res.returncode != 0:
            d.stop()
            raise AssertionError(f"import of busybox failed: {res.stderr.decode()}")
    return d


def stop_daemon(d):
    """Stop ``d``; return what it leaked (mounts, processes, cgroups, links)."""
    d.stop()
    d.remove_network_objects()
    return d.leaks()


def _files(path):
    import os

    out = []
    for root, _, names in os.walk(path):
        out += [os.path.relpath(os.path.join(root, n), path) for n in names]
    return sorted(out)


def snapshot(d):
    """What a failed pull must not change: ``{"images": [(id, tags)], "tmp": [...],
    "ingest": [...]}`` (ids and tags from the API; file names under the data root)."""
    client = d.sdk()
    try:
        images = sorted((img.id, tuple(sorted(img.tags))) for img in client.images.list(all=True))
    finally:
        client.close()
    return {"images": images, "tmp": _files(d.data_root / "tmp"),
            "ingest": _files(d.data_root / "content" / "ingest")}


def system_check(d):
    """``GET /dockyard/system/check``'s problems (``[]`` when clean)."""
    client = d.sdk()
    try:
        resp = client.api._get(client.api._url("/dockyard/system/check"))
        resp.raise_for_status()
        return resp.json().get("Problems") or []
    finally:
        client.close()
