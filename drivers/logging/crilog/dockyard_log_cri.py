"""The ``cri`` log driver's writer (stdlib only: it runs in the container's
shim, imported by bare name; see ``dockyard.hookspecs.logging``), and the
format both halves share: the kubelet's CRI log format, one line per entry::

    <RFC 3339 time, nanoseconds> <stdout|stderr> <F|P> <text>\\n

``F`` ends a line of the container's output (its newline is the line's own);
``P`` is a part of a longer line (or a line cut short), continued by the next
entries of the same stream up to an ``F``.  The kubelet (``crictl logs``,
``kubectl logs``) reads the file directly and rotates it: it renames the file,
then asks the runtime to reopen it (``ReopenContainerLog``), which creates the
new one.  The writer follows such a rename by itself: before each write it
compares the file at ``path`` with the one it holds, and opens the new one when
they differ (Python's ``WatchedFileHandler`` does the same), so a reopen needs
no message to the shim.
"""

import os
import time

MODE = 0o640  # the kubelet's log files: the node's log readers (group) may read them
STREAM_NAMES = ("stdout", "stderr")


def stamp(ns: int) -> str:
    """RFC 3339 in UTC with nine digits of nanoseconds (Go parses it as RFC3339Nano)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + ".%09dZ" % (ns % 10**9)


def line(stream: str, data: bytes, ns: int, partial: bool) -> bytes:
    """One entry in the CRI format; ``data`` is a whole line with its newline
    (tag ``F``) or a part of one (``P``)."""
    if not partial and data.endswith(b"\n"):
        data, tag = data[:-1], b"F"
    else:
        tag = b"P"
    return b"%s %s %s %s\n" % (stamp(ns).encode(), stream.encode(), tag, data)


def open_file(path: str) -> int:
    """``path`` for appending, created ``0640`` if missing (never truncated);
    its directory must exist."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, MODE)
    except FileExistsError:
        return os.open(path, flags)
    os.fchmod(fd, MODE)  # whatever the umask
    return fd


def parse(data: bytes) -> "tuple[list[tuple[str, str, bool, bytes]], int]":
    """The complete lines at the start of ``data``: ``(time, stream, partial,
    text)`` each (``text`` without the line's newline), and the bytes they took.
    A line that is not in the format is skipped."""
    end = data.rfind(b"\n")
    if end < 0:
        return [], 0
    out = []
    for raw in data[:end].split(b"\n"):
        parts = raw.split(b" ", 3)
        if len(parts) < 3 or parts[1].decode("ascii", "replace") not in STREAM_NAMES or parts[2] not in (b"F", b"P"):
            continue
        out.append((parts[0].decode("ascii", "replace"), parts[1].decode(), parts[2] == b"P",
                    parts[3] if len(parts) > 3 else b""))
    return out, end + 1


class CriLog:
    """The file at ``path``, reopened when it was renamed or removed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = open_file(path)
        self.ino = os.fstat(self.fd).st_ino

    def _follow(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except OSError:
            return
        if st is not None and st.st_ino == self.ino:
            return
        try:  # renamed (rotated) or removed: write to a new file at the path
            fd = open_file(self.path)
        except OSError:
            return  # its directory is gone: keep the old file rather than stop
        os.close(self.fd)
        self.fd, self.ino = fd, os.fstat(fd).st_ino

    def write(self, entries: "list[tuple[str, bytes, int, bool]]") -> None:
        self._follow()
        data = b"".join(line(*e) for e in entries)
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:
            pass  # a full disk must not block the container: drop the output

    def close(self) -> None:
        os.close(self.fd)


def open_log(options: "dict[str, object]", container: "dict[str, object]") -> CriLog:
    return CriLog(str(options["path"]))
