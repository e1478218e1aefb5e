"""The streams of an exec or an attach, over SPDY or a WebSocket, as kubelet
clients expect them (client-go's ``tools/remotecommand``).

Over SPDY the client opens a stream per channel, its ``streamType`` header
naming it, and the server waits until every stream it expects is there: error,
then stdin, stdout, stderr as the request asked (never stderr with a terminal),
and resize with a terminal from protocol v3 on.  Over a WebSocket they are the
numbered channels of :mod:`.websocket`.  The error stream carries the outcome:
from v4 on a ``metav1.Status`` in JSON, success included (a non-zero exit is a
``Failure`` with reason ``NonZeroExitCode`` and the code in a cause); before v4,
only a failure's message.
"""

from __future__ import annotations

import json
import queue
import socket
import time
from typing import Any, Protocol

import attrs

from . import spdy, websocket

#: SPDY subprotocols, most preferred first (client-go offers v4, v3, v2, v1)
SPDY_PROTOCOLS = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]
WEBSOCKET_PROTOCOLS = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io"]
#: how long a client has to open its streams (the kubelet's default)
STREAM_CREATION_TIMEOUT = 30.0
STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
NON_ZERO_EXIT = "NonZeroExitCode"


class Readable(Protocol):
    def read(self, size: int = -1) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


@attrs.frozen
class Options:
    """Which streams the request asked for."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def of(cls, request: Any) -> Options:
        """Of an ExecRequest or AttachRequest (a terminal has no separate stderr)."""
        return cls(bool(request.stdin), bool(request.stdout), bool(request.stderr) and not request.tty,
                   bool(request.tty))


@attrs.define
class Session:
    """The client's streams of one exec or attach; ``conn`` is the SPDY
    connection or the WebSocket's channels (``closed`` is set when the client left)."""

    conn: Any
    error: Writable
    v4: bool
    stdin: Readable | None = None
    stdout: Writable | None = None
    stderr: Writable | None = None
    resize: Readable | None = None

    def gone(self) -> bool:
        return bool(self.conn.closed.is_set())

    def finish(self, status: dict) -> None:
        """The end: output streams closed, the status on the error stream, the connection closed."""
        for out in (self.stdout, self.stderr):
            if out is not None:
                out.close()
        try:
            if self.v4:
                self.error.write(json.dumps(status, separators=(",", ":")).encode())
            elif status.get("status") != "Success":
                self.error.write(status.get("message", "").encode())
        except OSError:
            pass
        self.error.close()
        self.conn.close()


def success() -> dict:
    return {"metadata": {}, "status": "Success"}


def exit_status(code: int) -> dict:
    """A process that ended with ``code`` (non-zero), as the kubelet reports it."""
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "reason": NON_ZERO_EXIT, "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def internal_error(message: str) -> dict:
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {message}",
            "reason": "InternalError", "details": {"causes": [{"message": message}]}, "code": 500}


def spdy_session(sock: socket.socket, rfile: spdy.ByteReader, opts: Options, protocol: str,
                 timeout: float = STREAM_CREATION_TIMEOUT) -> Session | None:
    """Serve SPDY on an upgraded connection and wait for the client's streams;
    None (the connection closed) if they do not all come in time."""
    arrived: queue.Queue = queue.Queue()
    kinds = {"error", "stdin", "stdout", "stderr", "resize"}

    def accept(stream: spdy.Stream) -> bool:
        return stream.headers.get("streamtype", "") in kinds

    conn = spdy.Connection(sock, rfile, accept, arrived.put)
    conn.serve()
    resizes = protocol != "channel.k8s.io" and protocol != "v2.channel.k8s.io"
    expected = 1 + opts.stdin + opts.stdout + opts.stderr + (opts.tty and resizes)
    got: dict[str, spdy.Stream] = {}
    deadline = time.monotonic() + timeout
    while len(got) < expected:
        try:
            stream = arrived.get(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
        except queue.Empty:
            if conn.closed.is_set() or time.monotonic() >= deadline:
                conn.close(grace=0)
                return None
            continue
        got[stream.headers["streamtype"]] = stream
    if "error" not in got:
        conn.close(grace=0)
        return None
    session = Session(conn, got["error"], protocol == "v4.channel.k8s.io", got.get("stdin"), got.get("stdout"),
                      got.get("stderr"), got.get("resize"))
    if protocol == "channel.k8s.io" and session.stdin is not None:
        got["stdin"].close()  # as v1 kubelets did: our side of stdin ends at once
    return session


def websocket_session(sock: socket.socket, rfile: spdy.ByteReader, opts: Options, protocol: str) -> Session:
    """The channels of an accepted WebSocket; an empty message on the lowest
    channel we write tells the client that we are ready (as the kubelet does)."""
    mux = websocket.ChannelMux(websocket.WebSocket(sock, rfile), protocol, 5)
    mux.serve()
    ch = mux.channels
    session = Session(mux, ch[ERROR], protocol.startswith("v4."), ch[STDIN] if opts.stdin else None,
                      ch[STDOUT] if opts.stdout else None, ch[STDERR] if opts.stderr else None,
                      ch[RESIZE] if opts.tty else None)
    first = STDOUT if opts.stdout else STDERR if opts.stderr else ERROR
    mux.send(first, b"")
    return session


def resize_events(stream: Readable) -> Any:
    """The terminal sizes the client sends, ``(height, width)``, until it stops:
    a stream of JSON objects ``{"Width": w, "Height": h}``."""
    decoder = json.JSONDecoder()
    buf = ""
    while True:
        chunk = stream.read()
        if not chunk:
            return
        buf += chunk.decode(errors="replace")
        while buf.strip():
            buf = buf.lstrip()
            try:
                size, end = decoder.raw_decode(buf)
            except ValueError:
                if len(buf) > 4096:  # not JSON at all
                    buf = ""
                break  # an object cut in two: wait for its rest
            buf = buf[end:]
            if isinstance(size, dict):
                try:
                    yield int(size.get("Height") or 0), int(size.get("Width") or 0)
                except (TypeError, ValueError):
                    continue
