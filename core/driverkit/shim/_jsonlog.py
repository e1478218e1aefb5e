"""The shim's log writing (stdlib only, importable standalone from the shim kit's
directory, like :mod:`supervisor`): output cut into entries, written to the
container's stream file (Docker's json-file) and to its log driver's writer.

The stream file holds one JSON object per line of output: ``{"log": text,
"stream": "stdout" or "stderr", "time": RFC 3339 with nanoseconds}`` (and
``attrs`` when the driver gives some), the format ``docker attach``, the
json-file driver's reader and the builder read.  It rotates as
``state["log"]["stream"]`` says (:mod:`logfile`).

``state["log"]`` (optional; the daemon's choice, written by the exec driver) is
the log driver's writer spec (``dockyard.hookspecs.logging.Writer``): with a
``module``, the shim imports it by bare name from ``path`` and calls
``open_log(options, container)``; its ``write(entries)`` gets every entry too.
"""

import os
import sys
import time

import _json  # not json: see _minijson.py

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (start-up cost)
if TYPE_CHECKING or __package__:
    from .logfile import RotatingFile
else:  # in a shim: the kit's directory is on sys.path
    from logfile import RotatingFile
if TYPE_CHECKING:
    from typing import Any

MAX_LINE = 16 * 1024  # like Docker, longer lines are split into several entries


def stamp(ns: int) -> str:
    """RFC 3339 with nanoseconds, UTC (Docker's log timestamps)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + ".%09dZ" % (ns % 10**9)


class JsonFile:
    """The stream file: json-file entries on a :class:`logfile.RotatingFile`."""

    def __init__(self, path: str, rotation: "dict[str, Any] | None" = None,
                 attrs: "dict[str, str] | None" = None) -> None:
        self.file = RotatingFile(path, **(rotation or {}))
        self.tail = ""
        if attrs:
            items = ",".join(f"{_json.encode_basestring(k)}:{_json.encode_basestring(str(v))}"
                             for k, v in sorted(attrs.items()))
            self.tail = f',"attrs":{{{items}}}'

    def write(self, entries: "list[tuple[str, bytes, int, bool]]") -> None:
        self.file.write_records([self.entry(s, raw, ns) for s, raw, ns, _ in entries])

    def write_block(self, stream: str, block: bytes, ns: int) -> None:
        """Log ``block``, whole lines of one stream (each ending in a newline,
        at most :data:`MAX_LINE` bytes), stamped ``ns``: what :meth:`write`
        writes for their entries, made without a Python step per line (the
        shim's per-line cost: escaped at once, joined with a NUL, which the
        escaping never leaves raw, replaced by the text between two entries)."""
        escaped = "\x00".join(map(_json.encode_basestring, block.decode("utf-8", "replace").split("\n")))
        between = f'\\n","stream":"{stream}"{self.tail},"time":"{stamp(ns)}"}}\n{{"log":"'
        text = '{"log":' + escaped.replace('"\x00"', between)
        data = text[:-len('{"log":""')].encode()
        if self.file.max_size > 0 and self.file.size + len(data) >= self.file.max_size:
            self.file.write_records(data.splitlines(keepends=True))  # rotated between two entries
        else:
            self.file.write(data)

    def entry(self, stream: str, raw: bytes, ns: int) -> bytes:
        log = _json.encode_basestring(raw.decode("utf-8", "replace"))
        return f'{{"log":{log},"stream":"{stream}"{self.tail},"time":"{stamp(ns)}"}}\n'.encode()

    def close(self) -> None:
        self.file.close()


def open_driver(spec: "dict[str, Any]", container: "dict[str, Any]") -> "Any":
    """The log driver's writer of ``spec``, or ``None`` when it names no module;
    raises ``OSError``/``ValueError`` with the driver's reason."""
    name = spec.get("module")
    if not name:
        return None
    if spec.get("path") and spec["path"] not in sys.path:
        sys.path.append(spec["path"])
    try:
        module = __import__(name)
    except ImportError as exc:
        raise ValueError(f"log writer {name!r}: {exc}") from None
    return module.open_log(spec.get("options") or {}, container)


