"""Pushing an image: its layers and config as blobs (skipped when the registry has
them, mounted from another repository of the same registry when we know one holds
them, uploaded otherwise: monolithic for small blobs, in PATCH chunks for large
ones), then its manifest.

A layer whose compressed blob we know (it was pulled, or pushed before) and still
hold is pushed byte for byte, so a pulled image pushed elsewhere keeps its
digests, and a pushed image pulls back byte-identical.  A layer without one is
gzip-compressed deterministically (level 6, chunks on several threads: :mod:`.gzipper`)
into the content store, checked against its diff ID on the way, and uploaded while
it is compressed (PATCH chunks as the gzip grows; after a broken connection the
whole blob again, with retries); the image store records it afterwards.  The
manifest is reused byte for byte when one we hold describes exactly these blobs;
otherwise a Docker schema 2 manifest (OCI when a layer is OCI-typed) is written.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

from .. import imagespec as spec
from ..engine.layers.content import digest_of
from ..errors import InvalidParameter
from .auth import scope
from .errors import BadContent, RegistryError, RegistryUnavailable, RegistryUnreachable
from .gzipper import gzip_stream
from .names import parse as parse_name
from .parallel import LocalSide, Transfer
from .progress import short_id

CHUNK = 1 << 20


if TYPE_CHECKING:
    from .names import ImageName
    from .progress import Progress
    from .session import Session


class PushSide(LocalSide, Protocol):
    """What a push needs of the registry service besides :class:`~.parallel.LocalSide`."""

    @property
    def max_uploads(self) -> int:
        """Blobs uploaded at once."""

    @property
    def upload_chunk(self) -> int:
        """A blob larger than this goes up in PATCH chunks of this size."""


class _Halted(Exception):
    """The upload of a layer being compressed failed: the compression stops."""


class _Growth:
    """How far the gzip that a compressor is writing has got, for the upload
    that follows it: ``reader`` is opened at the first write, so it stays valid
    when the finished file is renamed into the content store."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.reader: IO[bytes] | None = None
        self.offset, self.done = 0, False

    def to(self, path: str, offset: int) -> None:
        with self._cond:
            if self.reader is None:
                self.reader = open(path, "rb")
            self.offset = offset
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            self.done = True
            self._cond.notify_all()

    def wait(self, offset: int) -> tuple[int, bool]:
        """``(offset, done)`` once the gzip has ``offset`` bytes, or is finished."""
        with self._cond:
            self._cond.wait_for(lambda: self.done or self.offset >= offset)
            return self.offset, self.done

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


class _Counting:
    """A slice of a binary file, read by the transport as a request body,
    reporting progress."""

    def __init__(self, fh: IO[bytes], start: int, length: int, report: Callable[[int], None]) -> None:
        self.fh, self.left, self.report, self.sent = fh, length, report, start
        fh.seek(start)

    def read(self, n: int = CHUNK) -> bytes:
        data = self.fh.read(min(n, self.left)) if self.left > 0 else b""
        self.left -= len(data)
        self.sent += len(data)
        if data:
            self.report(self.sent)
        return data

    def close(self) -> None:
        pass


