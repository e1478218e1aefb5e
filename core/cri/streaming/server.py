"""The streaming server: the URLs that Exec, Attach and PortForward answer with,
and the HTTP server behind them, upgraded to SPDY/3.1 or a WebSocket.

As the kubelet's streaming library does (``pkg/kubelet/cri/streaming``), an RPC
validates its request and keeps it under a random token, single-use and good for
a minute; the client then connects to ``http://HOST:PORT/<kind>/<token>``.  The
server runs in threads of its own (a thread per connection, and a few per
stream), so that nothing here waits on the daemon's event loop or holds it.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc

from ..api import api_pb2 as pb
from ..config import CriConfig
from ..errors import CriError, rpc
from . import portforward, remotecommand, websocket
from .execattach import run_attach, run_exec

log = logging.getLogger("dockyard.cri.streaming")

TOKEN_TTL = 60.0  # seconds a URL stays good (the kubelet's cache keeps them a minute)
MAX_TOKENS = 1000  # requests waiting for their connection (the kubelet's limit too)


class TokenCache:
    """Requests waiting for their connection, each under a random token."""

    def __init__(self, ttl: float = TOKEN_TTL, limit: int = MAX_TOKENS) -> None:
        self.ttl, self.limit = ttl, limit
        self._items: dict[str, tuple[float, str, Any]] = {}
        self._lock = threading.Lock()

    def insert(self, kind: str, request: Any) -> str:
        now = time.monotonic()
        with self._lock:
            for token in [t for t, (at, _, _) in self._items.items() if now - at > self.ttl]:
                del self._items[token]
            if len(self._items) >= self.limit:
                raise CriError(grpc.StatusCode.RESOURCE_EXHAUSTED, "maximum number of in-flight requests exceeded")
            token = secrets.token_urlsafe(12)
            self._items[token] = (now, kind, request)
        return token

    def consume(self, kind: str, token: str) -> Any:
        """The request of ``token`` if it is of ``kind`` and still good (it is gone after)."""
        with self._lock:
            item = self._items.pop(token, None)
        if item is None or item[1] != kind or time.monotonic() - item[0] > self.ttl:
            return None
        return item[2]


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port or 0)


class StreamServer:
    """The streams of one daemon's CRI: ``eng`` is the engine, ``pods`` the pod
    service (:meth:`sandbox`, :meth:`netns_path`)."""

    def __init__(self, eng: Any, cfg: CriConfig, pods: Any) -> None:
        self.containers = eng.containers
        self.pods = pods
        self.address = cfg.stream_address
        self.tokens = TokenCache()
        self.base_url = ""
        self._http: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifetime ----------------------------------------------------------------------
    def start(self) -> None:
        host, port = _split_address(self.address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server = _Server((host, port), _Handler, family, self)
        bound_host, bound_port = server.socket.getsockname()[:2]
        self.base_url = f"http://[{bound_host}]:{bound_port}" if family == socket.AF_INET6 else \
            f"http://{bound_host}:{bound_port}"
        self._http = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="cri-streaming", daemon=True)
        self._thread.start()
        log.info("CRI streaming server on %s", self.base_url)

    def stop(self) -> None:
        server, self._http = self._http, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if self._thread is not None:
            self._thread.join(5)

    # --- the RPCs ----------------------------------------------------------------------
    @rpc
    def Exec(self, request: pb.ExecRequest, context: Any) -> pb.ExecResponse:
        _check_streams(request, "exec")
        if not request.cmd:
            raise CriError(grpc.StatusCode.INVALID_ARGUMENT, "cmd is required")
        req = pb.ExecRequest()
        req.CopyFrom(request)
        req.container_id = self._running(request.container_id)
        return pb.ExecResponse(url=self._url("exec", self.tokens.insert("exec", req)))

    @rpc
    def Attach(self, request: pb.AttachRequest, context: Any) -> pb.AttachResponse:
        _check_streams(request, "attach")
        req = pb.AttachRequest()
        req.CopyFrom(request)
        req.container_id = self._running(request.container_id)
        return pb.AttachResponse(url=self._url("attach", self.tokens.insert("attach", req)))

    @rpc
    def PortForward(self, request: pb.PortForwardRequest, context: Any) -> pb.PortForwardResponse:
        if not request.pod_sandbox_id:
            raise CriError(grpc.StatusCode.INVALID_ARGUMENT, "missing required pod_sandbox_id")
        for port in request.port:
            if not 0 < port < 65536:
                raise CriError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid port {port}")
        req = pb.PortForwardRequest()
        req.CopyFrom(request)
        req.pod_sandbox_id = self.pods.sandbox(request.pod_sandbox_id).id
        return pb.PortForwardResponse(url=self._url("portforward", self.tokens.insert("portforward", req)))

    def _running(self, ref: str) -> str:
        rec = self.containers.get(self.containers.resolve(ref))
        if not rec.state.running:
            raise CriError(grpc.StatusCode.FAILED_PRECONDITION, f"container {rec.id} is not running")
        return str(rec.id)

    def _url(self, kind: str, token: str) -> str:
        if not self.base_url:
            raise CriError(grpc.StatusCode.UNAVAILABLE, "the streaming server is not running")
        return f"{self.base_url}/{kind}/{token}"


def _check_streams(request: Any, what: str) -> None:
    if not request.container_id:
        raise CriError(grpc.StatusCode.INVALID_ARGUMENT, "missing required container_id")
    if request.tty and request.stderr:  # one terminal: stdout and stderr are not apart
        raise CriError(grpc.StatusCode.INVALID_ARGUMENT, "tty and stderr cannot both be true")
    if not (request.stdin or request.stdout or request.stderr):
        raise CriError(grpc.StatusCode.INVALID_ARGUMENT, "one of stdin, stdout, or stderr must be set")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type, family: int, streams: StreamServer) -> None:
        self.address_family = family
        self.streams = streams
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()
        super().__init__(address, handler)

    def drop_connections(self) -> None:
        with self.open_lock:
            conns = list(self.open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    """One connection: the request names a token, the answer upgrades it."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.open_lock:
            self.server.open.add(self.connection)

    def finish(self) -> None:
        with self.server.open_lock:
            self.server.open.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("stream %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _fail(self, code: int, message: str, headers: dict[str, list[str]] | None = None) -> None:
        body = (message + "\n").encode()
        self.send_response(code)
        for name, values in (headers or {}).items():
            for value in values:
                self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _serve(self) -> None:
        self.close_connection = True
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("exec", "attach", "portforward"):
            self._fail(404, "404 page not found")
            return
        kind, token = parts
        request = self.server.streams.tokens.consume(kind, token)
        if request is None:
            self._fail(404, "404 page not found")
            return
        upgrade = (self.headers.get("Upgrade") or "").lower()
        wants = "upgrade" in (self.headers.get("Connection") or "").lower()
        if wants and "websocket" in upgrade:
            self._websocket(kind, request, parse_qs(url.query))
        elif wants and "spdy/3.1" in upgrade:
            self._spdy(kind, request)
        else:
            self._fail(400, f"unable to upgrade: missing upgrade headers in request: {dict(self.headers)!r}")

    def _spdy(self, kind: str, request: Any) -> None:
        ours = [portforward.PROTOCOL] if kind == "portforward" else remotecommand.SPDY_PROTOCOLS
        theirs = [p.strip() for h in self.headers.get_all("X-Stream-Protocol-Version") or [] for p in h.split(",")]
        theirs = [p for p in theirs if p]
        if not theirs:
            self._fail(400, "unable to upgrade: X-Stream-Protocol-Version is required")
            return
        protocol = next((p for p in theirs if p in ours), None)
        dial = self._dialer(request) if kind == "portforward" else None
        if kind == "portforward" and dial is None:
            return
        if protocol is None:
            self._fail(403, f"unable to upgrade: unable to negotiate protocol: client supports {theirs}, "
                            f"server accepts {ours}", {"X-Accepted-Stream-Protocol-Versions": ours})
            return
        self.send_response(101, "Switching Protocols")
        self.send_header("Connection", "Upgrade")
        self.send_header("Upgrade", "SPDY/3.1")
        self.send_header("X-Stream-Protocol-Version", protocol)
        self.end_headers()
        if dial is not None:
            portforward.serve_spdy(self.connection, self.rfile, dial, request.pod_sandbox_id)
            return
        session = remotecommand.spdy_session(self.connection, self.rfile, remotecommand.Options.of(request), protocol)
        if session is None:
            log.debug("stream %s: the client did not open its streams", kind)
            return
        self._run(kind, request, session)

    def _websocket(self, kind: str, request: Any, query: dict[str, list[str]]) -> None:
        key = self.headers.get("Sec-WebSocket-Key")
        if not key or self.headers.get("Sec-WebSocket-Version", "").strip() != "13":
            self._fail(400, "unable to upgrade: not a WebSocket version 13 handshake",
                       {"Sec-WebSocket-Version": ["13"]})
            return
        ours = portforward.WEBSOCKET_PROTOCOLS if kind == "portforward" else remotecommand.WEBSOCKET_PROTOCOLS
        protocol = websocket.negotiate(self.headers.get("Sec-WebSocket-Protocol", ""), ours)
        if protocol is None:
            self._fail(400, f"unable to upgrade: none of the subprotocols is one of {ours}")
            return
        ports = list(request.port) if kind == "portforward" else []
        if kind == "portforward" and not ports:
            ports = [p for p in (portforward._port(v) for v in query.get("port", [])) if p is not None]
            if not ports:
                self._fail(400, "query parameter \"port\" is required")
                return
        dial = self._dialer(request) if kind == "portforward" else None
        if kind == "portforward" and dial is None:
            return
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", websocket.accept_key(key))
        if protocol:
            self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        if dial is not None:
            portforward.serve_websocket(self.connection, self.rfile, protocol, ports, dial, request.pod_sandbox_id)
            return
        session = remotecommand.websocket_session(self.connection, self.rfile, remotecommand.Options.of(request),
                                                  protocol)
        self._run(kind, request, session)

    def _dialer(self, request: Any) -> portforward.Dial | None:
        """How to reach the pod's ports (None, and the answer given, if the pod is gone)."""
        try:
            return portforward.dialer(self.server.streams.pods.netns_path(request.pod_sandbox_id))
        except Exception as exc:  # NotFound most often: the pod went away since the RPC
            self._fail(404 if isinstance(exc, LookupError) else 500, f"pod sandbox {request.pod_sandbox_id}: {exc}")
            return None

    def _run(self, kind: str, request: Any, session: remotecommand.Session) -> None:
        containers = self.server.streams.containers
        try:
            if kind == "exec":
                run_exec(containers, request, session)
            else:
                run_attach(containers, request, session)
        except Exception as exc:  # the client hears of it; the daemon goes on
            log.exception("CRI %s failed", kind)
            session.finish(remotecommand.internal_error(str(exc)))