class LogWriter:
    """Cuts output into entries and hands them to ``sinks`` (objects with
    ``write(entries)``, each entry ``(stream, data, time_ns, partial)``).

    Output is cut into entries at newlines; a line longer than
    :data:`MAX_LINE` is split, and a partial line waits in a buffer until its
    newline comes, the stream ends (``final``) or :meth:`flush` is called.
    ``LogWriter(fd)`` alone writes the json-file format to the open file ``fd``
    (an exec's output)."""

    def __init__(self, fd: "int | None" = None, sinks: "list[Any] | None" = None) -> None:
        self.sinks = list(sinks or [])
        if fd is not None:
            self.sinks.insert(0, _FdSink(fd))
        self.bufs: dict[str, bytes] = {}

    def feed(self, stream: str, data: bytes, final: bool = False) -> None:
        buf = self.bufs.pop(stream, b"") + data
        ns = time.time_ns()
        end = buf.rfind(b"\n") + 1
        block = buf[:end]
        if end >= MAX_LINE and len(max(block.split(b"\n"), key=len)) >= MAX_LINE:
            block, end = b"", 0  # a line to split: entry by entry
        entries = []
        pos = end
        while True:  # what is left: long lines cut up, a partial line kept for later
            nl = buf.find(b"\n", pos, pos + MAX_LINE)
            if nl < 0 and len(buf) - pos < MAX_LINE and not (final and pos < len(buf)):
                break
            cut = nl + 1 if nl >= 0 else min(len(buf), pos + MAX_LINE)
            entries.append((stream, buf[pos:cut], ns, nl < 0))
            pos = cut
        if pos < len(buf):
            self.bufs[stream] = buf[pos:]
        if block:
            self._write_block(stream, block, ns)
        self._write(entries)

    def pending(self) -> bool:
        return any(self.bufs.values())

    def flush(self) -> None:
        """Log the partial lines (a prompt, a progress bar) as they are."""
        ns = time.time_ns()
        entries = [(s, b, ns, True) for s, b in self.bufs.items() if b]
        self.bufs = {}
        self._write(entries)

    def _write_block(self, stream: str, block: bytes, ns: int) -> None:
        """Whole lines (see :meth:`JsonFile.write_block`) to every sink: at
        once to those that take a block, as entries to the others."""
        entries = None
        for sink in self.sinks:
            try:
                if hasattr(sink, "write_block"):
                    sink.write_block(stream, block, ns)
                    continue
                if entries is None:
                    entries = [(stream, line + b"\n", ns, False) for line in block[:-1].split(b"\n")]
                sink.write(entries)
            except Exception:  # noqa: BLE001 - a broken log driver must not stop the container
                pass

    def _write(self, entries: "list[tuple[str, bytes, int, bool]]") -> None:
        if not entries:
            return
        for sink in self.sinks:
            try:
                sink.write(entries)
            except Exception:  # noqa: BLE001 - a broken log driver must not stop the container
                pass

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001
                pass

    @staticmethod
    def entry(stream: str, raw: bytes) -> bytes:
        """One json-file line of ``raw``, stamped now."""
        log = _json.encode_basestring(raw.decode("utf-8", "replace"))
        return f'{{"log":{log},"stream":"{stream}","time":"{stamp(time.time_ns())}"}}\n'.encode()


class _FdSink:
    """json-file entries on an open file (``O_APPEND``), no rotation."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, entries: "list[tuple[str, bytes, int, bool]]") -> None:
        data = b"".join(f'{{"log":{_json.encode_basestring(raw.decode("utf-8", "replace"))},'
                        f'"stream":"{s}","time":"{stamp(ns)}"}}\n'.encode() for s, raw, ns, _ in entries)
        try:
            os.write(self.fd, data)
        except OSError:
            pass  # a full disk must not block the container: drop the output

    def close(self) -> None:
        pass
