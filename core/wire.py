"""The client's wire level: just enough HTTP/1.1 over a plain socket, and the streams.

``dockyard.client`` builds on this; the CLI never imports it directly.  It stays
on the standard library's cheapest modules (no ``http.client``, which drags in
the ``email`` package, nor ``urllib.parse``): the CLI pays every import at each
start.

A unix socket is made with ``_socket`` itself: ``socket`` (``selectors`` and its enum
conversions of every constant) costs more at start-up than all the rest of this
module; :func:`connect` imports it only for a ``tcp://`` host.

One :class:`Connection` carries one request (we send ``Connection: close``), so
a long-lived answer (``logs -f``, a hijacked ``attach``, a pending ``wait``) never
holds up requests made meanwhile on other connections.  A response body is read
by its framing: ``Content-Length``, chunked, or until the daemon closes.
"""

import _socket
import codecs
import os
import stat

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (the CLI's start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any, Protocol

    class Readable(Protocol):
        """What an upload is read with: a binary file object, or the like."""

        def read(self, n: int = ..., /) -> bytes: ...

    #: ``("unix", path)`` or ``("tcp", (host, port))``: where the daemon listens
    Address = str | tuple[str, int]

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
_CHUNK = 65536          # reads
_UPLOAD_BLOCK = 262144  # reads from an upload's file object
_HEAD_LIMIT = 65536     # the most response head we accept


class ClientError(Exception):
    """Base of every error the client raises on purpose."""


class ProtocolError(ClientError):
    """The daemon's answer was malformed or cut short."""


# --- URLs ---------------------------------------------------------------------------

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: object, safe: str = "") -> str:
    """Percent-encode ``text`` (UTF-8) like ``urllib.parse.quote(text, safe)``."""
    text = str(text)
    ok = _UNRESERVED.union(safe.encode("ascii")) if safe else _UNRESERVED
    data = text.encode("utf-8")
    if all(b in ok for b in data):
        return text
    return "".join(chr(b) if b in ok else f"%{b:02X}" for b in data)


def quote_plus(text: object) -> str:
    """Like ``urllib.parse.quote_plus``: spaces become ``+``, ``/`` is encoded too."""
    return quote(text, " ").replace(" ", "+")


def urlencode(params: "Mapping[str, Any]") -> str:
    """``urllib.parse.urlencode(params, doseq=True)`` for a dict of str/number/list values."""
    pairs: list[str] = []
    for key, value in params.items():
        for item in (value if isinstance(value, (list, tuple)) else (value,)):
            pairs.append(f"{quote_plus(key)}={quote_plus(item)}")
    return "&".join(pairs)


# --- readers --------------------------------------------------------------------------

def _read_exact(read: "Callable[[int], bytes]", n: int) -> bytes:
    """Read exactly ``n`` bytes with ``read`` (fewer only at end of stream)."""
    parts, got = [], 0
    while got < n:
        data = read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class _Reader:
    """What every reader offers on top of its ``read_some``."""

    def read_some(self, n: int = _CHUNK) -> bytes:
        raise NotImplementedError

    def read_exact(self, n: int) -> bytes:
        return _read_exact(self.read_some, n)

    def read_all(self) -> bytes:
        parts = []
        while data := self.read_some():
            parts.append(data)
        return b"".join(parts)


class _SocketReader(_Reader):
    """Buffered reading from a raw socket, starting with bytes already received."""

    def __init__(self, sock: _socket.socket, initial: bytes = b"") -> None:
        self._sock = sock
        self._buf = bytearray(initial)

    def read_some(self, n: int = _CHUNK) -> bytes:
        if self._buf:
            data = bytes(self._buf[:n])
            del self._buf[:n]
            return data
        return self._sock.recv(n)

    def read_until(self, marker: bytes, limit: int = _HEAD_LIMIT) -> bytes:
        start = 0
        while (idx := self._buf.find(marker, start)) < 0:
            if len(self._buf) > limit:
                raise ProtocolError("response headers too long")
            start = max(len(self._buf) - len(marker) + 1, 0)
            data = self._sock.recv(_CHUNK)
            if not data:
                if not self._buf:
                    raise ProtocolError("the daemon closed the connection without answering")
                raise ProtocolError("connection closed before the response headers ended")
            self._buf += data
        idx += len(marker)
        head = bytes(self._buf[:idx])
        del self._buf[:idx]
        return head


class _LengthReader(_Reader):
    """A body of ``Content-Length`` bytes."""

    def __init__(self, reader: _Reader, length: int) -> None:
        self._reader = reader
        self._left = length

    def read_some(self, n: int = _CHUNK) -> bytes:
        if self._left <= 0:
            return b""
        data = self._reader.read_some(min(n, self._left))
        if not data:
            raise ProtocolError(f"answer cut short ({self._left} bytes missing)")
        self._left -= len(data)
        return data


