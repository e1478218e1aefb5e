"""The API client's wire handling, against a fake HTTP server on a unix socket.

The fake server below stands in for the daemon ONLY to test how the client
speaks HTTP: versioned paths, Docker's error JSON, the 8-byte multiplexed frames,
the ``101 UPGRADED`` hijack of attach, chunked JSON-lines progress, streamed
uploads.  It says nothing about the real daemon; integration tests with the real
daemon (tests/integration, tests/e2e) are the lead's.  The framing itself, byte for
byte: test_wire.py.
"""

import http.server
import io
import json
import os
import socketserver
import struct
import subprocess
import sys
import threading

import pytest

from dockyard.client import (APIError, Client, DaemonUnreachable, NotFound, ProgressError,
                             ProtocolError, demux, parse_host)


def frame(stream, data):
    return struct.pack(">BxxxL", stream, len(data)) + data


class FakeDaemon(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path):
        self.requests = []  # (method, path, headers, body)
        self.routes = {}
        super().__init__(path, Handler)

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # the client hung up: expected
            super().handle_error(request, client_address)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def address_string(self):
        return "fake"

    def _body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self):
        key = f"{self.command} {self.path.split('?')[0]}"
        route = self.server.routes.get(key)
        if route is None or not getattr(route, "hijack", False):
            body = self._body()
        else:
            body = None
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        if route is None:
            return self.send(404, {"message": f"page not found: {key}"})
        route(self)

    do_GET = do_POST = do_DELETE = _handle

    def send(self, status, obj=None, raw=None, ctype="application/json", reason=None):
        data = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else b"")
        self.send_response(status, reason)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def send_chunked(self, pieces, ctype="application/json"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


def hijack(fn):
    fn.hijack = True
    return fn


@pytest.fixture
def fake(tmp_path):
    path = str(tmp_path / "fake.sock")
    server = FakeDaemon(path)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server, Client(f"unix://{path}")
    server.shutdown()
    server.server_close()


def test_parse_host_forms():
    assert parse_host("unix:///run/x.sock") == ("unix", "/run/x.sock")
    assert parse_host("/run/x.sock") == ("unix", "/run/x.sock")
    assert parse_host("tcp://127.0.0.1:2375") == ("tcp", ("127.0.0.1", 2375))
    assert parse_host("http://localhost:8080/") == ("tcp", ("localhost", 8080))
    assert parse_host("tcp://example") == ("tcp", ("example", 2375))
    with pytest.raises(ValueError):
        parse_host("ftp://x")


def test_versioned_path_and_json(fake):
    server, client = fake
    server.routes["GET /v1.41/version"] = lambda h: h.send(200, {"ApiVersion": "1.41"})
    server.routes["GET /v1.41/_ping"] = lambda h: h.send(200, raw=b"OK", ctype="text/plain")
    assert client.version() == {"ApiVersion": "1.41"}
    assert client.ping() == "OK"
    assert [r[1] for r in server.requests] == ["/v1.41/version", "/v1.41/_ping"]


def test_docker_error_json_becomes_api_error(fake):
    server, client = fake
    server.routes["POST /v1.41/containers/create"] = lambda h: h.send(409, {"message": "name in use"})
    with pytest.raises(APIError) as err:
        client.create_container({"Image": "busybox"}, name="a b")
    assert err.value.status == 409 and err.value.message == "name in use"
    method, path, headers, body = server.requests[0]
    assert path == "/v1.41/containers/create?name=a+b"
    assert json.loads(body) == {"Image": "busybox"} and headers["Content-Type"] == "application/json"
    with pytest.raises(NotFound) as err:
        client.inspect_container("nope")
    assert err.value.status == 404 and "page not found" in err.value.message
    server.routes["GET /v1.41/info"] = lambda h: h.send(500, raw=b"plain failure", ctype="text/plain")
    with pytest.raises(APIError, match="plain failure"):
        client.info()


def test_unreachable_daemon(tmp_path):
    client = Client(f"unix://{tmp_path}/missing.sock")
    with pytest.raises(DaemonUnreachable) as err:
        client.ping()
    assert isinstance(err.value.cause, FileNotFoundError)
    assert "Cannot connect to the Dockyard daemon" in str(err.value)


def test_demux_frames_and_raw():
    data = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"") + frame(1, b"x" * 70000)
    buf = io.BytesIO(data)
    frames = list(demux(buf.read, lambda: buf.read(10), tty=False))
    assert frames == [(1, b"out\n"), (2, b"err\n"), (1, b""), (1, b"x" * 70000)]
    raw = io.BytesIO(b"\x01\x00plain tty bytes")
    assert b"".join(d for _, d in demux(raw.read, lambda: raw.read(4), tty=True)) == b"\x01\x00plain tty bytes"
    cut = io.BytesIO(frame(1, b"hello")[:-2])
    with pytest.raises(ProtocolError):
        list(demux(cut.read, cut.read, tty=False))


