"""A recording relay between API clients and a daemon, on a unix socket.

The e2e tests point the docker CLI, the SDK and our CLI at this relay instead of the
daemon's socket; it passes every byte through unchanged, in both directions and as
it comes (streams, hijacked attach and exec sessions, half-closes), and meanwhile
follows the HTTP/1.1 exchanges on a copy of the bytes with h11 (sans-IO), keeping
each complete response whose body the caller wants (:class:`Exchange`), for
:mod:`.apicheck` to check against the spec::

    proxy = RecordingProxy(listen="/tmp/x/api.sock", upstream=d.sock, wants=checker.wants).start()
    ...  # clients talk to /tmp/x/api.sock
    exchanges = proxy.take()
    proxy.stop()

Forwarding never depends on the parsing: a connection the parser cannot follow
(after a 101 switch, a body sent past its response) is still relayed; only its
later exchanges go unseen.  The parser sees bytes before they are forwarded, so a
response is recorded by the time its client has read it.  HTTP the daemon frames
wrongly is recorded too, as an exchange with status 0 and the parser's complaint.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from typing import Callable

import h11

from .apicheck import Exchange

#: the most of one response body kept for checking (a JSON listing is far smaller)
MAX_BODY = 16 << 20

Wants = Callable[[str, str, int, str], bool]


class _Tap:
    """Follows one connection's exchanges from copies of its bytes: two h11 state
    machines, one reading the client's requests as a server would, one reading the
    daemon's responses as a client would, each told what the other saw."""

    def __init__(self, wants: Wants, record: Callable[[Exchange], None]):
        self.wants, self.record = wants, record
        self.requests = h11.Connection(h11.SERVER)
        self.responses = h11.Connection(h11.CLIENT)
        self.lock = threading.Lock()
        self.following = True
        self.client_closed = False
        self.method = self.target = self.content_type = ""
        self.status = 0
        self.body: bytearray | None = None

    def from_client(self, data: bytes) -> None:
        self._feed(self.requests, data)

    def from_daemon(self, data: bytes) -> None:
        self._feed(self.responses, data)

    def _feed(self, conn: h11.Connection, data: bytes) -> None:
        with self.lock:
            if not self.following:
                return
            try:
                conn.receive_data(data)
                self._pump()
            except h11.RemoteProtocolError as exc:
                self.following = False
                if conn is self.responses:  # the daemon's HTTP is wrong: that is a finding
                    self.record(Exchange(self.method, self.target, 0, "", f"bad HTTP: {exc}".encode()))
            except h11.LocalProtocolError:  # the client's, as we mirror it: not ours to judge
                self.following = False

    def _pump(self) -> None:
        moved = True
        while moved and self.following:
            moved = self._requests() | self._responses()
            if self.requests.our_state is h11.DONE and self.requests.their_state is h11.DONE:
                self.requests.start_next_cycle()
                self.responses.start_next_cycle()
                moved = True

    def _requests(self) -> bool:
        moved = False
        while not self.client_closed:
            event = self.requests.next_event()
            if not isinstance(event, h11.Event):  # NEED_DATA, PAUSED
                return moved
            moved = True
            if isinstance(event, h11.Request):
                self.method, self.target = event.method.decode(), event.target.decode()
            if isinstance(event, h11.ConnectionClosed):  # half-closed: responses may still come
                self.client_closed = True
                return moved
            self.responses.send(event)
        return moved

    def _responses(self) -> bool:
        moved = False
        while True:
            event = self.responses.next_event()
            if not isinstance(event, h11.Event):  # NEED_DATA, PAUSED
                return moved
            moved = True
            if isinstance(event, h11.ConnectionClosed):
                self.following = False
                return moved
            if isinstance(event, h11.InformationalResponse):
                self.requests.send(event)
                if event.status_code == 101:  # hijacked: raw bytes from here on
                    self.following = False
                    return moved
                continue
            self.requests.send(event)
            if isinstance(event, h11.Response):
                self.status = event.status_code
                self.content_type = dict(event.headers).get(b"content-type", b"").decode("latin-1")
                keep = self.wants(self.method, self.target, self.status, self.content_type)
                self.body = bytearray() if keep else None
            elif isinstance(event, h11.Data) and self.body is not None:
                self.body += event.data
                if len(self.body) > MAX_BODY:
                    self.body = None
            elif isinstance(event, h11.EndOfMessage):
                body = bytes(self.body) if self.body is not None else None
                self.record(Exchange(self.method, self.target, self.status, self.content_type, body))


class RecordingProxy:
    """Listens on ``listen``; relays each connection to the unix socket ``upstream``
    (a connection the daemon does not take is closed), recording exchanges."""

    def __init__(self, listen: str, upstream: str, wants: Wants):
        self.path, self.upstream, self.wants = listen, upstream, wants
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self._open: set[socket.socket] = set()

    def start(self) -> "RecordingProxy":
        if os.path.exists(self.path):
            os.unlink(self.path)
        server = socket.socket(socket.AF_UNIX)
        server.bind(self.path)
        os.chmod(self.path, 0o660)
        server.listen(128)
        self._server = server
        threading.Thread(target=self._accept, name=f"apiproxy {self.path}", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stops listening and cuts the connections still open."""
        if self._server is not None:
            _shutdown(self._server, socket.SHUT_RDWR)  # wakes the accepting thread
            self._server.close()
            self._server = None
        with self._lock:
            for sock in list(self._open):
                _shutdown(sock, socket.SHUT_RDWR)
        if os.path.exists(self.path):
            os.unlink(self.path)

    def take(self) -> list[Exchange]:
        """The exchanges recorded since the last call."""
        with self._lock:
            out, self.exchanges = self.exchanges, []
        return out

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def _accept(self) -> None:
        server = self._server
        while server is not None:
            try:
                client, _ = server.accept()
            except OSError:
                return  # stopped
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        daemon = socket.socket(socket.AF_UNIX)
        try:
            daemon.connect(self.upstream)
        except OSError:
            client.close()
            daemon.close()
            return
        with self._lock:
            self._open.update((client, daemon))
        tap = _Tap(self.wants, self._record)
        back = threading.Thread(target=_pump, args=(daemon, client, tap.from_daemon), daemon=True)
        back.start()
        _pump(client, daemon, tap.from_client)
        back.join()
        with self._lock:
            self._open.difference_update((client, daemon))
        client.close()
        daemon.close()


def _pump(src: socket.socket, dst: socket.socket, tap: Callable[[bytes], None]) -> None:
    """Copies ``src`` to ``dst`` until ``src`` ends, then half-closes ``dst`` (as the
    docker CLI half-closes an attach when its stdin ends); a broken side cuts both."""
    try:
        while data := src.recv(1 << 16):
            try:
                tap(data)
            except Exception as exc:  # the tap must never break the relay
                print(f"apiproxy: tap failed: {exc!r}", file=sys.stderr)
            dst.sendall(data)
        _shutdown(dst, socket.SHUT_WR)
    except OSError:
        _shutdown(src, socket.SHUT_RDWR)
        _shutdown(dst, socket.SHUT_RDWR)


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass
