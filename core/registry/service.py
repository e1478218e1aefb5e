"""The registry service: pull, push and login against registries, and a remote
image's descriptor (``docker manifest``'s ``/distribution``).

    registry = Registry(images, layers, content, data_root, insecure=["127.0.0.1:5000"])
    image_id = registry.pull("127.0.0.1:5000/busybox:latest", auth, progress)
    digest = registry.push("127.0.0.1:5000/busybox:latest", auth, progress)
    registry.login({"username": ..., "password": ..., "serveraddress": ...})

``auth`` is Docker's AuthConfig (``username``/``password``, or ``auth``, or
``identitytoken``/``registrytoken``) as the API's ``X-Registry-Auth`` header carries
it, or None for anonymous access.  ``progress`` is a callable taking Docker's JSON
progress messages (from worker threads), or a :class:`Progress`.  ``cancel`` is a
``threading.Event`` that stops the transfer (what finished is kept).

Registries are reached over HTTPS, verified against the system's CAs and
``<certs dir>/<host:port>/*.crt`` of each certs dir (default
``/etc/dockyard/certs.d``, then ``/etc/docker/certs.d``, as podman also reads
Docker's).  An insecure registry (named in ``insecure``, the daemon's
``--insecure-registry``, by name or CIDR, or on loopback) is tried over HTTPS
without verification, then plain HTTP; a pull tries the registry's ``mirrors``
first (:mod:`dockyard.registry.endpoints` has the rules).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import ImageNotFound, InvalidParameter, no_space
from . import names
from .auth import Credentials
from .distribution import inspect as inspect_remote
from .endpoints import Policy, mirrors_from, parse_insecure
from .errors import PullCancelled, RegistryError, RegistryNotFound, UnsupportedContent
from .progress import Progress
from .pull import Puller
from .push import Pusher
from .retry import Backoff
from .session import Session
from .transport import CERTS_DIRS, Endpoint

#: the daemon's flags are checked by endpoints' functions, re-exported for the daemon (its one way in)
__all__ = ["Registry", "decode_auth", "mirrors_from", "parse_insecure", "parse_transfer_options"]
log = logging.getLogger("dockyard.registry")

#: where progress messages go (Docker's JSON progress objects)
Sink = Callable[[dict[str, Any]], object]

def parse_transfer_options(max_downloads: int, max_uploads: int, upload_chunk: int) -> dict[str, int]:
    """Check the daemon's transfer flags; the keyword arguments of :class:`Registry`."""
    from ..errors import ConfigError

    for flag, value in (("--max-concurrent-downloads", max_downloads), ("--max-concurrent-uploads", max_uploads)):
        if value < 1:
            raise ConfigError(f"{flag} {value}: must be at least 1")
    if upload_chunk < 1024:
        raise ConfigError(f"--registry-upload-chunk {upload_chunk}: must be at least 1024 bytes")
    return {"max_downloads": max_downloads, "max_uploads": max_uploads, "upload_chunk": upload_chunk}


def decode_auth(header: str | None) -> dict[str, Any] | None:
    """Docker's ``X-Registry-Auth`` (base64url JSON, padding optional) → AuthConfig dict."""
    if not header:
        return None
    raw = header.strip()
    padded = raw.replace("-", "+").replace("_", "/") + "=" * (-len(raw) % 4)  # base64url or base64
    try:
        data = base64.b64decode(padded, validate=True)
        cfg = json.loads(data) if data.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise InvalidParameter("X-Registry-Auth is not base64-encoded JSON") from None
    if not isinstance(cfg, dict):
        raise InvalidParameter("X-Registry-Auth must encode a JSON object")
    return cfg


