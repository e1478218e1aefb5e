"""A layer blob's uncompressed stream, as a pull hands it to the extraction:
gzip (multi-member, as Go's reader), zstd or plain, told by the magic, decoded
in bounded chunks; decoding errors are the registry's content's
(:class:`~dockyard.registry.errors.BadContent`), and the first error of the
source is kept, since the extraction reports what it sees as a storage error.
"""

from __future__ import annotations

import zlib
from typing import IO, Protocol

from .errors import BadContent, UnsupportedContent

CHUNK = 1 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Reader(Protocol):
    def read(self, n: int = ..., /) -> bytes: ...


def decoder(src: Reader, digest: str) -> Guarded:
    """``src`` (the blob of layer ``digest``) decompressed: gzip, zstd or plain,
    told by its magic."""
    peekable = _Peekable(src)
    head = peekable.peek(4)
    if head[:2] == b"\x1f\x8b":
        return Guarded(_GunzipReader(peekable, digest), digest, "gzip")
    if head == ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError:
            raise UnsupportedContent("zstd-compressed layers need the zstandard package") from None
        return Guarded(zstandard.ZstdDecompressor().stream_reader(peekable, read_size=CHUNK,  # type: ignore[arg-type]
                                                                  read_across_frames=True),  # (it only reads)
                       digest, "zstd")
    return Guarded(peekable, digest, "tar")


class Guarded:
    """A layer's uncompressed stream for the extraction: a decoding error
    becomes :class:`BadContent`, and the first error is kept in :attr:`error`
    (extraction wraps what it sees, e.g. a lost connection, as a storage error)."""

    def __init__(self, reader: Reader, digest: str, kind: str) -> None:
        self.reader, self.digest, self.kind = reader, digest, kind
        self.error: BaseException | None = None

    def read(self, n: int = CHUNK) -> bytes:
        try:
            return self.reader.read(n)
        except (zlib.error, EOFError) as exc:
            self.error = BadContent(f"layer {self.digest}: corrupt {self.kind} stream: {exc}")
        except Exception as exc:
            if type(exc).__module__.startswith("zstd"):
                self.error = BadContent(f"layer {self.digest}: corrupt zstd stream: {exc}")
            else:
                self.error = exc
        raise self.error

    def readable(self) -> bool:
        return True


class BlobTar:
    """A layer's uncompressed tar read from its blob (closes the blob)."""

    def __init__(self, reader: Guarded, blob: IO[bytes]) -> None:
        self.reader, self.blob = reader, blob

    def read(self, n: int = CHUNK) -> bytes:
        return self.reader.read(n)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.blob.close()

    def __enter__(self) -> BlobTar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Peekable:
    def __init__(self, raw: Reader) -> None:
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

    def __init__(self, src: Reader, what: str) -> None:
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