class Pusher(Transfer):
    verb = "push"
    progress: Progress

    def __init__(self, local: PushSide, session: Session, name: ImageName, progress: Progress,
                 cancel: threading.Event | None = None) -> None:
        if name.digest:
            raise InvalidParameter(f"cannot push a digest reference ({name}): push a tag")
        self.local, self.session, self.name, self.progress = local, session, name, progress
        super().__init__(name, cancel)
        self.content = local.content
        self.repo = f"/v2/{name.path}"
        self.scopes = [scope(name.path, "pull", "push")]

    def run(self) -> str:
        _, push_plan, record_pushed = self.local.images_api()
        plan = push_plan(f"{self.name.familiar}:{self.name.tag}")
        self.progress.status(f"The push refers to repository [{self.name.familiar}]")
        layers = plan["layers"]
        for layer in reversed(layers):
            self.progress.layer(short_id(layer["diff_id"]), "Preparing")
        config_digest, config_bytes = plan["config"]
        with ThreadPoolExecutor(self.local.max_uploads, thread_name_prefix="push") as pool:
            futures: list[Future[Any]] = [pool.submit(self._layer, layer) for layer in layers]
            futures.append(pool.submit(self._config, config_digest, config_bytes))
            self.wait_all(futures)
        descs = [f.result() for f in futures[:-1]]
        data, media_type = self._manifest(plan, config_digest, config_bytes, descs)
        digest = digest_of(data)
        resp = self.session.request("PUT", f"{self.repo}/manifests/{self.name.tag}", self.scopes,
                                    {"Content-Type": media_type, "Content-Length": str(len(data))}, data)
        if resp.status not in (200, 201):
            self.session.fail(resp, f"manifest {self.name}")
        said = resp.header("Docker-Content-Digest")
        resp.read_all(limit=1 << 20)
        resp.close()
        if said and said != digest:
            raise BadContent(f"manifest {self.name}: the registry stored it as {said}, we sent {digest}")
        blobs = [{"diff_id": layer["diff_id"], "digest": d["digest"], "media_type": d["mediaType"],
                  "size": d["size"]} for layer, d in zip(layers, descs)]
        record_pushed(self.name.familiar, self.name.tag, digest, data, media_type, blobs)
        self.progress.status(f"{self.name.tag}: digest: {digest} size: {len(data)}")
        self.progress.aux({"Tag": self.name.tag, "Digest": digest, "Size": len(data)})
        return digest

    # blobs ------------------------------------------------------------------
    def _config(self, digest: str, data: bytes) -> str:
        if not self._exists(digest):
            self._upload(digest, len(data), None, data=data)
        return digest

    def _layer(self, layer: dict[str, Any]) -> dict[str, Any]:
        id = short_id(layer["diff_id"])
        known = list(layer.get("known_blobs") or [])
        for blob in known:
            if self._exists(blob["digest"]):
                self.progress.layer(id, "Layer already exists")
                return _desc(blob)
        held = [b for b in known if self.content.has(b["digest"])]
        for blob in known:
            src = parse_name(blob["repo"]) if blob.get("repo") else None
            if src is not None and src.domain == self.name.domain and src.path != self.name.path:
                if self._mount(blob["digest"], src.path):
                    self.progress.layer(id, f"Mounted from {src.path}")
                    return _desc(blob)
        self.check()
        if held:
            blob = held[0]
        else:
            blob, pushed = self._compress_and_push(layer, id)
            if pushed:
                self.progress.layer(id, "Pushed")
                return _desc(blob)
            if self._exists(blob["digest"]):
                self.progress.layer(id, "Layer already exists")
                return _desc(blob)
        self._upload(blob["digest"], blob["size"], id)
        self.progress.layer(id, "Pushed")
        return _desc(blob)

    def _exists(self, digest: str) -> bool:
        resp = self.session.request("HEAD", f"{self.repo}/blobs/{digest}", self.scopes, listener=self.listener())
        resp.close()
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        self.session.fail(resp, f"blob {digest}")

    def _mount(self, digest: str, from_path: str) -> bool:
        query = urlencode({"mount": digest, "from": from_path})
        resp = self.session.request("POST", f"{self.repo}/blobs/uploads/?{query}",
                                    self.scopes + [scope(from_path, "pull")], {"Content-Length": "0"}, b"",
                                    listener=self.listener())
        resp.read_all(limit=1 << 20)
        resp.close()
        if resp.status == 201:
            return True
        if resp.status == 202 and (opened := resp.header("Location")):  # not mounted: drop the upload it opened
            self.session.request("DELETE", opened, self.scopes, retry=False).close()
        return False

    def _compress_and_push(self, layer: dict[str, Any], id: str) -> tuple[dict[str, Any], bool]:
        """Gzip the layer into the content store and upload the gzip while it grows,
        an ``upload_chunk`` PATCH at a time, so that the upload overlaps the
        compression (which alone took half of a push's time).  Returns ``(blob,
        pushed)``: ``pushed`` is False when the upload broke off (a lost connection,
        a 5xx); the blob is complete in the content store then, for the retries
        of :meth:`_upload`."""
        growth, halt, result = _Growth(), threading.Event(), dict[str, Any]()

        def compress() -> None:
            try:
                result["blob"] = self._compress(layer, id, growth.to, halt, layer.get("size") or None)
            except BaseException as exc:
                result["error"] = exc
            finally:
                growth.finish()

        worker = threading.Thread(target=compress, name=f"push-gzip-{id}", daemon=True)
        worker.start()
        pushed = False
        try:
            pushed = self._push_growing(growth, result, id)
        except (RegistryUnreachable, RegistryUnavailable):
            pass  # upload again once the gzip is whole, with retries
        except BaseException:
            halt.set()
            raise
        finally:
            worker.join()
            growth.close()
        if "error" in result:
            raise result["error"]
        return result["blob"], pushed

    def _push_growing(self, growth: _Growth, result: dict[str, Any], id: str) -> bool:
        """Upload the gzip the compressor is writing; True once the registry has it."""
        chunk, start = self.local.upload_chunk, 0
        location: str | None = None

        def report(sent: int) -> None:
            pass  # the compressor reports the progress

        try:
            while True:
                offset, done = growth.wait(start + chunk)
                if done and "blob" not in result:
                    return False  # the compression failed: the caller raises its error
                if location is None:
                    location = self._start_upload(f"the layer {id}")
                reader = growth.reader
                assert reader is not None  # opened at the gzip's first write, before wait() returned
                if done and start == 0 and offset <= chunk:  # one chunk: one PUT, as for a held blob
                    self._finish(location, result["blob"]["digest"],
                                 lambda: _Counting(reader, 0, offset, report), offset)
                    location = None
                    return True
                end = min(offset, start + chunk)
                if end > start:
                    self.check()
                    location = self._patch(location, reader, start, end - start, f"the layer {id}", report)
                    start = end
                if done and start == offset:
                    break
            self._finish(location, result["blob"]["digest"], b"", 0)
            location = None
            return True
        finally:
            if location is not None:  # broken off: drop the half-made upload
                try:
                    self.session.request("DELETE", location, self.scopes, retry=False).close()
                except RegistryError:
                    pass

    def _compress(self, layer: dict[str, Any], id: str, written: Callable[[str, int], None] | None = None,
                  halt: threading.Event | None = None, total: int | None = None) -> dict[str, Any]:
        """Gzip the layer's tar into the content store; ``{"digest", "size", "mediaType"}``.
        ``written(path, offset)`` hears how far the gzip file has got; ``halt`` stops it.
        With ``written``, the progress is the tar read against the layer's ``total``
        size, as Docker reports a push that compresses as it uploads."""
        diff_id = layer["diff_id"]
        with self.local.blob_lock(diff_id):
            writer = self.content.writer(f"push-{diff_id[7:]}")
            writer.truncate()
            try:
                h = hashlib.sha256()

                read = 0

                def seen(data: bytes) -> None:
                    nonlocal read
                    self.check()
                    if halt is not None and halt.is_set():
                        raise _Halted("the upload of the layer failed")
                    h.update(data)
                    if written is not None:
                        read += len(data)
                        self.progress.layer(id, "Pushing", read, total)

                def write(data: bytes) -> None:
                    writer.write(data)
                    if written is not None:
                        writer.flush()
                        written(writer.path, writer.offset)

                tar = layer["open_tar"]()
                try:
                    gzip_stream(tar.read, write, on_chunk=seen)
                finally:
                    tar.close()
                if "sha256:" + h.hexdigest() != diff_id:
                    raise BadContent(f"layer {diff_id}: its content now hashes to sha256:{h.hexdigest()}: "
                                     "the stored layer changed; nothing was pushed")
                size = writer.offset
                digest = writer.commit()
            except BaseException:
                writer.abort(keep=False)
                raise
        return {"digest": digest, "size": size, "media_type": spec.DOCKER_LAYER_GZIP, "repo": None}

    def _upload(self, digest: str, size: int, id: str | None, data: bytes | None = None) -> None:
        """Upload a blob (``data``, or the content store's), starting the whole
        upload over after a lost connection or a 5xx, paced by the session's backoff."""
        failures = 0
        while True:
            try:
                return self._upload_once(digest, size, id, data)
            except (RegistryUnreachable, RegistryUnavailable) as exc:
                failures += 1
                if not self.session.backoff.pause(failures, str(exc), self.listener(id)):
                    raise

    def _start_upload(self, what: str) -> str:
        """Open an upload session for ``what``; its location."""
        resp = self.session.request("POST", f"{self.repo}/blobs/uploads/", self.scopes, {"Content-Length": "0"}, b"",
                                    listener=self.listener())
        location = resp.header("Location")
        if resp.status >= 300:
            self.session.fail(resp, f"starting the upload of {what}")
        if resp.status != 202 or not location:
            resp.close()
            raise RegistryError(f"starting the upload of {what}: answered {resp.status} without a Location")
        resp.read_all(limit=1 << 20)
        resp.close()
        return location

    def _patch(self, location: str, fh: IO[bytes], start: int, n: int, what: str,
               report: Callable[[int], None]) -> str:
        """Send bytes ``start``..``start + n`` of ``fh``; the location to go on with."""
        resp = self.session.request(
            "PATCH", location, self.scopes,
            {"Content-Type": "application/octet-stream", "Content-Length": str(n),
             "Content-Range": f"{start}-{start + n - 1}"},
            lambda: _Counting(fh, start, n, report), retry=False)
        if resp.status != 202:
            self.session.fail(resp, f"uploading {what} (bytes {start}-{start + n - 1})")
        location = resp.header("Location") or location
        resp.read_all(limit=1 << 20)
        resp.close()
        return location

    def _upload_once(self, digest: str, size: int, id: str | None, data: bytes | None) -> None:
        location = self._start_upload(digest)

        def report(sent: int) -> None:
            if id:
                self.progress.layer(id, "Pushing", sent, size)

        chunk = self.local.upload_chunk
        fh = None if data is not None else self.content.open(digest)
        try:
            if data is not None:
                return self._finish(location, digest, data, size)
            assert fh is not None  # the content store's blob, opened above
            if size <= chunk:
                return self._finish(location, digest, lambda: _Counting(fh, 0, size, report), size)
            for start in range(0, size, chunk):
                self.check()
                location = self._patch(location, fh, start, min(chunk, size - start), digest, report)
            return self._finish(location, digest, b"", 0)
        finally:
            if fh is not None:
                fh.close()

    def _finish(self, location: str, digest: str, body: bytes | Callable[[], _Counting], length: int) -> None:
        url = location + ("&" if "?" in location else "?") + urlencode({"digest": digest})
        resp = self.session.request("PUT", url, self.scopes, {"Content-Type": "application/octet-stream",
                                                              "Content-Length": str(length)}, body, retry=False)
        if resp.status not in (201, 204):
            self.session.fail(resp, f"uploading {digest}")
        resp.read_all(limit=1 << 20)
        resp.close()

    # manifest ---------------------------------------------------------------
    def _manifest(self, plan: dict[str, Any], config_digest: str, config_bytes: bytes,
                  descs: list[dict[str, Any]]) -> tuple[bytes, str]:
        wanted = [d["digest"] for d in descs]
        for digest, media_type, data in (plan.get("manifests") or {}).values():
            try:
                held = spec.parse_manifest(data, media_type)
            except InvalidParameter:
                continue
            if held.config.digest == config_digest and [x.digest for x in held.layers] == wanted:
                return data, media_type
        oci = any(d["mediaType"].startswith("application/vnd.oci.") for d in descs)
        layers = [dict(d, mediaType=spec.OCI_LAYER_GZIP if oci and d["mediaType"] == spec.DOCKER_LAYER_GZIP
                       else d["mediaType"]) for d in descs]
        doc: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": spec.OCI_MANIFEST if oci else spec.DOCKER_MANIFEST,
            "config": {"mediaType": spec.OCI_CONFIG if oci else spec.DOCKER_CONFIG, "size": len(config_bytes),
                       "digest": config_digest},
            "layers": layers}
        return json.dumps(doc, indent=3).encode(), doc["mediaType"]


def _desc(blob: dict[str, Any]) -> dict[str, Any]:
    return {"mediaType": blob["media_type"], "size": blob["size"], "digest": blob["digest"]}
