"""``GET /distribution/{name}/json``: what a registry says an image reference is,
without pulling it: the descriptor of its manifest (or index) and its platforms
(those of the index's manifests, or the one of the manifest's image config)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from .. import imagespec as mf
from . import names
from .auth import scope
from .errors import sent_by_registry
from .session import Session


class Sessions(Protocol):
    """What an inspection needs of the registry service: a session with a registry."""

    def session(self, host: str, auth: dict[str, Any] | None = None) -> Session: ...


def inspect(registry: Sessions, ref: str, auth: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"Descriptor": {mediaType, digest, size}, "Platforms": [...]}`` of ``ref``."""
    name = names.parse(ref)
    session = registry.session(name.domain, auth)
    scopes = [scope(name.path, "pull")]
    try:
        resp = session.request("GET", f"/v2/{name.path}/manifests/{name.ref}", scopes, {"Accept": mf.ACCEPT})
        if resp.status != 200:
            session.fail(resp, f"manifest for {name}")
        data = resp.read_all(limit=mf.MAX_MANIFEST)
        media_type = mf.media_type_of(data, resp.header("Content-Type"))
        resp.close()
        doc = json.loads(data)
        descriptor = {"mediaType": media_type, "digest": mf.digest_of(data), "size": len(data)}
        if media_type in mf.INDEX_TYPES:
            platforms = [m.get("platform") or {} for m in doc.get("manifests") or []]
        else:
            with sent_by_registry():
                config = mf.parse_manifest(data, media_type).config
            resp = session.request("GET", f"/v2/{name.path}/blobs/{config.digest}", scopes)
            if resp.status != 200:
                session.fail(resp, f"image config of {name}")
            cfg = json.loads(resp.read_all(limit=mf.MAX_MANIFEST))
            resp.close()
            platforms = [{k: cfg[k] for k in ("architecture", "os", "variant") if cfg.get(k)}]
    finally:
        session.close()
    return {"Descriptor": descriptor, "Platforms": platforms}
