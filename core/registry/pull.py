"""Pulling an image: manifest negotiation, platform selection, the config and the
layers fetched in parallel into the content store, each layer decompressed while it
downloads into the uncompressed tar that must hash to the config's diff ID, then one
call to the image store to register it all.

Resuming: a layer blob is written under the content store's ingest key
``pull-<hex>``.  If a pull stops mid-blob (the registry went away, the client hung
up), the ingest keeps the bytes that arrived; the next pull of that blob first
re-decompresses them from disk, then asks the registry only for the rest
(``Range: bytes = <offset>-``).  A blob that is complete and verified is never
fetched again, and a layer that is already registered is not fetched at all.

Nothing is registered until every layer is verified: a failed pull leaves no image
and no layer, only verified blobs and resumable ingests; an ingest whose content
turned out wrong (digest, decoding) is dropped.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any, Protocol

from .. import imagespec as spec
from ..engine.layers.content import DigestMismatch, digest_of
from ..engine.layers.store import chain_id
from ..errors import ImageNotFound
from .auth import scope
from .errors import BadContent, RegistryError, RegistryUnreachable, UnsupportedContent, sent_by_registry
from .parallel import LocalSide, Transfer
from .progress import short_id

if TYPE_CHECKING:
    import threading

    from .names import ImageName
    from .progress import Progress
    from .session import Session
    from .transport import Response

CHUNK = 1 << 20
MAX_CONFIG = 32 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Reader(Protocol):
    def read(self, n: int = ..., /) -> bytes: ...


class PullSide(LocalSide, Protocol):
    """What a pull needs of the registry service besides :class:`~.parallel.LocalSide`."""

    @property
    def images(self) -> Any:
        """The image store: ``resolve(ref)`` tells whether the pull changed a tag."""

    @property
    def layers(self) -> Any:
        """The layer store: ``get(chain_id)`` finds a layer already registered."""

    @property
    def max_downloads(self) -> int:
        """Layers fetched at once."""

    @property
    def tmpdir(self) -> str:
        """Where the uncompressed layer tars are spooled."""


class _Job:
    def __init__(self, index: int, desc: spec.Descriptor) -> None:
        self.index, self.desc, self.id = index, desc, short_id(desc.digest)
        self.diff_id: str | None = None
        self.tar_path: str | None = None
        self.fetched = False


class Puller(Transfer):
    verb = "pull"
    progress: Progress

    def __init__(self, local: PullSide, session: Session, name: ImageName, progress: Progress,
                 cancel: threading.Event | None = None, platform: spec.Platform | None = None) -> None:
        self.local, self.session, self.name, self.progress = local, session, name, progress
        super().__init__(name, cancel, "; rerun it to resume")
        self.content = local.content
        self.platform = platform
        self.scopes = [scope(name.path, "pull")]

    # the whole pull ---------------------------------------------------------
    def run(self) -> str:
        data, media_type, digest = self._manifest(self.name.ref, self.name.digest)
        index: tuple[bytes, str] | None = None
        if media_type in spec.INDEX_TYPES:
            index = (data, media_type)
            with sent_by_registry():
                entry = spec.parse_index(data, media_type).select(self.platform)
            data, media_type, digest = self._manifest(entry.digest, entry.digest)
            if media_type in spec.INDEX_TYPES:
                raise UnsupportedContent(f"{self.name}: an index inside an index is not supported")
        with sent_by_registry():
            manifest = spec.parse_manifest(data, media_type)
        for layer in manifest.layers:
            if layer.media_type in spec.FOREIGN_LAYER_TYPES:
                raise UnsupportedContent(f"layer {layer.digest} is a foreign (non-distributable) layer "
                                         f"({layer.media_type}): such layers are not fetched")
        config_desc, descs = manifest.config, manifest.layers
        self.progress.status(f"Pulling from {self.name.path}", id=self.name.ref)
        before = self._current()
        jobs = [_Job(i, d) for i, d in enumerate(descs)]
        self.n_layers = len(jobs)
        try:
            with ThreadPoolExecutor(self.local.max_downloads, thread_name_prefix="pull") as pool:
                config = pool.submit(self._config, config_desc)
                for job in jobs:
                    self.progress.layer(job.id, "Pulling fs layer")
                futures = [config] + [pool.submit(self._layer, job, config) for job in jobs]
                self.wait_all(futures)
            config_bytes, _ = config.result()
            layers = [{"diff_id": j.diff_id, "blob_digest": j.desc.digest, "media_type": j.desc.media_type,
                       "size": j.desc.size, "tar_path": j.tar_path} for j in jobs]
            for job in jobs:
                if job.tar_path:
                    self.progress.layer(job.id, "Extracting")
            add = self.local.images_api()[0]
            image_id = add(self.name.familiar, self.name.tag, data, media_type, config_bytes, layers,
                           index_bytes=index[0] if index else None, index_media_type=index[1] if index else None)
        finally:
            for job in jobs:
                if job.tar_path:
                    _unlink(job.tar_path)
        for job in jobs:
            if job.tar_path:
                self.progress.layer(job.id, "Pull complete")
        self.progress.status(f"Digest: {digest_of(index[0]) if index else digest}")
        fresh = before != image_id or any(j.fetched for j in jobs)
        what = "Downloaded newer image for" if fresh else "Image is up to date for"
        self.progress.status(f"Status: {what} {self.name}")
        return image_id

    def _current(self) -> str | None:
        if not self.name.tag:
            return None
        try:
            return self.local.images.resolve(f"{self.name.familiar}:{self.name.tag}")
        except (ImageNotFound, RegistryError, ValueError):
            return None

    # manifests and config ---------------------------------------------------
    def _manifest(self, ref: str | None, expected: str | None) -> tuple[bytes, str, str]:
        what = f"manifest for {self.name.familiar}:{ref}" if not str(ref).startswith("sha256:") else \
            f"manifest {ref} of {self.name.familiar}"
        resp = self.session.request("GET", f"/v2/{self.name.path}/manifests/{ref}", self.scopes,
                                    {"Accept": spec.ACCEPT}, listener=self.listener())
        if resp.status != 200:
            self.session.fail(resp, what)
        header_type, header_digest = resp.header("Content-Type"), resp.header("Docker-Content-Digest")
        data = resp.read_all(limit=spec.MAX_MANIFEST)
        resp.close()
        digest = digest_of(data)
        if expected and digest != expected:
            raise BadContent(f"{what}: digest mismatch: the registry sent content that hashes to {digest}")
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise BadContent(f"{what}: digest mismatch: the registry says {header_digest}, "
                             f"the content hashes to {digest}")
        media_type = spec.media_type_of(data, header_type)
        spec.check_type(media_type, what)
        return data, media_type, digest

    def _config(self, desc: spec.Descriptor) -> tuple[bytes, list[str]]:
        if self.content.has(desc.digest):
            data = self.content.read(desc.digest)
        else:
            self.check()
            resp = self.session.request("GET", f"/v2/{self.name.path}/blobs/{desc.digest}", self.scopes,
                                        listener=self.listener())
            if resp.status != 200:
                self.session.fail(resp, f"image config {desc.digest}")
            data = resp.read_all(limit=MAX_CONFIG)
            resp.close()
        if digest_of(data) != desc.digest or len(data) != desc.size:
            raise BadContent(f"image config {desc.digest}: digest mismatch: got {len(data)} bytes hashing to "
                             f"{digest_of(data)}")
        with sent_by_registry():
            cfg = spec.check_config(data, self.n_layers, f"image config {desc.digest}")
        return data, cfg["rootfs"]["diff_ids"]

    # layers -----------------------------------------------------------------
    def _layer(self, job: _Job, config: Future[tuple[bytes, list[str]]]) -> None:
        _, diff_ids = config.result()
        job.diff_id = diff_ids[job.index]
        chain: str | None = None
        for d in diff_ids[:job.index + 1]:
            chain = chain_id(chain, d)
        if self.local.layers.get(chain) is not None:
            self.progress.layer(job.id, "Already exists")
            return
        self.check()
        digest = job.desc.digest
        with self.local.blob_lock(digest):
            fd, job.tar_path = tempfile.mkstemp(dir=self.local.tmpdir, prefix=f"pull-{job.id}-", suffix=".tar")
            with os.fdopen(fd, "wb") as out:
                if self.content.has(digest):
                    if self.content.size(digest) != job.desc.size:
                        raise BadContent(f"layer {digest}: the manifest says {job.desc.size} bytes, the blob "
                                         f"has {self.content.size(digest)}")
                    got: str | None
                    with self.content.open(digest) as src:
                        got = self._unpack(job, src, out)
                    self.progress.layer(job.id, "Download complete")
                else:
                    got = self._download(job, out)
                    job.fetched = True
            if got != job.diff_id:
                if job.fetched:
                    self.content.delete(digest)
                raise BadContent(f"layer {digest} uncompresses to {got}, but the image config says its diff ID "
                                 f"is {job.diff_id}: the layer is truncated or corrupt")

    def _download(self, job: _Job, out: IO[bytes]) -> str | None:
        desc = job.desc
        writer = self.content.writer(f"pull-{desc.digest[7:]}", desc.digest, desc.size)
        source = _BlobSource(self, job, writer)
        try:
            got: str | None
            undecodable: BadContent | None
            try:
                got, undecodable = self._unpack(job, source, out), None
            except BadContent as exc:  # wrong bytes, or a bad image? the digest tells
                got, undecodable = None, exc
            while source.read(CHUNK):  # whatever the decoder did not need still counts
                pass
            self.progress.layer(job.id, "Verifying Checksum")
            writer.commit()
            if undecodable is not None:  # the registry's blob itself is bad: useless to keep
                self.content.delete(desc.digest)
                raise undecodable
        except BadContent:
            writer.abort(keep=False)
            raise
        except DigestMismatch as exc:
            writer.abort(keep=False)
            raise BadContent(f"layer {desc.digest}: {exc}") from None
        except BaseException:
            writer.abort(keep=writer.offset > 0)  # an empty ingest resumes nothing
            raise
        finally:
            source.close()
        self.progress.layer(job.id, "Download complete")
        return got

    def _unpack(self, job: _Job, src: _Reader, out: IO[bytes]) -> str:
        """Decompress ``src`` (gzip, zstd or plain, told by its magic) into ``out``;
        return the sha256 of the uncompressed tar."""
        peekable = _Peekable(src)
        head = peekable.peek(4)
        h = hashlib.sha256()
        kind = "gzip" if head[:2] == b"\x1f\x8b" else "zstd" if head == ZSTD_MAGIC else "tar"
        reader: _Reader
        if kind == "gzip":
            reader = _GunzipReader(peekable, job.desc.digest)
        elif kind == "zstd":
            try:
                import zstandard
            except ImportError:
                raise UnsupportedContent("zstd-compressed layers need the zstandard package") from None
            reader = zstandard.ZstdDecompressor().stream_reader(peekable, read_size=CHUNK,  # type: ignore[arg-type]
                                                                read_across_frames=True)  # (it only reads)
        else:
            reader = peekable
        try:
            while data := reader.read(CHUNK):
                out.write(data)
                h.update(data)
        except (zlib.error, EOFError) as exc:
            raise BadContent(f"layer {job.desc.digest}: corrupt {kind} stream: {exc}") from None
        except Exception as exc:
            if type(exc).__module__.startswith("zstd"):
                raise BadContent(f"layer {job.desc.digest}: corrupt zstd stream: {exc}") from None
            raise
        return "sha256:" + h.hexdigest()


class _Peekable:
    def __init__(self, raw: _Reader) -> None:
        self.raw, self.buf = raw, b""

    def peek(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = self.raw.read(CHUNK)
            if not data:
                break
            self.buf += data
        return self.buf[:n]

    def read(self, n: int = CHUNK) -> bytes:
        if self.buf:
            out, self.buf = self.buf[:n], self.buf[n:]
            return out
        return self.raw.read(n)

    def readable(self) -> bool:
        return True


class _GunzipReader:
    """Streaming gzip (multi-member, as Go's reader) with bounded output per read;
    a stream that ends early or trails garbage is an error."""

    def __init__(self, src: _Reader, what: str) -> None:
        self.src, self.what = src, what
        self.dec = zlib.decompressobj(31)
        self.pending = b""

    def read(self, n: int = CHUNK) -> bytes:
        while True:
            if self.dec.eof:
                rest = self.dec.unused_data + self.pending
                self.pending = b""
                if not rest:
                    rest = self.src.read(CHUNK)
                    if not rest:
                        return b""
                if rest[:2] != b"\x1f\x8b":
                    raise BadContent(f"layer {self.what}: data after the end of the gzip stream")
                self.dec = zlib.decompressobj(31)
                self.pending = rest
            data = self.dec.unconsumed_tail or self.pending
            self.pending = b""
            if not data:
                data = self.src.read(CHUNK)
                if not data:
                    raise BadContent(f"layer {self.what} is truncated: the gzip stream ends early")
            out = self.dec.decompress(data, n)
            if out:
                return out


class _BlobSource:
    """The blob's bytes for the decoder: first the ingest's (from disk), then the
    registry's from that offset on, each network byte written to the ingest.  A
    connection lost mid-blob is resumed with a Range request after a backoff."""

    def __init__(self, puller: Puller, job: _Job, writer: Any) -> None:
        """``writer``: the content store's ingest of the blob."""
        self.p, self.job, self.w = puller, job, writer
        self.size, self.digest = job.desc.size, job.desc.digest
        self.path = f"/v2/{puller.name.path}/blobs/{self.digest}"
        self._local = open(writer.path, "rb") if writer.offset else None
        self._local_left = writer.offset
        self._resp: Response | None = None
        self._skip, self._failures = 0, 0
        self.listener = puller.listener(job.id)
        if writer.offset:
            puller.progress.layer(job.id, "Downloading", writer.offset, self.size, force=True)

    def read(self, n: int = CHUNK) -> bytes:
        if self._local_left and self._local is not None:
            data = self._local.read(min(n, self._local_left))
            self._local_left -= len(data)
            if not data or not self._local_left:
                self._local.close()
                self._local_left = 0
            return data
        while self.w.offset < self.size:
            self.p.check()
            resp = self._resp if self._resp is not None else self._open()
            try:
                data = resp.read(n)
            except RegistryUnreachable as exc:
                self._backoff(str(exc))
                continue
            if not data:
                self._backoff(f"the answer ended at byte {self.w.offset} of {self.size}")
                continue
            if self._skip:
                cut = min(self._skip, len(data))
                data, self._skip = data[cut:], self._skip - cut
                if not data:
                    continue
            self.w.write(data)
            self._failures = 0
            self.p.progress.layer(self.job.id, "Downloading", self.w.offset, self.size)
            return data
        return b""

    def _open(self) -> Response:
        offset = self.w.offset
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.p.session.request("GET", self.path, self.p.scopes, headers, listener=self.listener)
        if resp.status == 206:
            start = (resp.header("Content-Range") or "").removeprefix("bytes ").split("-")[0]
            if start != str(offset):
                resp.close()
                raise RegistryError(f"layer {self.digest}: asked for bytes from {offset}, "
                                    f"got {resp.header('Content-Range')!r}")
        elif resp.status == 200:
            self._skip = offset  # Range ignored: the whole blob again
        else:
            self.p.session.fail(resp, f"layer {self.digest}")
        self._resp = resp
        return resp

    def _backoff(self, reason: str) -> None:
        self._close_resp()
        self._failures += 1
        if not self.p.session.backoff.pause(self._failures, reason, self.listener):
            raise RegistryUnreachable(f"layer {self.digest}: download stopped at {self.w.offset} of {self.size} "
                                      f"bytes: {reason}; the bytes so far are kept: rerun the pull to resume")

    def _close_resp(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def close(self) -> None:
        self._close_resp()
        if self._local is not None and not self._local.closed:
            self._local.close()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
