"""SPDY/3.1, the server side, as far as Kubernetes' streaming clients use it.

client-go (``k8s.io/apimachinery/pkg/util/httpstream/spdy`` over moby's
``spdystream``) upgrades an HTTP request to SPDY/3.1 and then opens one stream
per channel (stdin, stdout, stderr, error, resize; a data and an error stream per
forwarded connection), each with a ``SYN_STREAM`` whose headers name it.  The
server answers every stream with a ``SYN_REPLY`` at once, and from then on both
sides send ``DATA`` frames; a ``FIN`` flag ends one direction, ``RST_STREAM``
both, ``GOAWAY`` the connection.  Like spdystream we keep no flow control
(``WINDOW_UPDATE`` and ``SETTINGS`` are read and ignored), answer ``PING``, and
never open streams ourselves.

Header blocks are zlib streams, one per direction for the connection's life,
primed with SPDY/3's dictionary (:data:`DICTIONARY`) and sync-flushed per frame.

    frame(...)/parse     the wire format (:func:`data_frame`, :func:`control_frame`, :class:`FrameReader`)
    HeaderCodec          the header blocks
    Connection, Stream   a served connection: a reader thread, streams with blocking reads
"""

from __future__ import annotations

import logging
import queue
import socket
import struct
import threading
import zlib
from typing import Callable, Protocol

log = logging.getLogger("dockyard.cri.streaming")

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL = 1, 2, 3, 5
#: the largest DATA payload we send (spdystream reads any length up to 2**24 - 1)
MAX_DATA = 32 << 10
#: DATA chunks a stream holds for a reader that does not keep up (then the connection waits)
STREAM_BUFFER = 64


def _dictionary() -> bytes:
    """SPDY/3's header compression dictionary (draft-mbelshe-httpbis-spdy-00,
    2.6.10.1): length-prefixed header names and values, then common text."""
    words = ("options head post put delete trace accept accept-charset accept-encoding accept-language "
             "accept-ranges age allow authorization cache-control connection content-base content-encoding "
             "content-language content-length content-location content-md5 content-range content-type date "
             "etag expect expires from host if-match if-modified-since if-none-match if-range "
             "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
             "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
             "user-agent vary via warning www-authenticate method get status").split()
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
    tail = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
            "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
            "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + tail.encode()


DICTIONARY = _dictionary()


class ByteReader(Protocol):
    """What frames are read from: the connection's buffered reader (it may hold
    bytes that came with the HTTP request)."""

    def read(self, size: int = -1, /) -> bytes: ...


class ProtocolError(Exception):
    """The peer broke SPDY's framing: the connection ends."""


# --- frames ---------------------------------------------------------------------------
def control_frame(kind: int, payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, data: bytes, flags: int = 0) -> bytes:
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


class HeaderCodec:
    """One direction's header blocks: ``{name: [values]}`` <-> a zlib block.
    Names are lower case; several values of one name travel NUL-separated."""

    def __init__(self) -> None:
        self._out = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                     DICTIONARY)
        self._in = zlib.decompressobj(zdict=DICTIONARY)

    def encode(self, headers: dict[str, list[str]]) -> bytes:
        raw = [struct.pack(">I", len(headers))]
        for name, values in headers.items():
            n, v = name.lower().encode(), "\0".join(values).encode()
            raw.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
        block = b"".join(raw)
        return self._out.compress(block) + self._out.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, block: bytes) -> dict[str, list[str]]:
        try:
            raw = self._in.decompress(block)
        except zlib.error as exc:
            raise ProtocolError(f"bad header block: {exc}") from None
        try:
            (count,), pos = struct.unpack_from(">I", raw), 4
            headers: dict[str, list[str]] = {}
            for _ in range(count):
                (n,) = struct.unpack_from(">I", raw, pos)
                name = raw[pos + 4:pos + 4 + n].decode().lower()
                pos += 4 + n
                (n,) = struct.unpack_from(">I", raw, pos)
                value = raw[pos + 4:pos + 4 + n].decode()
                pos += 4 + n
                if pos > len(raw):
                    raise ProtocolError("truncated header block")
                headers.setdefault(name, []).extend(value.split("\0"))
        except (struct.error, UnicodeDecodeError) as exc:
            raise ProtocolError(f"bad header block: {exc}") from None
        return headers


