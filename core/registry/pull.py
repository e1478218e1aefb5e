"""Pulling an image: manifest negotiation, platform selection, the config and the
layers fetched in parallel into the content store, then one call to the image
store to register it all.

One read per layer: each downloaded byte goes to the blob's ingest (hashed: the
compressed digest) and on, decompressed, into the storage driver's staged layer
(:meth:`~dockyard.engine.layers.store.LayerStore.stage`), which hashes the tar
(the diff ID) and records its tar-split on the way.  A layer's parent must be
extracted before it, so a layer whose parent is not staged yet when its download
starts is downloaded into the content store alone and extracted from there once
the parent is ready (downloads overlap extraction, as Docker's do).

Resuming: a layer blob is written under the content store's ingest key
``pull-<hex>``.  If a pull stops mid-blob (the registry went away, the client hung
up), the ingest keeps the bytes that arrived; the next pull of that blob first
re-reads them from disk, then asks the registry only for the rest
(``Range: bytes = <offset>-``).  A blob that is complete and verified is never
fetched again, and a layer that is already registered is not fetched at all.

Nothing is registered until every layer is verified: staged layers are recorded
only when both digests matched, by the image store, all or nothing; a failed pull
leaves no image and no layer, only verified blobs and resumable ingests; an
ingest whose content turned out wrong (digest, decoding, an unsafe tar) is
dropped.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from .. import imagespec as spec
from ..engine.layers.content import DigestMismatch, digest_of
from ..engine.layers.store import chain_id
from ..errors import ImageNotFound, StorageError
from .auth import scope
from .errors import BadContent, RegistryError, RegistryUnreachable, UnsupportedContent, sent_by_registry
from .layerstream import BlobTar, Reader, decoder
from .parallel import LocalSide, Stopped, Transfer
from .progress import short_id
from .readahead import ReadAhead

if TYPE_CHECKING:
    from ..engine.layers.store import Staged
    from .names import ImageName
    from .progress import Progress
    from .session import Session
    from .transport import Response

CHUNK = 1 << 20
MAX_CONFIG = 32 << 20
_LATER = object()  # the parent layer is not extracted yet


class PullSide(LocalSide, Protocol):
    """What a pull needs of the registry service besides :class:`~.parallel.LocalSide`."""

    @property
    def images(self) -> Any:
        """The image store: ``resolve(ref)`` tells whether the pull changed a tag."""

    @property
    def layers(self) -> Any:
        """The layer store: ``get(chain_id)`` finds a layer already registered;
        ``stage``, ``complete_record``, ``discard`` extract a layer as it
        downloads (:class:`~dockyard.engine.layers.store.LayerStore`)."""

    @property
    def max_downloads(self) -> int:
        """Layers fetched at once."""

    @property
    def tmpdir(self) -> str:
        """Where an uncompressed layer tar is spooled when its tar-split record
        cannot be made in passing (rare)."""


class _Job:
    def __init__(self, index: int, desc: spec.Descriptor) -> None:
        self.index, self.desc, self.id = index, desc, short_id(desc.digest)
        self.diff_id: str | None = None
        self.chain: str | None = None
        self.staged: Staged | None = None  # extracted, not recorded yet
        self.exists = False  # registered before this pull
        self.fetched = False
        self.ready = threading.Event()  # set when done (staged, existing or failed)


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
                futures = [config] + [pool.submit(self._layer, job, config, jobs) for job in jobs]
                self.wait_all(futures)
            config_bytes, _ = config.result()
            layers = [{"diff_id": j.diff_id, "blob_digest": j.desc.digest, "media_type": j.desc.media_type,
                       "size": j.desc.size, "staged": j.staged, "open_tar": (lambda j=j: self._open_tar(j))}
                      for j in jobs]
            add = self.local.images_api()[0]
            image_id = add(self.name.familiar, self.name.tag, data, media_type, config_bytes, layers,
                           index_bytes=index[0] if index else None, index_media_type=index[1] if index else None)
        finally:
            for job in reversed(jobs):  # not recorded: a failure (the image store discards its own)
                if job.staged is not None:
                    self.local.layers.discard(job.staged)
        for job in jobs:
            if job.staged is not None:
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
    def _layer(self, job: _Job, config: Future[tuple[bytes, list[str]]], jobs: list[_Job]) -> None:
        try:
            _, diff_ids = config.result()
            job.diff_id = diff_ids[job.index]
            for d in diff_ids[:job.index + 1]:
                job.chain = chain_id(job.chain, d)
            if self.local.layers.get(job.chain) is not None:
                job.exists = True
                self.progress.layer(job.id, "Already exists")
                return
            self.check()
            digest = job.desc.digest
            with self.local.blob_lock(digest):
                if not self.content.has(digest):
                    parent = self._parent(job, jobs, wait=False)
                    job.staged = self._download(job, parent)
                    job.fetched = True
            if job.staged is None:  # the blob only: extracted from the store once the parent is
                self._stage_blob(job, self._parent(job, jobs, wait=True))
            assert job.staged is not None  # staged, or an error was raised
            if not job.staged.complete:
                self.local.layers.complete_record(job.staged, lambda: self._open_tar(job), self.local.tmpdir)
        finally:
            job.ready.set()

    def _parent(self, job: _Job, jobs: list[_Job], wait: bool) -> Any:
        """The driver id of the layer ``job`` goes on (None for the base layer),
        or ``_LATER`` if it is not extracted yet and not ``wait``."""
        if job.index == 0:
            return None
        prev = jobs[job.index - 1]
        while True:
            if prev.ready.is_set():
                if prev.staged is not None:
                    return prev.staged.driver_id
                if prev.exists and prev.chain is not None:
                    return self.local.layers.driver_id(prev.chain)
                self.check()
                raise Stopped(f"stopped: layer {prev.id} failed")
            if not wait:
                return _LATER
            self.check()
            prev.ready.wait(0.1)

    def _stage_blob(self, job: _Job, parent: str | None) -> None:
        digest = job.desc.digest
        if self.content.size(digest) != job.desc.size:
            raise BadContent(f"layer {digest}: the manifest says {job.desc.size} bytes, the blob "
                             f"has {self.content.size(digest)}")
        if not job.fetched:
            self.progress.layer(job.id, "Download complete")
        self.progress.layer(job.id, "Extracting")
        try:
            with self.content.open(digest) as src:
                job.staged = self._stage(job, src, parent)
            self._check_diff_id(job)
        except (BadContent, StorageError):
            if job.fetched:  # useless to keep: it can never make this layer
                self.content.delete(digest)
            raise

    def _check_diff_id(self, job: _Job) -> None:
        assert job.staged is not None
        if job.staged.diff_id != job.diff_id:
            got = job.staged.diff_id
            self.local.layers.discard(job.staged)
            job.staged = None
            raise BadContent(f"layer {job.desc.digest} uncompresses to {got}, but the image config says its "
                             f"diff ID is {job.diff_id}: the layer is truncated or corrupt")

    def _download(self, job: _Job, parent: Any) -> Staged | None:
        """Download the blob of ``job`` (verified, into the content store); unless
        ``parent`` is ``_LATER``, extract it on the way onto that driver layer."""
        desc = job.desc
        writer = self.content.writer(f"pull-{desc.digest[7:]}", desc.digest, desc.size)
        source = _BlobSource(self, job, writer)
        # Extracted as it downloads ("Downloading" says it all): the download runs
        # ahead on a thread of its own, beside the extraction (readahead.py).
        ahead = ReadAhead(source.read, CHUNK, name=f"pull-{job.id}", stopping=source.abandon) \
            if parent is not _LATER else None
        try:
            failed: BadContent | StorageError | None = None
            try:
                if ahead is not None:
                    try:
                        job.staged = self._stage(job, ahead, parent)
                    except (BadContent, StorageError) as exc:  # wrong bytes, or a bad image? the digest tells
                        failed = exc
                while (ahead or source).read(CHUNK):  # whatever the decoder did not need still counts
                    pass
            finally:
                if ahead is not None:
                    ahead.close()  # from here the ingest's writer is this thread's alone
            self.progress.layer(job.id, "Verifying Checksum")
            writer.commit()
            if failed is None and job.staged is not None and job.staged.diff_id != job.diff_id:
                failed = BadContent(f"layer {desc.digest} uncompresses to {job.staged.diff_id}, but the image "
                                    f"config says its diff ID is {job.diff_id}: the layer is truncated or corrupt")
            if failed is not None:  # the registry's blob itself is bad: useless to keep
                self.content.delete(desc.digest)
                raise failed
        except (BadContent, StorageError):
            self._drop(job)
            writer.abort(keep=False)
            raise
        except DigestMismatch as exc:
            self._drop(job)
            writer.abort(keep=False)
            raise BadContent(f"layer {desc.digest}: {exc}") from None
        except BaseException:
            self._drop(job)
            writer.abort(keep=writer.offset > 0)  # an empty ingest resumes nothing
            raise
        finally:
            source.close()
        self.progress.layer(job.id, "Download complete")
        return job.staged

    def _drop(self, job: _Job) -> None:
        if job.staged is not None:
            self.local.layers.discard(job.staged)
            job.staged = None

    def _stage(self, job: _Job, src: Reader, parent: str | None) -> Staged:
        """Decompress ``src`` into a staged layer on ``parent``; the layer's
        errors as the pull's (a lost connection stays one, not a storage error)."""
        tar = decoder(src, job.desc.digest)
        try:
            return self.local.layers.stage(tar, parent)
        except BaseException as exc:
            if tar.error is not None and exc is not tar.error:
                raise tar.error from None
            raise

    def _open_tar(self, job: _Job) -> BlobTar:
        """The layer's uncompressed tar again, from its verified blob."""
        src = self.content.open(job.desc.digest)
        try:
            return BlobTar(decoder(src, job.desc.digest), src)
        except BaseException:
            src.close()
            raise


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
        self._abandoned = False
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
            if self._abandoned:
                raise Stopped(f"stopped: layer {self.digest} is no longer read")
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

    def abandon(self) -> None:
        """Make the read under way (on the read-ahead's thread) give up at its next
        retry, instead of retrying the registry for a reader that is gone."""
        self._abandoned = True

    def _backoff(self, reason: str) -> None:
        self._close_resp()
        self._failures += 1
        if self._abandoned:
            raise Stopped(f"stopped: layer {self.digest} is no longer read")
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

