"""``engine.registry``: pull, push and login against registries.

    registry = Registry(engine, insecure=["127.0.0.1:5000"])
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
Docker's); plain HTTP is used only for hosts named in ``insecure`` (the daemon's
``--insecure-registry``), never as a fallback.
"""

import base64
import json
import os
import re
import threading
from contextlib import contextmanager

from ..errors import InvalidParameter, no_space
from . import names
from .auth import Credentials
from .progress import Progress
from .retry import Backoff
from .session import Session
from .transport import CERTS_DIRS, Endpoint

_HOSTPORT = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$")


def parse_insecure(values):
    """Check ``--insecure-registry`` values (``HOST[:PORT]``); return them."""
    from ..errors import ConfigError

    out = []
    for value in values or ():
        value = value.strip()
        if not _HOSTPORT.match(value):
            raise ConfigError(f"--insecure-registry {value!r}: expected HOST:PORT (e.g. 127.0.0.1:5000), "
                              "without a scheme or path")
        out.append(value)
    return out


def parse_transfer_options(max_downloads, max_uploads, upload_chunk):
    """Check the daemon's transfer flags; the keyword arguments of :class:`Registry`."""
    from ..errors import ConfigError

    for flag, value in (("--max-concurrent-downloads", max_downloads), ("--max-concurrent-uploads", max_uploads)):
        if value < 1:
            raise ConfigError(f"{flag} {value}: must be at least 1")
    if upload_chunk < 1024:
        raise ConfigError(f"--registry-upload-chunk {upload_chunk}: must be at least 1024 bytes")
    return {"max_downloads": max_downloads, "max_uploads": max_uploads, "upload_chunk": upload_chunk}


def decode_auth(header):
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

    def __init__(self, engine, insecure=(), certs_dir=None, max_downloads=3, max_uploads=5,
                 retries=4, backoff=0.5, upload_chunk=16 << 20, timeout=60):
        self.engine = engine
        self.insecure = list(insecure)
        if certs_dir is None:
            certs_dir = CERTS_DIRS
        self.certs_dirs = [certs_dir] if isinstance(certs_dir, (str, os.PathLike)) else list(certs_dir)
        self.max_downloads, self.max_uploads = max_downloads, max_uploads
        self.backoff = Backoff(retries, backoff)
        self.upload_chunk, self.timeout = upload_chunk, timeout
        self._locks, self._locks_lock = {}, threading.Lock()

    # wiring -------------------------------------------------------------------
    @property
    def content(self):
        return self.engine.content

    @property
    def tmpdir(self):
        path = os.path.join(self.engine.data_root, "tmp")
        os.makedirs(path, 0o710, exist_ok=True)
        return path

    def images_api(self):
        """``(add_from_registry, push_plan, record_pushed)``: see :mod:`dockyard.engine.imagedist`."""
        images = self.engine.images
        return images.add_from_registry, images.push_plan, images.record_pushed

    def is_insecure(self, host):
        return host in self.insecure or host.rpartition(":")[0] in self.insecure

    def session(self, host, auth=None):
        endpoint = Endpoint(host, insecure=self.is_insecure(host), certs_dir=self.certs_dirs)
        return Session(endpoint, Credentials.from_authconfig(auth), backoff=self.backoff, timeout=self.timeout,
                       maxsize=max(self.max_downloads, self.max_uploads) + 1)

    @contextmanager
    def blob_lock(self, key):
        """One transfer per blob at a time (two pulls of one blob share its ingest)."""
        with self._locks_lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield

    # operations ---------------------------------------------------------------
    def pull(self, ref, auth=None, progress=None, cancel=None, platform=None, tag=None):
        """Pull ``ref``; return the image id."""
        from ..imagespec import Platform
        from .pull import Puller

        name = names.parse(ref, tag)
        want = Platform.parse(platform) if platform else None
        session = self.session(name.domain, auth)
        try:
            with no_space("pull", self.engine.data_root):  # the blobs, the layers, the records
                return Puller(self, session, name, _progress(progress), cancel, want).run()
        finally:
            session.close()

    def push(self, ref, auth=None, progress=None, cancel=None, tag=None):
        """Push ``ref`` (``name:tag``); return the manifest digest."""
        from .push import Pusher

        name = names.parse(ref, tag)
        session = self.session(name.domain, auth)
        try:
            with no_space("push", self.engine.data_root):  # the compressed layers it keeps
                return Pusher(self, session, name, _progress(progress), cancel).run()
        finally:
            session.close()

    def login(self, auth):
        """Docker's ``POST /auth``: check the credentials against the registry."""
        auth = auth or {}
        host = names.registry_host(auth.get("serveraddress"))
        session = self.session(host, auth)
        try:
            session.auth.login()
        finally:
            session.close()
        return {"Status": "Login Succeeded", "IdentityToken": ""}


def _progress(progress):
    if isinstance(progress, Progress):
        return progress
    return Progress(progress)