class FrameReader:
    """Frames from a byte stream: ``("data", stream_id, flags, payload)`` or
    ``("control", kind, flags, payload)``; None at the end of the stream."""

    def __init__(self, rfile: ByteReader) -> None:
        self._r = rfile

    def _exactly(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = self._r.read(n - len(buf))
            if not chunk:
                if buf:
                    raise ProtocolError("connection ended inside a frame")
                return None
            buf += chunk
        return buf

    def read(self) -> tuple[str, int, int, bytes] | None:
        head = self._exactly(8)
        if head is None:
            return None
        word, length = struct.unpack(">II", head)
        flags, length = length >> 24, length & 0xFFFFFF
        payload = self._exactly(length) if length else b""
        if payload is None:
            raise ProtocolError("connection ended inside a frame")
        if word & 0x80000000:
            version, kind = (word >> 16) & 0x7FFF, word & 0xFFFF
            if version != VERSION:
                raise ProtocolError(f"SPDY version {version} is not 3")
            return "control", kind, flags, payload
        return "data", word & 0x7FFFFFFF, flags, payload


# --- a served connection --------------------------------------------------------------
class Stream:
    """One stream the client opened: ``headers`` (first values), blocking
    :meth:`read` (``b""`` once the client finished or reset it), :meth:`write`,
    :meth:`close` (our FIN) and :meth:`reset`."""

    def __init__(self, conn: Connection, stream_id: int, headers: dict[str, list[str]]) -> None:
        self.conn, self.id = conn, stream_id
        self.headers = {k: v[0] for k, v in headers.items() if v}
        self._in: queue.Queue = queue.Queue(STREAM_BUFFER)
        self._pending = b""
        self._eof = False
        self.finished = False  # our side: FIN sent or reset
        self.remote_done = threading.Event()

    def read(self, size: int = -1) -> bytes:
        if not self._pending:
            if self._eof:
                return b""
            chunk = self._in.get()
            if chunk is None:
                self._eof = True
                return b""
            self._pending = chunk
        if size < 0 or size >= len(self._pending):
            out, self._pending = self._pending, b""
        else:
            out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def write(self, data: bytes) -> None:
        if self.finished:
            raise BrokenPipeError(f"stream {self.id} is closed")
        for i in range(0, len(data), MAX_DATA):
            self.conn.send(data_frame(self.id, data[i:i + MAX_DATA]))

    def close(self) -> None:
        if not self.finished:
            self.finished = True
            try:
                self.conn.send(data_frame(self.id, b"", FLAG_FIN))
            except OSError:
                pass

    def reset(self, status: int = CANCEL) -> None:
        if not self.finished:
            self.finished = True
            try:
                self.conn.send(control_frame(RST_STREAM, struct.pack(">II", self.id, status)))
            except OSError:
                pass
        self._remote_end()

    # called by the connection's reader
    def _deliver(self, data: bytes) -> None:
        if data and not self.remote_done.is_set():
            while True:
                try:
                    self._in.put(data, timeout=0.5)
                    return
                except queue.Full:
                    if self.conn.ending.is_set() or self.remote_done.is_set():
                        return  # nobody will read it

    def _remote_end(self) -> None:
        if not self.remote_done.is_set():
            self.remote_done.set()
            try:
                self._in.put_nowait(None)
            except queue.Full:  # the reader is behind: make room for the end
                try:
                    self._in.get_nowait()
                except queue.Empty:
                    pass
                self._in.put_nowait(None)


class Connection:
    """The server side of one upgraded connection (``sock``, read through
    ``rfile``, which may hold bytes read past the HTTP request).

    :meth:`serve` reads frames in a thread of its own.  ``accept(stream)`` is
    called there for each new stream: True answers it (``SYN_REPLY``), False
    refuses it (``RST_STREAM``); then ``opened(stream)``, from when data may
    go out on it (spdystream drops data that comes before the reply).  Neither
    may block."""

    def __init__(self, sock: socket.socket, rfile: ByteReader, accept: Callable[[Stream], bool],
                 opened: Callable[[Stream], None] | None = None) -> None:
        self.sock, self._reader = sock, FrameReader(rfile)
        self._accept, self._opened = accept, opened
        self._send_lock = threading.Lock()
        self._headers_out = HeaderCodec()
        self._headers_in = HeaderCodec()
        self.streams: dict[int, Stream] = {}
        self._last_id = 0
        self.closed = threading.Event()  # the reader ended
        self.ending = threading.Event()  # we are closing: nothing more is read
        self._thread: threading.Thread | None = None

    def serve(self) -> None:
        self._thread = threading.Thread(target=self._read_loop, name="cri-spdy-reader", daemon=True)
        self._thread.start()

    def send(self, frame: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(frame)

    def _read_loop(self) -> None:
        try:
            while True:
                frame = self._reader.read()
                if frame is None or not self._handle(*frame):
                    break
        except ProtocolError as exc:
            log.debug("SPDY connection ended: %s", exc)
        except OSError:
            pass
        except Exception:  # a bug here must end this connection, not leave its streams waiting
            log.exception("SPDY reader failed")
        finally:
            self.closed.set()
            for stream in list(self.streams.values()):
                stream._remote_end()

    def _handle(self, kind: str, code: int, flags: int, payload: bytes) -> bool:
        """One frame; False ends the connection."""
        if kind == "data":
            stream = self.streams.get(code)
            if stream is not None:
                stream._deliver(payload)
                if flags & FLAG_FIN:
                    stream._remote_end()
            return True
        if code == SYN_STREAM:
            self._syn_stream(flags, payload)
        elif code == RST_STREAM and len(payload) >= 8:
            stream = self.streams.get(struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF)
            if stream is not None:
                stream.finished = True
                stream._remote_end()
        elif code == PING and len(payload) == 4:
            self.send(control_frame(PING, payload))  # the client's ping (odd id): echoed
        elif code == GOAWAY:
            return False
        elif code == HEADERS and len(payload) >= 4:
            self._headers_in.decode(payload[4:])  # keeps the zlib stream in step; nothing uses them
        return True  # SETTINGS, WINDOW_UPDATE: no flow control here, as in spdystream

    def _syn_stream(self, flags: int, payload: bytes) -> None:
        if len(payload) < 10:
            raise ProtocolError("short SYN_STREAM")
        stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
        headers = self._headers_in.decode(payload[10:])
        if stream_id % 2 == 0 or stream_id <= self._last_id:
            self.send(control_frame(RST_STREAM, struct.pack(">II", stream_id, PROTOCOL_ERROR)))
            return
        self._last_id = stream_id
        stream = Stream(self, stream_id, headers)
        if flags & FLAG_UNIDIRECTIONAL:
            stream.finished = True
        if flags & FLAG_FIN:
            stream._remote_end()
        self.streams[stream_id] = stream
        try:
            accepted = self._accept(stream)
        except Exception:
            log.exception("accepting SPDY stream %d failed", stream_id)
            accepted = False
        if not accepted:
            stream.reset(REFUSED_STREAM)
            self.streams.pop(stream_id, None)
            return
        with self._send_lock:  # the header codec's state and the frame order go together
            block = self._headers_out.encode({})
            self.sock.sendall(control_frame(SYN_REPLY, struct.pack(">I", stream_id) + block))
        if self._opened is not None:
            self._opened(stream)

    def forget(self, stream: Stream) -> None:
        self.streams.pop(stream.id, None)

    def close(self, grace: float = 2.0) -> None:
        """``GOAWAY``, then the socket's end once the client closed its side (or
        ``grace`` seconds passed): spdystream reads what we sent before it stops."""
        self.ending.set()
        try:
            self.send(control_frame(GOAWAY, struct.pack(">II", self._last_id, 0)))
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.closed.wait(grace)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(grace)

