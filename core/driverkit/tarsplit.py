"""Tar-split: a layer tar's exact bytes, kept without its file contents.

A layer's diff ID is the sha256 of the tar it was made from, whose
exact bytes no writer can reproduce from the extracted tree (another tool wrote
its headers).  As Docker does (``tar-split``), :func:`record_tar_split` keeps the
tar's bytes *except* the regular-file contents -- headers, padding, trailers --
and :class:`TarSplitReader` rebuilds the original stream from that record and the
files of the extracted layer, so the diff ID can be verified again at any time
(and the layer moved to another driver byte for byte).  The record is small:
about one compressed header per entry.  Contents the extracted tree cannot give
back (a file that a later entry of the same tar replaced) are kept inline.

Layout of a record: zlib of ``MAGIC`` then items ``R`` u32 n + n raw bytes,
``F`` u16 n + n name bytes + u64 size (that many bytes from file ``name`` of the
layer), ``I`` u64 n + n bytes (contents kept inline), and ``E`` (end).

A record is made from the tar file before extraction (:func:`record_tar_split`,
which also gives the diff ID), or in passing while the tar streams into the
extraction (:class:`~dockyard.driverkit.tarsplit_tee.TarSplitTee`: a pull reads the
layer once), and read back against the extracted tree
(:class:`TarSplitReader`), whose files are opened relative to directory fds
without following any symlink.  :func:`scan_entries` lists where a tar keeps its
file contents (headers only), refusing what extraction refuses.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import struct
import tarfile
import zlib
from typing import IO, TYPE_CHECKING

from dockyard.errors import StorageError
from .safetar import _TarInfo, clean_name
from .tarwriter import CHUNK, WHITEOUT_PREFIX

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from _typeshed import StrPath

    #: ``(clean name, data offset, size, is regular file, is directory)``
    TarEntry = tuple[str, int, int, bool, bool]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def scan_entries(path: StrPath) -> list[TarEntry] | None:
    """The entries of the uncompressed layer tar file at ``path`` as a list of
    ``(clean name, data offset, size, is regular file, is directory)``, or
    ``None`` if it has GNU sparse members (whose archived bytes are not the file's).

    Reads headers only (payloads are skipped by seeking); refuses what
    :func:`dockyard.driverkit.safetar.extract` refuses about names and headers.
    """
    out: list[TarEntry] = []
    if os.path.getsize(path) == 0:
        return out
    try:
        with tarfile.open(path, "r:", tarinfo=_TarInfo) as tar:
            while (ti := tar.next()) is not None:
                tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every member: memory would grow
                if ti.issparse():
                    return None
                out.append((clean_name(ti.name), ti.offset_data, ti.size, ti.isreg(), ti.isdir()))
    except StorageError:
        raise
    except RecursionError:
        raise StorageError("refusing layer tar: too many chained extended headers") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, tarfile.ReadError) and "empty file" in str(exc):
            return out
        raise StorageError(f"corrupt layer tar: {exc}") from None
    return out


MAGIC = b"dockyard-tar-split/1\n"
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def _inline_set(entries: Sequence[TarEntry]) -> set[int]:
    """Indexes of regular entries whose content the extracted tree will not hold:
    replaced later by an entry of the same name or under a later non-directory
    ancestor, or named like a whiteout (never extracted as a file)."""
    last: dict[str, int] = {}
    nondir: dict[str, int] = {}
    for i, (name, _off, _size, _reg, is_dir) in enumerate(entries):
        last[name] = i
        if not is_dir:
            nondir[name] = i
    out: set[int] = set()
    for i, (name, _off, size, reg, _dir) in enumerate(entries):
        if not reg or not size:
            continue
        if last[name] > i or name.rpartition("/")[2].startswith(WHITEOUT_PREFIX):
            out.add(i)
            continue
        parts = name.split("/")
        for depth in range(1, len(parts)):
            if nondir.get("/".join(parts[:depth]), -1) > i:
                out.add(i)
                break
    return out


class _Out:
    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.z = zlib.compressobj(6)

    def put(self, data: bytes) -> None:
        self.buf.write(self.z.compress(data))

    def raw(self, data: bytes) -> None:
        for i in range(0, len(data), CHUNK):
            part = data[i:i + CHUNK]
            self.put(b"R" + struct.pack(">I", len(part)) + part)

    def raw_all(self, data: bytearray) -> None:
        if data:
            self.raw(bytes(data))
            data.clear()

    def done(self) -> bytes:
        self.put(b"E")
        self.buf.write(self.z.flush())
        return self.buf.getvalue()


def _read_exact(fh: IO[bytes], n: int, digest: hashlib._Hash, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise StorageError(f"corrupt layer tar: truncated {what}")
    digest.update(data)
    return data


def record_tar_split(path: StrPath) -> tuple[str, bytes | None]:
    """Read the uncompressed layer tar at ``path``; return ``(diff_id, record)``.

    ``diff_id`` is ``sha256:`` + the hex digest of the file; ``record`` the
    tar-split bytes, or ``None`` when no record can be made (a compressed file,
    GNU sparse members).  Refuses unsafe or corrupt tars like extraction does
    (:class:`~dockyard.errors.StorageError`), in memory bounded by the number of
    entries, not their size.
    """
    with open(path, "rb") as fh:
        head = fh.read(6)
    entries = None if head.startswith(_COMPRESSED) else scan_entries(path)
    digest = hashlib.sha256()
    if entries is None:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        return "sha256:" + digest.hexdigest(), None
    inline = _inline_set(entries)
    out = _Out()
    out.put(MAGIC)
    pos = 0
    with open(path, "rb") as fh:
        for i, (name, off, size, reg, _dir) in enumerate(entries):
            if not reg or not size:
                continue
            while pos < off:
                out.raw(_read_exact(fh, min(CHUNK, off - pos), digest, "header"))
                pos = min(off, pos + CHUNK)
            if i in inline:
                out.put(b"I" + struct.pack(">Q", size))
            else:
                bname = name.encode("utf-8", "surrogateescape")
                out.put(b"F" + struct.pack(">H", len(bname)) + bname + struct.pack(">Q", size))
            left = size
            while left:
                data = _read_exact(fh, min(CHUNK, left), digest, f"content of {name!r}")
                if i in inline:
                    out.put(data)
                left -= len(data)
            pos += size
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            out.raw(chunk)
    return "sha256:" + digest.hexdigest(), out.done()


class _Inflater:
    """Exact reads from a zlib-compressed record, in bounded memory."""

    def __init__(self, record: bytes) -> None:
        self.src = memoryview(record)
        self.pos = 0
        self.z = zlib.decompressobj()
        self.buf = bytearray()

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            want = n - len(self.buf)
            if self.z.unconsumed_tail:
                data = self.z.decompress(self.z.unconsumed_tail, max(want, 65536))
            elif self.pos < len(self.src):
                chunk = self.src[self.pos:self.pos + 65536]
                self.pos += len(chunk)
                data = self.z.decompress(chunk, max(want, 65536))
            else:
                raise StorageError("corrupt tar-split record: truncated")
            self.buf += data
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _open_in(root_fd: int, rel: str) -> int:
    """Open regular file ``rel`` below ``root_fd`` without following any symlink
    (and without opening anything else: a device node is refused before its
    driver sees an open)."""
    parts = rel.split("/")
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            new = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = new
        pfd = os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        try:
            if not stat.S_ISREG(os.fstat(pfd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", rel)
            return os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(pfd)
    finally:
        os.close(fd)


class TarSplitReader:
    """A readable stream of the original layer tar, rebuilt from a tar-split
    ``record`` and the layer's tree at ``root``; :attr:`diff_id` once read to the
    end.  Raises :class:`~dockyard.errors.StorageError` when the tree lacks a file
    the tar held (or its size differs); other content differences show in the
    digest.  Never follows a symlink of the tree."""

    def __init__(self, record: bytes, root: StrPath) -> None:
        self._in = _Inflater(record)
        if self._in.read(len(MAGIC)) != MAGIC:
            raise StorageError("corrupt tar-split record: bad magic")
        self._root: int | None = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._items = self._generate()
        self._buf = bytearray()
        self._digest = hashlib.sha256()
        self._eof = False
        self.size = 0

    def _generate(self) -> Iterator[bytes]:
        while True:
            kind = self._in.read(1)
            if kind == b"R":
                yield self._in.read(struct.unpack(">I", self._in.read(4))[0])
            elif kind == b"I":
                left = struct.unpack(">Q", self._in.read(8))[0]
                while left:
                    data = self._in.read(min(CHUNK, left))
                    left -= len(data)
                    yield data
            elif kind == b"F":
                name = self._in.read(struct.unpack(">H", self._in.read(2))[0]).decode("utf-8", "surrogateescape")
                size = struct.unpack(">Q", self._in.read(8))[0]
                yield from self._file(name, size)
            elif kind == b"E":
                return
            else:
                raise StorageError(f"corrupt tar-split record: unknown item {kind!r}")

    def _file(self, name: str, size: int) -> Iterator[bytes]:
        if self._root is None:
            raise ValueError("I/O operation on a closed TarSplitReader")
        try:
            fd = _open_in(self._root, name)
        except OSError as exc:
            raise StorageError(f"layer content differs from its tar: {name!r}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                raise StorageError(f"layer content differs from its tar: {name!r} is not the "
                                   f"{size}-byte file the tar held")
            left = size
            while left:
                data = f.read(min(CHUNK, left))
                if not data:
                    raise StorageError(f"layer content differs from its tar: {name!r} shrank while read")
                left -= len(data)
                yield data

    def read(self, n: int | None = -1) -> bytes:
        while not self._eof and (n is None or n < 0 or len(self._buf) < n):
            try:
                self._buf += next(self._items)
            except StopIteration:
                self._eof = True
        if n is None or n < 0 or n >= len(self._buf):
            out, self._buf = bytes(self._buf), bytearray()
        else:
            out = bytes(self._buf[:n])
            del self._buf[:n]
        self._digest.update(out)
        self.size += len(out)
        return out

    def readable(self) -> bool:
        return True

    @property
    def diff_id(self) -> str:
        """``sha256:...`` of everything read (the diff ID once read to the end)."""
        return "sha256:" + self._digest.hexdigest()

    def drain(self) -> str:
        """Read to the end; return :attr:`diff_id`."""
        while self.read(CHUNK):
            pass
        return self.diff_id

    def close(self) -> None:
        if self._root is not None:
            os.close(self._root)
            self._root = None

    def __enter__(self) -> TarSplitReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
