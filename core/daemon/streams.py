"""Container output: reading ``json-file`` logs and Docker's stream framing.

With ``Tty`` false, Docker multiplexes stdout and stderr on one connection: each
frame is an 8-byte header (stream number, 3 zero bytes, big-endian length) and
the payload.  With ``Tty`` true the stream is raw.
"""

import struct
from datetime import datetime

from ..jsonlog import read_entries  # noqa: F401 (the API reads logs through this module)

STREAMS = {"stdin": 0, "stdout": 1, "stderr": 2}
HEADER = struct.Struct(">BxxxL")


def frame(stream, data, tty=False):
    if tty:
        return data
    return HEADER.pack(STREAMS.get(stream, 1), len(data)) + data


def log_size(path):
    try:
        with open(path, "rb") as fh:
            return fh.seek(0, 2)
    except FileNotFoundError:
        return 0


def _ts(entry):
    try:
        return datetime.fromisoformat(entry["time"][:26].rstrip("Z") + "+00:00").timestamp()
    except (KeyError, ValueError):
        return 0.0


class LogFilter:
    """Select and render entries for ``GET /containers/{id}/logs`` and attach."""

    def __init__(self, stdout=True, stderr=True, timestamps=False, since=0.0, until=0.0, tty=False):
        self.streams = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
        self.timestamps, self.since, self.until, self.tty = timestamps, since, until, tty

    def render(self, entries):
        if not (self.since or self.until or self.timestamps):
            return self._render_plain(entries)
        out = []
        for entry in entries:
            stream = entry.get("stream", "stdout")
            if stream not in self.streams:
                continue
            if self.since or self.until:
                ts = _ts(entry)
                if (self.since and ts < self.since) or (self.until and ts > self.until):
                    continue
            data = entry.get("log", "").encode()
            if self.timestamps:
                data = entry.get("time", "").encode() + b" " + data
            out.append(frame(stream, data, self.tty))
        return b"".join(out)

    def _render_plain(self, entries):
        """:meth:`render` without times to look at (``docker logs``, attach): the
        same bytes, with the least work per entry (a million lines go through here)."""
        streams = self.streams
        if self.tty:
            return "".join([e.get("log", "") for e in entries if e.get("stream", "stdout") in streams]).encode()
        pack, number, out = HEADER.pack, STREAMS.get, []
        for entry in entries:
            stream = entry.get("stream", "stdout")
            if stream in streams:
                data = entry.get("log", "").encode()
                out += (pack(number(stream, 1), len(data)), data)
        return b"".join(out)


def tail(entries, n):
    if n is None or n < 0:
        return entries
    return entries[-n:] if n else []
