"""The ``local`` log driver's writer (stdlib only: it runs in the container's
shim, imported by bare name; see ``dockyard.hookspecs.logging``), and the
format both halves share.

Moby frames protobuf ``LogEntry`` messages; Dockyard keeps the idea (a size
before and after each entry, so a reader can walk the file backwards for
``--tail``) with a framing of its own, no protobuf::

    u32 size | u8 stream (1 stdout, 2 stderr) | u8 flags (1: partial) |
    u64 time (ns since the epoch) | line bytes | u32 size

every integer big-endian, ``size`` counting the stream byte to the end of the
line.  Files: ``<container dir>/local-logs/container.log`` and its rotated
``container.log.N.gz`` (:mod:`logfile`).
"""

import struct

TYPE_CHECKING = False  # annotations only
if TYPE_CHECKING or __package__:
    from dockyard.driverkit.shim.logfile import RotatingFile
else:  # in a shim: the kit's directory is on sys.path
    from logfile import RotatingFile
if TYPE_CHECKING:
    from typing import Any

HEAD = struct.Struct(">IBBQ")
TAIL = struct.Struct(">I")
STREAMS = {"stdout": 1, "stderr": 2}
NAMES = {1: "stdout", 2: "stderr"}


def frame(stream: str, data: bytes, ns: int, partial: bool) -> bytes:
    size = HEAD.size - 4 + len(data)
    return HEAD.pack(size, STREAMS.get(stream, 1), 1 if partial else 0, ns) + data + TAIL.pack(size)


def unframe(data: bytes) -> "tuple[list[tuple[str, bytes, int, bool]], int]":
    """The complete entries at the start of ``data`` and the bytes they take;
    a frame whose sizes disagree ends the read (a torn write)."""
    out, pos = [], 0
    while pos + HEAD.size + TAIL.size <= len(data):
        size, stream, flags, ns = HEAD.unpack_from(data, pos)
        end = pos + 4 + size
        if size < HEAD.size - 4 or end + TAIL.size > len(data):
            break
        if TAIL.unpack_from(data, end)[0] != size:
            break
        out.append((NAMES.get(stream, "stdout"), data[pos + HEAD.size:end], ns, bool(flags & 1)))
        pos = end + TAIL.size
    return out, pos


def last_frames(fh: "Any", size: int, n: int) -> "tuple[bytes, int] | None":
    """``logfile.Last`` of the format: the last ``n`` frames of the open file
    ``fh`` found through their trailing sizes (``docker logs --tail``);
    ``None`` if a size disagrees (a torn write at the end: the file is then
    parsed from its start, which stops at the torn frame)."""
    start, count = size, 0
    while count < n and start > 0:
        if start < HEAD.size + TAIL.size:
            return None
        fh.seek(start - TAIL.size)
        (length,) = TAIL.unpack(fh.read(TAIL.size))
        begin = start - TAIL.size - length - 4
        if length < HEAD.size - 4 or begin < 0:
            return None
        fh.seek(begin)
        if TAIL.unpack(fh.read(4))[0] != length:
            return None
        start, count = begin, count + 1
    fh.seek(start)
    return fh.read(size - start), size


class LocalLog:
    def __init__(self, options: "dict[str, Any]") -> None:
        self.file = RotatingFile(options["path"], options.get("max_size", -1), options.get("max_file", 1),
                                 options.get("compress", False), 0o600)

    def write(self, entries: "list[tuple[str, bytes, int, bool]]") -> None:
        self.file.write_records([frame(*e) for e in entries])

    def close(self) -> None:
        self.file.close()


def open_log(options: "dict[str, Any]", container: "dict[str, Any]") -> LocalLog:
    return LocalLog(options)