def test_logs_demultiplexes_chunked_stream(fake):
    server, client = fake
    payload = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"more\n")
    # split frames across chunk boundaries on purpose
    server.routes["GET /v1.41/containers/c1/logs"] = lambda h: h.send_chunked(
        [payload[:3], payload[3:13], payload[13:]], ctype="application/vnd.docker.multiplexed-stream")
    frames = list(client.logs("c1", follow=True, tail="5", tty=False))
    assert frames == [(1, b"out\n"), (2, b"err\n"), (1, b"more\n")]
    path = server.requests[0][1]
    assert path.startswith("/v1.41/containers/c1/logs?") and "follow=1" in path and "tail=5" in path


def test_logs_of_tty_container_are_raw(fake):
    server, client = fake
    server.routes["GET /v1.41/containers/t/json"] = lambda h: h.send(200, {"Id": "t", "Config": {"Tty": True}})
    server.routes["GET /v1.41/containers/t/logs"] = lambda h: h.send(200, raw=b"\x01raw\r\n", ctype="x")
    assert b"".join(d for _, d in client.logs("t")) == b"\x01raw\r\n"


def _upgrade(status, reason, body, stdin_echo=False):
    @hijack
    def route(h):
        h.send_response_only(status, reason)
        h.send_header("Content-Type", "application/vnd.docker.multiplexed-stream")
        if status == 101:
            h.send_header("Connection", "Upgrade")
            h.send_header("Upgrade", "tcp")
        h.end_headers()
        h.wfile.flush()
        for piece in body:
            h.wfile.write(piece)
            h.wfile.flush()
        if stdin_echo:
            got = h.rfile.read()  # until the client half-closes
            h.wfile.write(frame(1, b"stdin:" + got))
        h.close_connection = True
    return route


def test_attach_upgrade_101(fake):
    server, client = fake
    server.routes["POST /v1.41/containers/c1/attach"] = _upgrade(
        101, "UPGRADED", [frame(1, b"hello "), frame(2, b"oops\n"), frame(1, b"world\n")])
    server.routes["GET /v1.41/_ping"] = lambda h: h.send(200, raw=b"OK", ctype="text/plain")
    with client.attach("c1", stdout=True, stderr=True, tty=False) as att:
        assert client.ping() == "OK"  # other requests work while the attach is open
        frames = list(att.frames())
    assert frames == [(1, b"hello "), (2, b"oops\n"), (1, b"world\n")]
    method, path, headers, _ = server.requests[0]
    assert method == "POST" and path == "/v1.41/containers/c1/attach?stream=1&stdin=0&stdout=1&stderr=1"
    assert headers["Connection"] == "Upgrade" and headers["Upgrade"] == "tcp"
    assert "Content-Length" not in headers and "Transfer-Encoding" not in headers  # no body framing


def test_attach_stdin_half_close_and_200(fake):
    server, client = fake
    server.routes["POST /v1.41/containers/c2/attach"] = _upgrade(200, "OK", [], stdin_echo=True)
    att = client.attach("c2", stdin=True, tty=False)
    att.send(b"typed input")
    att.close_stdin()
    assert list(att.frames()) == [(1, b"stdin:typed input")]
    att.close()
    assert "stdin=1" in server.requests[0][1]


def test_attach_error_is_api_error(fake):
    server, client = fake
    server.routes["POST /v1.41/containers/gone/attach"] = hijack(
        lambda h: (h.send(409, {"message": "You cannot attach to a stopped container"}),
                   setattr(h, "close_connection", True)))
    with pytest.raises(APIError) as err:
        client.attach("gone", tty=False)
    assert err.value.status == 409 and "stopped container" in err.value.message


