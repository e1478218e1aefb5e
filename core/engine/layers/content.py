"""The content store: blobs (layers as shipped, image configs, manifests,
indexes) addressed by digest, under ``<data-root>/content``.

    blobs/sha256/<hex>     complete, verified blobs (read-only once there)
    ingest/<key>           partial writes, resumable by ``key`` (a pull of the same
                           blob picks up where an interrupted one stopped)

Only root reads them (directories ``0700``, blobs ``0400``): a private image's
layers and configs are no other host user's business (:mod:`dockyard.engine.modes`).

A blob becomes visible only after its digest (and size, when known) checked out:
it is written under ``ingest/`` and renamed into place, so a crash or a bad
download never leaves a half-written or wrong blob under its name.  A blob is
fsynced once, when committed; its writeback is started as it is written
(``sync_file_range``), so that the final fsync of a big blob waits for its last
megabytes only, not for all of it.  Stdlib only.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
from typing import BinaryIO

from ...errors import DockyardError, InvalidParameter
from ..modes import BLOB_MODE, private_dir

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20
WRITEBACK = 16 << 20  # written bytes between two starts of their writeback
_SYNC_FILE_RANGE_WRITE = 2


def _writeback_fn():
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


_sync_file_range = _writeback_fn()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Have the kernel start writing ``length`` bytes from ``offset`` of ``fd``
    to disk, without waiting (best effort: the commit's fsync is what counts)."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


class DigestMismatch(DockyardError):
    """Content did not match the digest (or size) it was announced with."""

    status = 400


def check_digest(digest: object) -> str:
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise InvalidParameter(f"invalid digest {digest!r} (only sha256:<64 hex> is supported)")
    return digest


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Writer:
    """An ingest: ``write()`` chunks, then ``commit()`` (verifies, renames) or
    ``abort()``.  Reopening the same ``key`` continues from ``offset`` (the hash
    is recomputed over what is already there)."""

    def __init__(self, store: ContentStore, key: str, expected: str | None = None, size: int | None = None) -> None:
        self.store, self.expected, self.size = store, expected, size
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:200]
        self.path = os.path.join(store.root, "ingest", safe)
        private_dir(os.path.dirname(self.path))
        self._hash = hashlib.sha256()
        self._fh = os.fdopen(os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600), "ab+")
        self._fh.seek(0)
        while chunk := self._fh.read(CHUNK):
            self._hash.update(chunk)
        self.offset = self._fh.tell()
        self._written = self.offset  # the writeback of what came before is started
        if size is not None and self.offset > size:  # more than the blob can hold: start over
            self.truncate()

    def truncate(self) -> None:
        self._fh.seek(0)
        self._fh.truncate()
        self._hash, self.offset, self._written = hashlib.sha256(), 0, 0

    def flush(self) -> None:
        """Make what was written readable through another file object."""
        self._fh.flush()

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self._hash.update(data)
        self.offset += len(data)
        if self.size is not None and self.offset > self.size:
            raise DigestMismatch(f"blob {self.expected or ''}: more than the announced {self.size} bytes")
        if self.offset - self._written >= WRITEBACK:
            self._fh.flush()
            start_writeback(self._fh.fileno(), self._written, self.offset - self._written)
            self._written = self.offset

    def commit(self) -> str:
        """Verify and publish; returns the digest.  On a mismatch the partial data is
        dropped (it can never become right) and DigestMismatch is raised."""
        digest = "sha256:" + self._hash.hexdigest()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        problem = None
        if self.expected is not None and digest != self.expected:
            problem = f"digest mismatch: expected {self.expected}, got {digest}"
        elif self.size is not None and self.offset != self.size:
            problem = f"size mismatch for {digest}: expected {self.size} bytes, got {self.offset}"
        if problem:
            os.unlink(self.path)
            raise DigestMismatch(problem)
        target = self.store.path(digest)
        private_dir(os.path.dirname(target))
        os.chmod(self.path, BLOB_MODE)
        os.replace(self.path, target)
        return digest

    def abort(self, keep: bool = True) -> None:
        """Stop writing; ``keep`` the partial data for a resume (else drop it)."""
        if not self._fh.closed:
            self._fh.close()
        if not keep:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort(keep=not isinstance(exc, DigestMismatch))


class ContentStore:
    def __init__(self, root: str) -> None:
        self.root = root
        for path in (root, os.path.join(root, "blobs"), os.path.join(root, "blobs", "sha256")):
            private_dir(path)

    def path(self, digest: str) -> str:
        return os.path.join(self.root, "blobs", "sha256", check_digest(digest)[7:])

    def has(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        return os.path.getsize(self.path(digest))

    def open(self, digest: str) -> BinaryIO:
        return open(self.path(digest), "rb")

    def read(self, digest: str) -> bytes:
        with self.open(digest) as fh:
            return fh.read()

    def writer(self, key: str, expected: str | None = None, size: int | None = None) -> Writer:
        if expected is not None:
            check_digest(expected)
        return Writer(self, key, expected, size)

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data``; returns its digest (a no-op if it is already there)."""
        digest = digest_of(data)
        if expected is not None and digest != expected:
            raise DigestMismatch(f"digest mismatch: expected {expected}, got {digest}")
        if not self.has(digest):
            w = self.writer(f"put-{digest[7:]}", digest, len(data))
            try:
                w.write(data)
                w.commit()
            except BaseException:
                w.abort(keep=False)  # nobody resumes a put: a full disk leaves no partial blob
                raise
        return digest

    def put_file(self, path: str, expected: str | None = None) -> str:
        """Store the file at ``path`` (copied); returns its digest."""
        key = "file-" + hashlib.sha256(os.fsencode(path)).hexdigest()
        with self.writer(key, expected) as w, open(path, "rb") as src:
            w.truncate()
            while chunk := src.read(CHUNK):
                w.write(chunk)
            return w.commit()

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def digests(self) -> list[str]:
        d = os.path.join(self.root, "blobs", "sha256")
        return ["sha256:" + name for name in sorted(os.listdir(d)) if len(name) == 64]

    def verify(self) -> list[tuple[str, str]]:
        """``[(digest, problem)]`` for every blob whose content no longer matches."""
        bad = []
        for digest in self.digests():
            h = hashlib.sha256()
            with self.open(digest) as fh:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
            if "sha256:" + h.hexdigest() != digest:
                bad.append((digest, f"content hashes to sha256:{h.hexdigest()}"))
        return bad

    def sweep_ingest(self) -> None:
        """At start: drop the partial writes nobody resumes (``put-``, ``file-``,
        ``push-``: a killed daemon's); a pull's ``pull-`` ingests stay to resume."""
        try:
            names = os.listdir(os.path.join(self.root, "ingest"))
        except FileNotFoundError:
            return
        for name in names:
            if not name.startswith("pull-"):
                try:
                    os.unlink(os.path.join(self.root, "ingest", name))
                except OSError:
                    pass

    def clear_ingest(self) -> None:
        shutil.rmtree(os.path.join(self.root, "ingest"), ignore_errors=True)
