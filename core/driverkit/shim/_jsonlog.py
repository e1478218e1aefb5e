"""Docker's json-file log, as the shim writes a container's output into it
(stdlib only, importable standalone from the shim kit's directory, like
:mod:`supervisor`).

One JSON object per line of output: ``{"log": text, "stream": "stdout" or
"stderr", "time": RFC 3339 with nanoseconds}``, the format ``docker logs`` and
the daemon's json-file reader expect.
"""

import os
import time

import _json  # not json: see _minijson.py

MAX_LINE = 16 * 1024  # like Docker, longer lines are split into several entries


class LogWriter:
    """Docker json-file writer on the open file ``fd`` (``O_APPEND``).

    Output is cut into entries at newlines; a line longer than
    :data:`MAX_LINE` is split, and a partial line waits in a buffer until its
    newline comes, the stream ends (``final``) or :meth:`flush` is called."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.bufs: dict[str, bytes] = {}

    def feed(self, stream: str, data: bytes, final: bool = False) -> None:
        buf = self.bufs.get(stream, b"") + data
        entries = []
        while True:
            nl = buf.find(b"\n", 0, MAX_LINE)
            if nl < 0 and len(buf) < MAX_LINE and not (final and buf):
                break
            cut = nl + 1 if nl >= 0 else min(len(buf), MAX_LINE)
            entries.append(self.entry(stream, buf[:cut]))
            buf = buf[cut:]
        self.bufs[stream] = buf
        self._write(entries)

    def pending(self) -> bool:
        return any(self.bufs.values())

    def flush(self) -> None:
        """Log the partial lines (a prompt, a progress bar) as they are."""
        entries = [self.entry(s, b) for s, b in self.bufs.items() if b]
        self.bufs = {}
        self._write(entries)

    def _write(self, entries: list[bytes]) -> None:
        if entries:
            try:
                os.write(self.fd, b"".join(entries))
            except OSError:
                pass  # a full disk must not block the container: drop the output

    @staticmethod
    def entry(stream: str, raw: bytes) -> bytes:
        ns = time.time_ns()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + ".%09dZ" % (ns % 10**9)
        log = _json.encode_basestring(raw.decode("utf-8", "replace"))
        return f'{{"log":{log},"stream":"{stream}","time":"{stamp}"}}\n'.encode()
