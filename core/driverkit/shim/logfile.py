"""Log files that rotate, written by a shim and read back by the daemon (stdlib
only, importable standalone from the shim kit's directory, like :mod:`supervisor`:
a log driver's writer module imports it by bare name, ``import logfile``).

Docker's rotation (json-file's and local's ``max-size``, ``max-file``,
``compress``): before a write, a file that has reached ``max_size`` bytes is
rotated: ``PATH.N-1`` becomes ``PATH.N`` (the oldest beyond ``max_file`` is
dropped), ``PATH`` becomes ``PATH.1`` and a new ``PATH`` is started; with
``max_file`` 1 the file is truncated in place instead.  With ``compress`` the
rotated files are gzipped (``PATH.1.gz``...) at gzip's fastest level, in line:
a shim can neither start a thread nor fork a helper outside the container's
pid namespace (it unshared it for the container's init), so the output waits in
its pipe meanwhile (about 0.1 s for 20 MB).  A file may pass ``max_size`` by one write.

Readers (:func:`read_rotated`) follow the files with a cursor ``[inode,
offset]``: a rotation is seen as a new inode and the rest of the old file is
read from ``PATH.1`` (unless it was compressed meanwhile: those entries are
skipped by a follower, never by a full read).  ``docker logs --tail N`` reads
from the end instead (:func:`read_tail`, with the format's way back: for
newline-terminated entries :func:`last_lines`), newest file first.
"""

import os
import re

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    #: ``parse(data)`` -> (entries, bytes consumed): the complete entries at the start of ``data``
    Parse = Callable[[bytes], "tuple[list[Any], int]"]
    #: ``last(fh, size, n)`` -> ``(data, end)`` or ``None``: the bytes of the last (at
    #: most) ``n`` complete entries of the open file ``fh`` of ``size`` bytes, read
    #: from its end, and the offset just after them; ``None`` when the file cannot
    #: be walked backwards (the reader then parses all of it)
    Last = Callable[[Any, int, int], "tuple[bytes, int] | None"]

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$")


def parse_size(text: str) -> int:
    """Docker's ``max-size`` (go-units ``RAMInBytes``: binary units, ``10m``,
    ``1.5g``, ``512k``); ``ValueError("invalid size: 'x'")`` as dockerd says."""
    m = _SIZE.match(text.strip())
    if not m:
        raise ValueError(f"invalid size: '{text}'")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


class RotatingFile:
    """Append-only log file ``path`` with Docker's rotation (see the module)."""

    def __init__(self, path: str, max_size: int = -1, max_file: int = 1, compress: bool = False,
                 mode: int = 0o600) -> None:
        self.path, self.max_size, self.max_file = path, int(max_size), max(1, int(max_file))
        self.compress, self.mode = bool(compress) and self.max_file > 1, mode
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
        self.size = os.fstat(self.fd).st_size

    def write(self, data: bytes) -> None:
        """Append ``data`` (rotating first if the file is full); a full disk drops it."""
        if not data:
            return
        if self.max_size > 0 and self.size >= self.max_size:
            try:
                self.rotate()
            except OSError:
                pass  # keep writing where we can
        try:
            os.write(self.fd, data)
            self.size += len(data)
        except OSError:
            pass  # a full disk must not block the container: drop the output

    def write_records(self, records: "list[bytes]") -> None:
        """Append ``records`` (whole entries) in as few writes as rotation allows:
        a file is rotated between two entries, never inside one."""
        buf: list[bytes] = []
        size = 0
        for rec in records:
            if self.max_size > 0 and buf and self.size + size >= self.max_size:
                self.write(b"".join(buf))
                buf, size = [], 0
            buf.append(rec)
            size += len(rec)
        self.write(b"".join(buf))

    def rotate(self) -> None:
        if self.max_file == 1:
            os.ftruncate(self.fd, 0)
            self.size = 0
            return
        ext = ".gz" if self.compress else ""
        try:
            os.unlink(f"{self.path}.{self.max_file - 1}{ext}")
        except FileNotFoundError:
            pass
        for n in range(self.max_file - 2, 0, -1):
            try:
                os.rename(f"{self.path}.{n}{ext}", f"{self.path}.{n + 1}{ext}")
            except FileNotFoundError:
                pass
        os.rename(self.path, f"{self.path}.1")
        old = self.fd
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.mode)
        os.close(old)
        self.size = 0
        if self.compress:
            _gzip_file(f"{self.path}.1")

    def close(self) -> None:
        os.close(self.fd)


