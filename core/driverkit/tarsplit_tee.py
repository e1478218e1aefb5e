"""Tar-split in passing: the record (:mod:`dockyard.driverkit.tarsplit`) and the
diff ID of a layer tar made while the tar streams into its extraction, so that a
pull reads the layer once (download, decompress, hash, record, extract) instead
of writing it to a file and reading it twice more.

:class:`TarSplitTee` is a readable stream handed to ``storage_apply_diff`` in
place of the tar; what it is not sure to record exactly as
:func:`~dockyard.driverkit.tarsplit.record_tar_split` would, it says so
(:attr:`TarSplitTee.complete`) and the caller falls back to that function.
Stdlib only.
"""

from __future__ import annotations

import hashlib
import struct
import tarfile
from typing import IO, TYPE_CHECKING

from dockyard.errors import StorageError
from .safetar import MAX_HEADER, clean_name
from .tarsplit import _COMPRESSED, MAGIC, _inline_set, _Out
from .tarwriter import CHUNK, WHITEOUT_PREFIX

if TYPE_CHECKING:
    from .tarsplit import TarEntry


_META_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
               tarfile.SOLARIS_XHDTYPE)
_NUL_BLOCK = bytes(tarfile.BLOCKSIZE)


def _pax_records(buf: bytes) -> dict[str, str] | None:
    """A PAX header's ``{keyword: value}`` (tarfile's framing rules), or None if
    it is not one this recorder is sure to read as tarfile does."""
    out, pos = {}, 0
    while pos < len(buf) and buf[pos] != 0:
        sp = buf.find(b" ", pos)
        if sp < 0 or not buf[pos:sp].isdigit():
            return None
        length = int(buf[pos:sp])
        end = pos + length - 1
        if length < 5 or end >= len(buf) or buf[end] != 0x0A:
            return None
        key, eq, value = buf[sp + 1:end].partition(b"=")
        if not key or not eq or key == b"hdrcharset":
            return None
        try:
            k = key.decode("utf-8")
            out[k] = value.decode("utf-8", "surrogateescape")
        except UnicodeDecodeError:
            return None
        pos += length
    return out


