"""WebSocket (RFC 6455), the server side, with Kubernetes' channel protocols.

The other way kubelet clients stream (``kubectl`` through an API server that
proxies WebSockets, browsers, client libraries in other languages): one
WebSocket, each message a channel byte then the payload.  ``channel.k8s.io`` and
``v4.channel.k8s.io`` send binary messages; the ``base64.`` variants send text
whose first character is the channel's digit and the rest the payload in base64.
No subprotocol at all means binary.  Channels are numbered by the caller (exec
and attach: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize).

    accept_key, negotiate    the handshake (the caller writes the 101 answer)
    WebSocket                frames: messages in, messages out, ping/pong, close
    ChannelMux               channels over a WebSocket, as streams like SPDY's
"""

from __future__ import annotations

import base64
import hashlib
import logging
import queue
import socket
import struct
import threading

from .spdy import ByteReader

log = logging.getLogger("dockyard.cri.streaming")

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
#: the largest message a client may send (stdin chunks, resize events)
MAX_MESSAGE = 16 << 20
CHANNEL_PROTOCOLS = ("channel.k8s.io", "base64.channel.k8s.io")


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1((key.strip() + GUID).encode()).digest()).decode()


def negotiate(offered: str, supported: list[str]) -> str | None:
    """The first subprotocol of the client's list we speak; ``""`` when it
    offered none; None when it offered only others."""
    wanted = [p.strip() for p in offered.split(",") if p.strip()]
    if not wanted:
        return ""
    return next((p for p in wanted if p in supported), None)


def is_base64(protocol: str) -> bool:
    return protocol.startswith("base64.") or protocol.startswith("v4.base64.")


class WebSocket:
    """One upgraded connection: :meth:`receive` gives ``(opcode, payload)`` of
    whole messages (None at the end), answering pings itself; :meth:`send` and
    :meth:`close` may be called from any thread."""

    def __init__(self, sock: socket.socket, rfile: ByteReader) -> None:
        self.sock, self._r = sock, rfile
        self._lock = threading.Lock()
        self.closed = False

    def _exactly(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = self._r.read(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def _frame(self) -> tuple[bool, int, bytes] | None:
        head = self._exactly(2)
        if head is None:
            return None
        fin, opcode = bool(head[0] & 0x80), head[0] & 0x0F
        masked, length = bool(head[1] & 0x80), head[1] & 0x7F
        if length == 126:
            ext = self._exactly(2)
            length = struct.unpack(">H", ext)[0] if ext else -1
        elif length == 127:
            ext = self._exactly(8)
            length = struct.unpack(">Q", ext)[0] if ext else -1
        if length < 0 or length > MAX_MESSAGE or not masked:  # RFC 6455 5.1: a client masks every frame
            return None
        mask = self._exactly(4)
        data = self._exactly(length) if length else b""
        if mask is None or data is None:
            return None
        if length:
            whole = mask * (length // 4 + 1)
            data = (int.from_bytes(data, "big") ^ int.from_bytes(whole[:length], "big")).to_bytes(length, "big")
        return fin, opcode, data

    def receive(self) -> tuple[int, bytes] | None:
        parts: list[bytes] = []
        kind = None
        while True:
            frame = self._frame()
            if frame is None:
                return None
            fin, opcode, data = frame
            if opcode == PING:
                self.send(PONG, data)
                continue
            if opcode == PONG:
                continue
            if opcode == CLOSE:
                self.close(data[:2] if len(data) >= 2 else b"")
                return None
            if opcode != CONTINUATION:
                kind = opcode
            parts.append(data)
            if sum(map(len, parts)) > MAX_MESSAGE:
                return None
            if fin and kind is not None:
                return kind, b"".join(parts)

    def send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = struct.pack(">BB", 0x80 | opcode, n)
        elif n < 1 << 16:
            head = struct.pack(">BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 127, n)
        with self._lock:
            if self.closed and opcode != CLOSE:
                raise BrokenPipeError("the WebSocket is closed")
            self.sock.sendall(head + payload)

    def close(self, code: bytes = struct.pack(">H", 1000)) -> None:
        if self.closed:
            return
        try:
            self.send(CLOSE, code)
        except OSError:
            pass
        self.closed = True


class Channel:
    """One channel, with the SPDY stream's interface: read, write, close."""

    def __init__(self, mux: ChannelMux, number: int) -> None:
        self.mux, self.number = mux, number
        self._in: queue.Queue = queue.Queue(64)
        self._pending = b""
        self._eof = False

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
        self.mux.send(self.number, data)

    def close(self) -> None:
        """Nothing on the wire: channels of these protocols end with the WebSocket."""


class ChannelMux:
    """The channels of one WebSocket (``count`` of them): a reader thread hands
    each message to its channel; writes are framed by the protocol's codec."""

    def __init__(self, ws: WebSocket, protocol: str, count: int) -> None:
        self.ws, self.base64 = ws, is_base64(protocol)
        self.channels = [Channel(self, i) for i in range(count)]
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._read_loop, name="cri-ws-reader", daemon=True)

    def serve(self) -> None:
        self._thread.start()

    def send(self, channel: int, data: bytes) -> None:
        if self.base64:
            self.ws.send(TEXT, str(channel).encode() + base64.b64encode(data))
        else:
            self.ws.send(BINARY, bytes([channel]) + data)

    def _read_loop(self) -> None:
        try:
            while True:
                msg = self.ws.receive()
                if msg is None:
                    break
                _, data = msg
                if not data:
                    continue
                if self.base64:
                    number = data[0] - ord("0")
                    try:
                        payload = base64.b64decode(data[1:], validate=False)
                    except ValueError:
                        continue
                else:
                    number, payload = data[0], data[1:]
                if 0 <= number < len(self.channels) and payload:
                    self._put(self.channels[number], payload)
        except OSError:
            pass
        finally:
            self.closed.set()
            for ch in self.channels:
                self._put(ch, None)

    def _put(self, channel: Channel, item: bytes | None) -> None:
        while True:
            try:
                channel._in.put(item, timeout=0.5)
                return
            except queue.Full:
                if item is None:
                    try:
                        channel._in.get_nowait()
                    except queue.Empty:
                        pass
                elif self.ws.closed:
                    return

    def close(self, grace: float = 2.0) -> None:
        """A close frame; the socket ends when the client answers (or after ``grace``)."""
        self.ws.close()
        self.closed.wait(grace)
        try:
            self.ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