class Registry:
    """Registry access for one engine; ``max_downloads``/``max_uploads`` are Docker's
    per-pull/per-push concurrency, ``upload_chunk`` the size above which a blob is
    uploaded in PATCH chunks of that size; ``retries`` and ``backoff`` (seconds)
    make the one :class:`~dockyard.registry.retry.Backoff` of every transfer."""

    def __init__(self, images: Any, layers: Any, content: Any, data_root: str, insecure: Iterable[str] = (),
                 mirrors: dict[str, list[str]] | None = None, no_fallback: Iterable[str] = (),
                 certs_dir: str | os.PathLike[str] | Iterable[str] | None = None, max_downloads: int = 3, max_uploads: int = 5, retries: int = 4, backoff: float = 0.5,
                 upload_chunk: int = 16 << 20, timeout: int = 60) -> None:
        """``images``: the image store (:class:`dockyard.engine.images.store.ImageStore`),
        ``layers`` the layer store, ``content`` the content store; the data root holds
        the transfers' spools (``tmp/``).  ``mirrors``: ``{registry host: [URL, ...]}``;
        ``no_fallback``: the hosts whose pulls stop when every mirror missed."""
        self.images, self.layers, self.content, self.data_root = images, layers, content, data_root
        self.policy = Policy(insecure, mirrors, no_fallback)
        self.insecure = self.policy.insecure
        if certs_dir is None:
            certs_dir = CERTS_DIRS
        dirs = [certs_dir] if isinstance(certs_dir, (str, os.PathLike)) else certs_dir
        self.certs_dirs = [str(d) for d in dirs]
        self.max_downloads, self.max_uploads = max_downloads, max_uploads
        self.backoff = Backoff(retries, backoff)
        self.upload_chunk, self.timeout = upload_chunk, timeout
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    # wiring -------------------------------------------------------------------
    @property
    def tmpdir(self) -> str:
        path = os.path.join(self.data_root, "tmp")
        os.makedirs(path, 0o710, exist_ok=True)
        return path

    def images_api(self) -> tuple[Callable[..., str], Callable[..., dict[str, Any]], Callable[..., None]]:
        """``(add_from_registry, push_plan, record_pushed)``: see :mod:`dockyard.engine.images.distribution`."""
        from functools import partial

        from ..engine.images import distribution

        return (partial(distribution.add_from_registry, self.images), partial(distribution.push_plan, self.images),
                partial(distribution.record_pushed, self.images))

    def is_insecure(self, host: str) -> bool:
        return self.policy.is_insecure(host)

    def session(self, host: str, auth: dict[str, Any] | None = None, mirror: str | None = None) -> Session:
        """A session with registry ``host``, or with its ``mirror`` (a URL)."""
        if mirror is not None:
            netloc = mirror.split("://", 1)[1].split("/", 1)[0]
            endpoint = Endpoint(netloc, insecure=self.is_insecure(netloc), certs_dir=self.certs_dirs, url=mirror)
        else:
            endpoint = Endpoint(host, insecure=self.is_insecure(host), certs_dir=self.certs_dirs)
        return Session(endpoint, Credentials.from_authconfig(auth), backoff=self.backoff, timeout=self.timeout,
                       maxsize=max(self.max_downloads, self.max_uploads) + 1)

    @contextmanager
    def blob_lock(self, key: str) -> Iterator[None]:
        """One transfer per blob at a time (two pulls of one blob share its ingest)."""
        with self._locks_lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield

    # operations ---------------------------------------------------------------
    def pull(self, ref: str, auth: dict[str, Any] | None = None, progress: Progress | Sink | None = None,
             cancel: threading.Event | None = None, platform: str | None = None, tag: str | None = None) -> str:
        """Pull ``ref`` (from the first of its registry's mirrors that has it, else
        from the registry); return the image id."""
        from ..imagespec import Platform

        name = names.parse(ref, tag)
        want = Platform.parse(platform) if platform else None
        sink = _progress(progress)
        mirrors = self.policy.mirrors_of(name.domain)
        missed: list[str] = []
        for mirror in mirrors:
            try:
                return self._pull_from(name, auth, sink, cancel, want, mirror)
            except (PullCancelled, UnsupportedContent):
                raise
            except (RegistryError, RegistryNotFound) as exc:  # dockerd: a mirror's failure falls back
                log.info("pull of %s from mirror %s failed: %s", name, mirror, exc)
                missed.append(f"{mirror}: {exc}")
        if missed and not self.policy.falls_back(name.domain):
            raise RegistryNotFound(f"{name}: no mirror of {name.domain} could serve it and mirror_fallback is "
                                   f"off for {name.domain}: " + "; ".join(missed))
        return self._pull_from(name, auth, sink, cancel, want)

    def _pull_from(self, name: names.ImageName, auth: dict[str, Any] | None, progress: Progress,
                   cancel: threading.Event | None, want: Any, mirror: str | None = None) -> str:
        session = self.session(name.domain, auth, mirror)
        try:
            with no_space("pull", self.data_root):  # the blobs, the layers, the records
                return Puller(self, session, name, progress, cancel, want).run()
        finally:
            session.close()

    def push(self, ref: str, auth: dict[str, Any] | None = None, progress: Progress | Sink | None = None,
             cancel: threading.Event | None = None, tag: str | None = None) -> str:
        """Push ``ref`` (``name:tag``); return the manifest digest."""
        name = names.parse(ref, tag)
        session = self.session(name.domain, auth)
        try:
            with no_space("push", self.data_root):  # the compressed layers it keeps
                return Pusher(self, session, name, _progress(progress), cancel).run()
        finally:
            session.close()

    def push_all(self, name: str, tag: str | None = None, auth: dict[str, Any] | None = None,
                 progress: Progress | Sink | None = None, cancel: threading.Event | None = None) -> None:
        """``POST /images/{name}/push``: ``name:tag``, or, without a tag, every local
        tag of the repository (as ``docker push NAME`` does)."""
        parsed = names.parse(name, tag)
        if tag or ":" in name.rpartition("/")[2]:
            refs = [str(parsed)]
        else:
            refs = self.images.tags_in_repository(parsed.familiar)
            if not refs:
                raise ImageNotFound(f"An image does not exist locally with the tag: {parsed.familiar}")
        sink = _progress(progress)
        for ref in refs:
            self.push(ref, auth=auth, progress=sink, cancel=cancel)

    def search(self, term: str, limit: int | None = None, filters: dict[str, list[str]] | None = None,
               auth: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """``GET /images/search``: the registry's v1 search API (see :mod:`.search`)."""
        from .search import search

        return search(self.policy, self.certs_dirs, term, limit, filters, auth, self.timeout)

    def inspect(self, ref: str, auth: dict[str, Any] | None = None) -> dict[str, Any]:
        """``GET /distribution/{name}/json``: the registry's descriptor of ``ref``
        and its platforms (see :mod:`.distribution`)."""
        return inspect_remote(self, ref, auth)

    def login(self, auth: dict[str, Any] | None) -> dict[str, str]:
        """Docker's ``POST /auth``: check the credentials against the registry."""
        auth = auth or {}
        host = names.registry_host(auth.get("serveraddress"))
        session = self.session(host, auth)
        try:
            session.auth.login()
        finally:
            session.close()
        return {"Status": "Login Succeeded", "IdentityToken": ""}


def _progress(progress: Progress | Sink | None) -> Progress:
    if isinstance(progress, Progress):
        return progress
    return Progress(progress)