class TarSplitTee:
    """The uncompressed layer tar read from ``src``, passed through unchanged to
    whoever extracts it, hashed and tar-split recorded on the way: one read of
    the tar where :func:`record_tar_split` needs its own.

    Headers are parsed as they pass (tarfile's header reader for each block; PAX
    and GNU long names as tarfile applies them).  Whatever this parser is not
    sure to read exactly as extraction does (sparse members, global PAX paths or
    sizes, a charset, a content that a later entry replaces, a compressed tar
    inside) leaves :attr:`complete` false: the caller then makes the record with
    :func:`record_tar_split` from a second read, as before.  Reads from ``src``
    are ``chunk`` bytes; small reads are served from that buffer.
    """

    def __init__(self, src: IO[bytes], chunk: int = CHUNK) -> None:
        self.src, self.chunk = src, chunk
        self._buf, self._pos, self._eof = b"", 0, False
        self._digest = hashlib.sha256()
        self.size = 0
        self._out = _Out()
        self._out.put(MAGIC)
        self._raw = bytearray()  # header bytes not yet put in the record
        self._hdr = bytearray()
        self._meta = bytearray()
        self._meta_type = b""
        self._state = "hdr"  # hdr, data (file content), meta (extended header), pad, tail, off
        self._left = self._pad = 0
        self._inline = False
        self._pending: list[tuple[str, object]] = []
        self._entries: list[TarEntry] = []
        self._inlined: set[int] = set()
        self.complete = True
        self._plain = True  # False: a compressed tar inside (no record, as record_tar_split)

    def read(self, n: int | None = -1) -> bytes:
        if self._pos >= len(self._buf):
            if self._eof or not self._fill():
                return b""
        if n is None or n < 0:
            n = len(self._buf) - self._pos
        out = self._buf[self._pos:self._pos + n] if self._pos or n < len(self._buf) else self._buf
        self._pos += len(out)
        return out

    def _fill(self) -> bool:
        """The next chunk of ``src``: hashed and scanned whole, whatever the
        extraction's read sizes (tarfile reads 10 kB at a time)."""
        data = self.src.read(self.chunk)
        self._buf, self._pos = data, 0
        if not data:
            self._eof = True
            return False
        if self.size == 0:
            if len(data) < 6:
                self._give_up()
            elif data.startswith(_COMPRESSED):
                self._plain, self._state = False, "off"
        self.size += len(data)
        self._digest.update(data)
        if self._state != "off":
            self._scan(data)
        return True

    def readable(self) -> bool:
        return True

    @property
    def diff_id(self) -> str:
        """``sha256:...`` of the tar (once read to the end: :meth:`drain`)."""
        return "sha256:" + self._digest.hexdigest()

    def drain(self) -> str:
        """Read to the end (what the extraction left, e.g. padding); return :attr:`diff_id`."""
        while self.read(self.chunk):
            pass
        return self.diff_id

    def record(self) -> bytes | None:
        """The tar-split record (read to the end first): ``None`` when none can be
        made (a compressed tar inside, as :func:`record_tar_split`) or when
        :attr:`complete` is false (the caller makes it from a second read)."""
        if not self._plain or not self.complete:
            return None
        if self._state not in ("hdr", "tail") or self._hdr:
            self._give_up()  # truncated: extraction refuses it anyway
            return None
        if _inline_set(self._entries) - self._inlined:
            self._give_up()  # a later entry replaced a content: the tree will not give it back
            return None
        self._out.raw_all(self._raw)
        return self._out.done()

    def _give_up(self) -> None:
        self.complete, self._state = False, "off"
        self._raw, self._meta, self._hdr, self._entries = bytearray(), bytearray(), bytearray(), []

    def _scan(self, data: bytes) -> None:
        mv, i, n = memoryview(data), 0, len(data)
        while i < n and self._state != "off":
            state = self._state
            if state == "tail":
                self._raw += mv[i:]
                i = n
            elif state == "hdr":
                take = min(tarfile.BLOCKSIZE - len(self._hdr), n - i)
                self._hdr += mv[i:i + take]
                i += take
                if len(self._hdr) == tarfile.BLOCKSIZE:
                    block = bytes(self._hdr)
                    self._hdr.clear()
                    self._raw += block
                    self._header(block)
            else:
                take = min(self._left, n - i)
                if state == "data":
                    if self._inline:
                        self._out.put(bytes(mv[i:i + take]))
                else:
                    self._raw += mv[i:i + take]
                    if state == "meta":
                        self._meta += mv[i:i + take]
                i += take
                self._left -= take
                if not self._left:
                    self._section_done()
            if len(self._raw) >= CHUNK:
                self._out.raw_all(self._raw)

    def _section_done(self) -> None:
        if self._state == "meta":
            self._extended(bytes(self._meta))
            self._meta.clear()
        if self._state in ("data", "meta") and self._pad:
            self._state, self._left, self._pad = "pad", self._pad, 0
        elif self._state != "off":
            self._state = "hdr"

    def _section(self, state: str, size: int) -> None:
        self._state, self._left, self._pad = state, size, -size % tarfile.BLOCKSIZE
        if not size:
            self._section_done()

    def _header(self, block: bytes) -> None:
        if block == _NUL_BLOCK:
            self._state = "tail"  # the end of the archive: the rest is kept as it is
            return
        try:
            ti = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError:
            return self._give_up()
        if ti.type in _META_TYPES:
            if ti.size > MAX_HEADER:
                return self._give_up()
            self._meta_type = ti.type
            return self._section("meta", ti.size)
        if ti.type == tarfile.GNUTYPE_SPARSE or ti.type not in tarfile.SUPPORTED_TYPES:
            return self._give_up()
        name, size = ti.name, ti.size
        if len(self._pending) > 1:
            return self._give_up()  # several extended headers for one entry: precedence rules
        for kind, value in self._pending:
            if kind == "name":
                name = str(value)
            else:
                pax = value
                assert isinstance(pax, dict)
                name = pax.get("path", name)
                if "size" in pax:
                    if not pax["size"].isdigit():
                        return self._give_up()
                    size = int(pax["size"])
        self._pending.clear()
        try:
            clean = clean_name(name)
        except StorageError:
            return self._give_up()
        reg = ti.isreg()
        self._entries.append((clean, 0, size, reg, ti.isdir()))
        if not reg or not size:
            return
        self._out.raw_all(self._raw)
        self._inline = clean.rpartition("/")[2].startswith(WHITEOUT_PREFIX)
        if self._inline:
            self._inlined.add(len(self._entries) - 1)
            self._out.put(b"I" + struct.pack(">Q", size))
        else:
            bname = clean.encode("utf-8", "surrogateescape")
            self._out.put(b"F" + struct.pack(">H", len(bname)) + bname + struct.pack(">Q", size))
        self._section("data", size)

    def _extended(self, buf: bytes) -> None:
        if self._meta_type == tarfile.GNUTYPE_LONGNAME:
            self._pending.append(("name", tarfile.nts(buf, "utf-8", "surrogateescape")))  # type: ignore[attr-defined]
        elif self._meta_type == tarfile.GNUTYPE_LONGLINK:
            pass  # a link's target: not what the record names
        else:
            pax = _pax_records(buf)
            if pax is None or any(k.startswith("GNU.sparse") for k in pax):
                return self._give_up()
            if self._meta_type == tarfile.XGLTYPE:
                if "path" in pax or "size" in pax:
                    return self._give_up()
                return
            self._pending.append(("pax", pax))