def test_import_streams_file_and_reads_chunked_progress(fake, tmp_path):
    server, client = fake
    lines = [b'{"status":"Importing"}\r\n{"status":"sha', b'256:abc"}\r\n']
    server.routes["POST /v1.41/images/create"] = lambda h: h.send_chunked(lines)
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(b"T" * 200000)
    with open(tarball, "rb") as fh:
        msgs = list(client.import_image(fh, repo="busybox", tag="v1",
                                        changes=['CMD ["sh"]', "ENV A=1"], message="hi"))
    assert msgs == [{"status": "Importing"}, {"status": "sha256:abc"}]
    method, path, headers, body = server.requests[0]
    assert body == b"T" * 200000 and headers["Content-Length"] == "200000"
    assert "fromSrc=-" in path and "repo=busybox" in path and "tag=v1" in path and "message=hi" in path
    assert path.count("changes=") == 2


def test_import_from_pipe_is_chunked(fake):
    server, client = fake
    server.routes["POST /v1.41/images/create"] = lambda h: h.send(200, {"status": "sha256:def"})
    r, w = os.pipe()
    with os.fdopen(w, "wb") as out:
        out.write(b"piped tar bytes")
    with os.fdopen(r, "rb") as src:
        assert list(client.import_image(src)) == [{"status": "sha256:def"}]
    _, _, headers, body = server.requests[0]
    assert headers.get("Transfer-Encoding") == "chunked" and body == b"piped tar bytes"


def test_progress_error_raises(fake):
    server, client = fake
    server.routes["POST /v1.41/images/create"] = lambda h: h.send_chunked(
        [b'{"status":"Importing"}\n', b'{"errorDetail":{"message":"archive/tar: corrupt"},"error":"corrupt"}\n'])
    with pytest.raises(ProgressError, match="archive/tar: corrupt"):
        list(client.import_image(b"junk"))


def test_wait_begin_then_result(fake):
    server, client = fake
    server.routes["POST /v1.41/containers/c1/wait"] = lambda h: h.send(200, {"StatusCode": 3, "Error": None})
    pending = client.wait_begin("c1", "removed", confirm_timeout=2)
    assert pending.result() == {"StatusCode": 3, "Error": None}
    assert server.requests[0][1] == "/v1.41/containers/c1/wait?condition=removed"


RUN_SCRIPT = """
import sys
from dockyard.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_cli_run_flow_over_fake(fake):
    """``dockyard run``'s sequence (create, attach, start, wait) and stream routing."""
    server, client = fake
    server.routes["POST /v1.41/containers/create"] = lambda h: h.send(201, {"Id": "c" * 64, "Warnings": []})
    server.routes[f"POST /v1.41/containers/{'c' * 64}/attach"] = _upgrade(
        101, "UPGRADED", [frame(1, b"to stdout\n"), frame(2, b"to stderr\n")])
    server.routes[f"POST /v1.41/containers/{'c' * 64}/start"] = lambda h: h.send(204)
    server.routes[f"POST /v1.41/containers/{'c' * 64}/wait"] = lambda h: h.send(200, {"StatusCode": 7})
    res = subprocess.run([sys.executable, "-c", RUN_SCRIPT, "-H", client.host, "run", "--name", "x",
                          "busybox", "sh", "-c", "exit 7"], capture_output=True, timeout=30)
    assert res.returncode == 7, res.stderr
    assert res.stdout == b"to stdout\n" and res.stderr == b"to stderr\n"
    steps = [(m, p.split("?")[0].replace("c" * 64, "ID")) for m, p, _, _ in server.requests]
    assert steps == [("POST", "/v1.41/containers/create"), ("POST", "/v1.41/containers/ID/attach"),
                     ("POST", "/v1.41/containers/ID/start"), ("POST", "/v1.41/containers/ID/wait")]


def test_cli_reports_daemon_errors(fake):
    server, client = fake
    server.routes["POST /v1.41/containers/create"] = lambda h: h.send(404, {"message": "No such image: nope:latest"})
    server.routes["POST /v1.41/containers/gone/stop"] = lambda h: h.send(404, {"message": "No such container: gone"})
    res = subprocess.run([sys.executable, "-c", RUN_SCRIPT, "-H", client.host, "run", "--pull", "never", "nope"],
                         capture_output=True, timeout=30)
    assert res.returncode == 125
    assert res.stderr.decode().strip() == "Error response from daemon: No such image: nope:latest"
    res = subprocess.run([sys.executable, "-c", RUN_SCRIPT, "-H", client.host, "stop", "gone"],
                         capture_output=True, timeout=30)
    assert res.returncode == 1 and b"Error response from daemon: No such container: gone" in res.stderr