class _ChunkedReader(_Reader):
    """Decode HTTP/1.1 chunked transfer-encoding from a _SocketReader."""

    def __init__(self, reader: _SocketReader) -> None:
        self._reader = reader
        self._left = 0
        self._done = False

    def read_some(self, n: int = _CHUNK) -> bytes:
        if self._done:
            return b""
        if self._left == 0:
            line = self._reader.read_until(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                self._done = True
                return b""
            self._left = size
        data = self._reader.read_some(min(n, self._left))
        if not data:
            raise ProtocolError("answer cut short: the connection closed inside a chunk")
        self._left -= len(data)
        if self._left == 0 and self._reader.read_exact(2) != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")
        return data


class _Empty(_Reader):
    def read_some(self, n: int = _CHUNK) -> bytes:
        return b""


# --- HTTP -----------------------------------------------------------------------------

def parse_host(host: str) -> "tuple[str, Address]":
    """``unix:///p`` or ``/p`` → ("unix", "/p"); ``tcp://h:p``, ``http://h:p``, ``h:p`` → ("tcp", (h, p))."""
    if host.startswith("unix://"):
        path = host[len("unix://"):]
        if not path:
            raise ValueError(f"invalid host {host!r}: no socket path")
        return "unix", path
    if host.startswith("/"):
        return "unix", host
    for scheme in ("tcp://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme):]
            break
    else:
        if "://" in host:
            raise ValueError(f"invalid host {host!r}: use unix://PATH or tcp://HOST:PORT")
    hostport = host.split("/", 1)[0]
    name, sep, port = hostport.rpartition(":")
    if not sep:
        name, port = hostport, "2375"
    if not name or not port.isdigit():
        raise ValueError(f"invalid host {host!r}: expected HOST:PORT")
    return "tcp", (name.strip("[]"), int(port))


def host_header(kind: str, address: "Address") -> str:
    """The ``Host`` header for the daemon at ``(kind, address)``."""
    if kind == "unix":
        return "docker"
    name, port = address  # type: ignore[str-unpack]  # tcp: (host, port)
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def connect(kind: str, address: "Address", timeout: float | None = None) -> _socket.socket:
    """A connected socket to ``("unix", path)`` or ``("tcp", (host, port))``; OSError if not."""
    if kind != "unix":
        import socket  # name resolution (create_connection): tcp only

        tcp = socket.create_connection(address, timeout=timeout)  # type: ignore[arg-type]  # tcp: (host, port)
        try:
            tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return tcp
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def regular_file_size(fobj: "Any") -> int | None:
    """What is left to read of ``fobj`` if it is a regular file, else None."""
    try:
        st = os.fstat(fobj.fileno())
        pos = fobj.tell()
    except (AttributeError, OSError, ValueError):
        return None
    return max(st.st_size - pos, 0) if stat.S_ISREG(st.st_mode) else None


def parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    """``b"HTTP/1.1 200 OK\\r\\nA: b\\r\\n\\r\\n"`` → ``(200, "OK", {"a": "b"})``."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"malformed status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


class Response(_Reader):
    """A response head (``status``, ``reason``, lower-cased ``headers``) and its body."""

    def __init__(self, conn: "Connection", status: int, reason: str, headers: dict[str, str], body: _Reader) -> None:
        self.conn = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        self._body = body

    def read_some(self, n: int = _CHUNK) -> bytes:
        return self._body.read_some(n)

    def read(self) -> bytes:
        return self.read_all()

    def close(self) -> None:
        self.conn.close()


class Connection:
    """One socket, one request: ``send()`` it, later ``response()`` to read the answer."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.method: str | None = None
        self.send_error: OSError | None = None  # the daemon hung up mid-upload: its answer will say why

    def send(self, method: str, target: str, headers: "Mapping[str, object]",
             body: "str | bytes | bytearray | memoryview | Readable | None" = None) -> None:
        """Send the request; ``body`` is None, bytes, or a binary file object.

        A file object goes with a ``Content-Length`` when it is a regular file (or
        ``headers`` give one), chunked otherwise.  A broken pipe is kept in
        ``send_error`` (not raised): the daemon may have refused the upload early,
        and answered why.
        """
        self.method = method
        if isinstance(body, str):
            body = body.encode("utf-8")
        upload = None  # a file object to stream
        if body is not None and not isinstance(body, (bytes, bytearray, memoryview)):
            upload, body = body, None
        stream = upload is not None
        framing = " ".join(str(v) for k, v in headers.items()
                           if k.lower() in ("content-length", "transfer-encoding"))
        extra: list[tuple[str, str]] = []
        chunked, left = False, None
        if framing:  # the caller's own
            chunked = stream and "chunked" in framing.lower()
        elif upload is not None:
            left = regular_file_size(upload)
            chunked = left is None
            extra.append(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(left)))
        elif body is not None or method in ("POST", "PUT", "PATCH") and "Upgrade" not in headers:
            extra.append(("Content-Length", str(len(body or b""))))  # (a hijack has no body framing)
        if not any(k.lower() == "connection" for k in headers):
            extra.append(("Connection", "close"))
        lines = [f"{method} {target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in list(headers.items()) + extra]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if upload is None:
                self.sock.sendall(head + bytes(body or b""))
                return
            self.sock.sendall(head)
            if left is None and not chunked:  # the caller's own Content-Length
                left = next((int(str(v)) for k, v in headers.items() if k.lower() == "content-length"), None)
            while left != 0:
                data = upload.read(_UPLOAD_BLOCK if left is None else min(left, _UPLOAD_BLOCK))
                if not data:
                    break
                if left is not None:
                    left -= len(data)
                self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if left:  # the daemon would wait for the rest for ever
                raise ProtocolError(f"Too little data for declared Content-Length ({left} bytes missing)")
            if chunked:
                self.sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError) as exc:
            self.send_error = exc

    def response(self) -> Response:
        """Read the answer's head; the body is read from the returned Response."""
        reader = _SocketReader(self.sock)
        try:
            while True:
                status, reason, headers = parse_head(reader.read_until(b"\r\n\r\n"))
                if status == 101 or not 100 <= status < 200:
                    break  # skip interim answers (100 Continue)
        except (OSError, ProtocolError) as exc:
            raise ProtocolError(f"no valid answer from the daemon: {self.send_error or exc}") from exc
        body: _Reader
        if status == 101:
            body = reader  # hijacked: the raw stream follows
        elif self.method == "HEAD" or status in (204, 304):
            body = _Empty()
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = _ChunkedReader(reader)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"].split(",")[0])
            except ValueError:
                raise ProtocolError(f"bad Content-Length {headers['content-length']!r}") from None
            body = _LengthReader(reader, length)
        else:
            body = reader  # until the daemon closes
        return Response(self, status, reason, headers, body)

    def close(self) -> None:
        self.sock.close()


# --- stream formats -------------------------------------------------------------------

def demux(read_exact: "Callable[[int], bytes]", read_some: "Callable[[], bytes]",
          tty: bool) -> "Iterator[tuple[int, bytes]]":
    """Yield ``(stream, bytes)`` frames from an attach/logs stream until it ends.

    With ``tty`` the stream is raw and everything is reported as stdout.  Otherwise
    each frame has Docker's 8-byte header: byte 0 the stream (0 stdin, 1 stdout,
    2 stderr, 3 a daemon error message), bytes 4-7 the payload length, big-endian.
    """
    if tty:
        while True:
            data = read_some()
            if not data:
                return
            yield STDOUT, data
    while True:
        header = read_exact(8)
        if not header:
            return
        if len(header) < 8:
            raise ProtocolError(f"stream ended inside a frame header ({len(header)} of 8 bytes)")
        kind, size = header[0], int.from_bytes(header[4:8], "big")
        if kind > SYSTEMERR:
            raise ProtocolError(f"unknown stream id {kind} in frame header {header.hex()}")
        data = read_exact(size) if size else b""
        if len(data) < size:
            raise ProtocolError(f"stream ended inside a frame ({len(data)} of {size} bytes)")
        if kind == SYSTEMERR:
            raise ClientError(data.decode("utf-8", "replace"))
        yield kind, data


# --- JSON ---------------------------------------------------------------------------
# ``json`` is not imported to read an answer: its decoder imports ``re``, a quarter of
# ``dockyard ps``'s start-up.  CPython's own scanner (``_json``, which ``json.loads``
# runs) reads it, set up as ``json.loads`` sets it up.

_JSON_SPACE = " \t\n\r"
_scan_once: "Callable[[str, int], tuple[Any, int]] | None" = None


class _Defaults:
    """The decoder settings ``_json.make_scanner`` reads: ``json.loads``' defaults."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


def _scanner() -> "Callable[[str, int], tuple[Any, int]]":
    """``scan(text, index) -> (value, end)``; StopIteration when no value starts there."""
    global _scan_once
    if _scan_once is None:
        try:
            from _json import make_scanner
            # it reads a JSONDecoder's settings off any object (typeshed wants a decoder)
            _scan_once = make_scanner(_Defaults)  # type: ignore[arg-type]
        except ImportError:  # an interpreter without the accelerator
            import json.scanner
            _scan_once = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
    return _scan_once


def loads(text: str) -> "Any":
    """``json.loads(text)``: the same value, or the same error (``json.JSONDecodeError``)."""
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        value, end = _scanner()(text, start)
    except StopIteration:
        pass
    else:
        if not text[end:].strip(_JSON_SPACE):
            return value
    import json  # not JSON: json says why, in its words
    return json.loads(text)


def json_objects(read_some: "Callable[[], bytes]") -> "Iterator[Any]":
    """Yield each JSON value of a stream of concatenated (usually newline-separated) JSON."""
    scan = _scanner()
    # codecs is loaded by the interpreter itself: this costs no import.
    text_decoder = codecs.getincrementaldecoder("utf-8")("replace")
    buf = ""
    while True:
        data = read_some()
        buf += text_decoder.decode(data, final=not data)
        while True:
            buf = buf.lstrip()
            if not buf:
                break
            try:
                obj, end = scan(buf, 0)
            except (StopIteration, ValueError):  # not yet whole (or never: said at the end)
                break
            buf = buf[end:]
            yield obj
        if not data:
            if buf.strip():
                raise ProtocolError(f"JSON stream ended mid-message: {buf[:80]!r}")
            return