def _gzip_file(path: str) -> None:
    import gzip
    import shutil

    try:
        mode = os.stat(path).st_mode & 0o777  # the log's own: nobody else reads it compressed either
        fd = os.open(path + ".gz.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        with open(path, "rb") as src, open(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb",
                                                                        compresslevel=1) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.rename(path + ".gz.tmp", path + ".gz")
        os.unlink(path)
    except Exception as exc:  # noqa: BLE001 - left uncompressed: readers take both
        import sys

        print(f"shim: compressing {path}: {type(exc).__name__}: {exc}", file=sys.stderr)


# ------------------------------------------------------------------ reading back
def rotated(path: str) -> list[str]:
    """The rotated files of ``path``, oldest first (``PATH.N[.gz]`` ... ``PATH.1``)."""
    found = []
    d, base = os.path.split(path)
    pat = re.compile(re.escape(base) + r"\.(\d+)(\.gz)?$")
    try:
        names = os.listdir(d or ".")
    except FileNotFoundError:
        return []
    for name in names:
        m = pat.match(name)
        if m:
            found.append((int(m.group(1)), name))
    return [os.path.join(d, name) for _, name in sorted(found, reverse=True)]


def _read(path: str, offset: int = 0) -> bytes:
    if path.endswith(".gz"):
        import gzip

        with gzip.open(path, "rb") as fh:
            return fh.read()[offset:]
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read()


def read_rotated(path: str, cursor: "Any", parse: "Parse") -> "tuple[list[Any], list[int]]":
    """Return ``(entries, cursor)``: the complete entries of ``path`` and its
    rotated files after ``cursor`` (``None``: everything kept, oldest first)."""
    entries: list[Any] = []
    if cursor is None:
        for old in rotated(path):
            try:
                got, _ = parse(_read(old))
            except OSError:
                continue  # rotated away meanwhile
            entries.extend(got)
        ino, offset = None, 0
    else:
        ino, offset = cursor
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return entries, [ino or 0, offset]
    if ino is not None and st.st_ino != ino:  # rotated: the rest of the old file first
        try:
            if os.stat(path + ".1").st_ino == ino:
                got, _ = parse(_read(path + ".1", offset))
                entries.extend(got)
        except OSError:
            pass
        offset = 0
    elif st.st_size < offset:  # truncated in place (max-file 1)
        offset = 0
    try:
        got, used = parse(_read(path, offset))
    except FileNotFoundError:
        return entries, [st.st_ino, 0]
    entries.extend(got)
    return entries, [st.st_ino, offset + used]


def last_lines(fh: "Any", size: int, n: int) -> "tuple[bytes, int]":
    """:data:`Last` of a file of newline-terminated entries (json-file, CRI):
    blocks read backwards until ``n`` + 1 newlines are seen, so a partial line
    at the end (being written) is left for a follower, and a multi-byte
    character cut by a block boundary is never decoded."""
    block, pos, data = 1 << 16, size, b""
    while pos > 0 and data.count(b"\n") <= n:
        step = min(block, pos)
        pos -= step
        fh.seek(pos)
        data = fh.read(step) + data
        block = min(block * 2, 1 << 24)
    end = data.rfind(b"\n") + 1
    start = end - 1
    for _ in range(n):
        start = data.rfind(b"\n", 0, start)
        if start < 0:
            break
    return data[start + 1:end] if n else b"", pos + end


def read_tail(path: str, n: int, parse: "Parse", last: "Last") -> "tuple[list[Any], list[int]]":
    """Return ``(entries, cursor)``: the last ``n`` complete entries of ``path``
    and its rotated files (oldest first), read from the end (``last``, a
    :data:`Last`: a 1M-line log costs what its last lines cost), and the cursor
    of :func:`read_rotated` just after them, to follow from.  Rotated files are
    read newest first until ``n`` entries are found; a compressed one is read whole."""
    entries: list[Any] = []
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            entries, end = _tail_of(fh, st.st_size, n, parse, last)
            cursor = [st.st_ino, end]
    except FileNotFoundError:
        cursor = [0, 0]
    for old in rotated(path)[::-1]:
        want = n - len(entries)
        if want <= 0:
            break
        try:
            if old.endswith(".gz"):
                got, _ = parse(_read(old))
            else:
                with open(old, "rb") as fh:
                    got, _ = _tail_of(fh, os.fstat(fh.fileno()).st_size, want, parse, last)
        except OSError:
            continue  # rotated away meanwhile
        entries[:0] = got[-want:]
    return entries, cursor


def _tail_of(fh: "Any", size: int, n: int, parse: "Parse", last: "Last") -> "tuple[list[Any], int]":
    """The last ``n`` entries of the open file ``fh`` and the offset after them."""
    found = last(fh, size, n)
    if found is None:
        fh.seek(0)
        got, used = parse(fh.read())
        return got[-n:] if n else [], used
    data, end = found
    got, _ = parse(data)
    return got, end
