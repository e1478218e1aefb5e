"""Port forwarding into a pod (``portforward.k8s.io``), over SPDY or a WebSocket.

Over SPDY (what client-go's ``tools/portforward`` speaks) each local connection
of the client becomes two streams, ``error`` then ``data``, sharing a
``requestID`` and naming the pod's ``port``.  We connect to ``localhost:PORT``
inside the pod's network namespace (the host's loopback for a host-network pod)
and copy both ways: the pod's end of output becomes our FIN on the data stream,
the client's FIN a half-close towards the pod; a failure to connect is written
on the error stream.  Over a WebSocket, the ports are the request's, each a data
and an error channel that first carry the port (two bytes, little-endian).

The connecting happens in a short-lived thread that joins the namespace
(``setns`` changes only the calling thread) and ends there: the socket stays in
the namespace it was made in.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import socket
import struct
import threading
import time
from typing import Callable

from . import spdy, websocket

log = logging.getLogger("dockyard.cri.streaming")

PROTOCOL = "portforward.k8s.io"
WEBSOCKET_PROTOCOLS = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"]
CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT = 10.0
#: how long the client has to open a request's second stream
PAIR_TIMEOUT = 30.0
#: how long one direction waits for the other once the pod's side ended
LINGER = 1.0

Dial = Callable[[int], socket.socket]


def dialer(netns: str | None) -> Dial:
    """``dial(port)``: a TCP connection to ``localhost:port`` in ``netns`` (a
    path; None: the host's own network)."""
    return lambda port: _dial(netns, port)


def _dial(netns: str | None, port: int) -> socket.socket:
    if netns is None:
        return _connect_local(port)
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            made.append(_connect_local(port))
        except BaseException as exc:  # raised below, on the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="cri-portforward-setns")  # ends inside the namespace
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _connect_local(port: int) -> socket.socket:
    """localhost:port as Go's dialer tries it: IPv4's loopback, then IPv6's."""
    error: OSError | None = None
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect((addr, port))
        except OSError as exc:
            sock.close()
            error = error or exc
            continue
        sock.settimeout(None)
        return sock
    raise error or OSError(errno.ECONNREFUSED, "connection refused")


def _port(value: str | None) -> int | None:
    try:
        port = int(value or "")
    except ValueError:
        return None
    return port if 0 < port < 65536 else None


def serve_spdy(sock: socket.socket, rfile: spdy.ByteReader, dial: Dial, pod: str) -> None:
    """Forward every request of the client until it closes the connection."""
    pairs: dict[str, dict[str, spdy.Stream]] = {}
    peers: set[socket.socket] = set()
    lock = threading.Lock()

    def accept(stream: spdy.Stream) -> bool:
        return _port(stream.headers.get("port")) is not None and stream.headers.get("streamtype") in ("error", "data")

    def opened(stream: spdy.Stream) -> None:
        kind = stream.headers["streamtype"]
        rid = stream.headers.get("requestid") or str(stream.id if kind == "error" else stream.id - 2)  # old clients
        with lock:
            pair = pairs.setdefault(rid, {})
            if kind in pair:
                stream.write(f"error processing stream for request {rid}: {kind} stream already assigned".encode())
                stream.reset()
                return
            pair[kind] = stream
            if len(pair) < 2:
                threading.Thread(target=_expire, args=(rid,), daemon=True).start()
                return
            del pairs[rid]
        threading.Thread(target=_forward, args=(conn, pair["data"], pair["error"], dial, pod, peers, lock),
                         name="cri-portforward", daemon=True).start()

    def _expire(rid: str) -> None:
        time.sleep(PAIR_TIMEOUT)
        with lock:
            pair = pairs.pop(rid, {})
        if "error" in pair:
            try:
                pair["error"].write(f"timed out waiting for streams of request {rid}".encode())
            except OSError:
                pass
        for stream in pair.values():
            stream.reset()

    conn = spdy.Connection(sock, rfile, accept, opened)
    conn.serve()
    conn.closed.wait()
    with lock:
        for peer in list(peers):
            _shut(peer)
    conn.close(grace=0)


def _forward(conn: spdy.Connection, data: spdy.Stream, error: spdy.Stream, dial: Dial, pod: str,
             peers: set[socket.socket], lock: threading.Lock) -> None:
    port = int(data.headers["port"])
    try:
        peer = dial(port)
    except OSError as exc:
        msg = f"error forwarding port {port} to pod {pod}, uid : failed to connect to localhost:{port}: {exc}"
        log.debug("%s", msg)
        try:
            error.write(msg.encode())
        except OSError:
            pass
        error.close()
        data.close()
        conn.forget(data)
        conn.forget(error)
        return
    with lock:
        peers.add(peer)
    dropped = lambda: data.finished and not conn.ending.is_set()  # noqa: E731 (RST_STREAM, not our FIN)
    upstream = threading.Thread(target=_client_to_pod, args=(data, peer, dropped), daemon=True)
    upstream.start()
    try:
        while chunk := peer.recv(1 << 16):
            data.write(chunk)
    except OSError:
        pass
    data.close()
    upstream.join(LINGER)
    with lock:
        peers.discard(peer)
    _shut(peer)
    peer.close()
    error.close()
    conn.forget(data)
    conn.forget(error)


def _client_to_pod(data: spdy.Stream | websocket.Channel, peer: socket.socket, reset: Callable[[], bool]) -> None:
    """The client's bytes to the pod; at their end a half-close towards the pod,
    unless ``reset()`` says the client dropped the stream (then both ways end)."""
    try:
        while chunk := data.read():
            peer.sendall(chunk)
        peer.shutdown(socket.SHUT_RDWR if reset() else socket.SHUT_WR)
    except OSError:
        pass


def serve_websocket(sock: socket.socket, rfile: spdy.ByteReader, protocol: str, ports: list[int], dial: Dial,
                    pod: str) -> None:
    """Each of ``ports`` over its two channels, one connection each, until all ended."""
    mux = websocket.ChannelMux(websocket.WebSocket(sock, rfile), protocol, 2 * len(ports))
    mux.serve()
    threads = []
    for i, port in enumerate(ports):
        data, error = mux.channels[2 * i], mux.channels[2 * i + 1]
        head = struct.pack("<H", port)
        data.write(head)
        error.write(head)
        thread = threading.Thread(target=_forward_channel, args=(mux, data, error, port, dial, pod), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    mux.close()


def _forward_channel(mux: websocket.ChannelMux, data: websocket.Channel, error: websocket.Channel, port: int,
                     dial: Dial, pod: str) -> None:
    try:
        peer = dial(port)
    except OSError as exc:
        try:
            error.write(f"error forwarding port {port} to pod {pod}, uid : {exc}".encode())
        except OSError:
            pass
        return
    upstream = threading.Thread(target=_client_to_pod, args=(data, peer, mux.closed.is_set), daemon=True)
    upstream.start()
    try:
        while chunk := peer.recv(1 << 16):
            data.write(chunk)
    except OSError:
        pass
    upstream.join(LINGER)
    _shut(peer)
    peer.close()


def _shut(peer: socket.socket) -> None:
    try:
        peer.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
