"""The registry transport (urllib3 under our own errors) against small local HTTP(S)
servers: keep-alive pooling, Retry-After and the one backoff policy, redirects
that keep ``Authorization`` on the registry's host and drop it on the way to
another, TLS from ``certs.d`` (a private CA, a client certificate pair), and every
network failure as a registry error, never an OSError or a urllib3 exception.

The servers stand in for a registry ONLY to test how the transport speaks HTTP;
pulls and pushes against a real registry are tests/integration/test_registry*.py.
"""

import email.utils
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dockyard.registry.errors import PullCancelled, RegistryUnavailable, RegistryUnreachable, TLSFailure
from dockyard.registry.retry import Backoff
from dockyard.registry.transport import Endpoint, Transport, raise_for
from dockyard.testing.registry import make_ca, make_server_cert


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _handle(self):
        server = self.server
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        server.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                            "peer": self.client_address[1], "time": time.monotonic(), "body": body})
        route = server.routes.get(self.path.split("?")[0])
        if route is None:
            return self.answer(404, b"no such path")
        route(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _handle

    def answer(self, status, body=b"", headers=(), length=None):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class Server:
    """A threaded HTTP/1.1 server on ``host`` (``tls``: an ``ssl.SSLContext``)."""

    def __init__(self, host="127.0.0.1", tls=None):
        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.routes, self.httpd.seen = {}, []
        self.port = self.httpd.server_address[1]
        self.routes, self.seen = self.httpd.routes, self.httpd.seen
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    made = []

    def make(host="127.0.0.1", tls=None):
        made.append(Server(host, tls))
        return made[-1]
    yield make
    for s in made:
        s.stop()


class Recorder:
    """A listener that records the retries and waits for real."""

    def __init__(self):
        self.calls = []

    def retrying(self, attempt, delay, reason):
        self.calls.append((attempt, delay, reason))

    def wait(self, delay):
        time.sleep(delay)


def transport(host, backoff=None, insecure=True, certs_dir=()):
    """A transport to ``host``; ``insecure``: settled on plain HTTP, as the ping
    settles an insecure registry that does not speak TLS."""
    endpoint = Endpoint(host, insecure=insecure, certs_dir=certs_dir)
    if insecure:
        endpoint.to_plain()
    return Transport(endpoint, backoff or Backoff(factor=0.01))


def sequence(*answers):
    """A route answering ``(status, body, headers)`` in turn, the last one for ever after."""
    answers = list(answers)

    def route(h):
        status, body, headers = answers.pop(0) if len(answers) > 1 else answers[0]
        h.answer(status, body, headers)
    return route


def test_keep_alive_connections_are_pooled(server):
    s = server()
    s.routes["/v2/"] = sequence((200, b"{}", ()))
    t = transport(f"127.0.0.1:{s.port}")
    for _ in range(3):
        with t.request("GET", t.endpoint.url("/v2/")) as resp:
            assert resp.status == 200 and resp.read_all() == b"{}"
    t.request("HEAD", t.endpoint.url("/v2/")).close()
    t.close()
    assert len(s.seen) == 4 and len({r["peer"] for r in s.seen}) == 1  # one connection, reused
    assert s.seen[0]["headers"]["User-Agent"] == "dockyard"


def test_a_body_left_unread_drops_its_connection_not_the_next_request(server):
    s = server()
    s.routes["/big"] = sequence((200, b"x" * (1 << 20), ()))
    t = transport(f"127.0.0.1:{s.port}")
    resp = t.request("GET", t.endpoint.url("/big"))
    assert resp.read(10) == b"x" * 10
    resp.close()
    with t.request("GET", t.endpoint.url("/big")) as again:
        assert len(again.read_all()) == 1 << 20
    assert len({r["peer"] for r in s.seen}) == 2


def test_retry_after_is_honoured(server):
    s = server()
    s.routes["/blob"] = sequence((503, b"busy", [("Retry-After", "1")]), (200, b"done", ()))
    rec = Recorder()
    t = transport(f"127.0.0.1:{s.port}", Backoff(factor=0.05))
    with t.request("GET", t.endpoint.url("/blob"), listener=rec) as resp:
        assert resp.status == 200 and resp.read_all() == b"done"
    assert rec.calls == [(1, 1.0, "the registry answered 503")]  # not the 0.05 s backoff
    assert s.seen[1]["time"] - s.seen[0]["time"] >= 0.95


def test_retry_after_as_a_date_and_capped(server):
    s = server()
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    s.routes["/date"] = sequence((429, b"", [("Retry-After", when)]), (200, b"", ()))
    s.routes["/long"] = sequence((503, b"", [("Retry-After", "3600")]), (200, b"", ()))
    s.routes["/junk"] = sequence((503, b"", [("Retry-After", "soon")]), (200, b"", ()))
    rec = Recorder()
    t = transport(f"127.0.0.1:{s.port}", Backoff(factor=0.05, retry_after_cap=0.3))
    for path in ("/date", "/long", "/junk"):
        t.request("GET", t.endpoint.url(path), listener=rec).close()
    delays = [d for _, d, _ in rec.calls]
    assert delays[:2] == [0.3, 0.3]  # 30 s and an hour, both capped
    assert 0.04 <= delays[2] <= 0.06  # an unreadable Retry-After: our own backoff


def test_backoff_doubles_and_spent_retries_return_the_last_answer(server):
    s = server()
    s.routes["/fail"] = sequence((500, b'{"errors":[{"code":"UNKNOWN","message":"boom"}]}', ()))
    rec = Recorder()
    t = transport(f"127.0.0.1:{s.port}", Backoff(retries=3, factor=0.05))
    resp = t.request("GET", t.endpoint.url("/fail"), listener=rec)
    assert resp.status == 500 and len(s.seen) == 4
    assert [a for a, _, _ in rec.calls] == [1, 2, 3]
    for (_, delay, _), want in zip(rec.calls, (0.05, 0.1, 0.2)):
        assert want * 0.9 <= delay <= want * 1.1
    with pytest.raises(RegistryUnavailable, match="after retries.*boom"):
        raise_for(resp, "blob x")


def test_what_must_not_be_repeated_is_sent_once(server):
    s = server()
    s.routes["/upload"] = sequence((503, b"", ()), (202, b"", ()))
    t = transport(f"127.0.0.1:{s.port}")
    resp = t.request("PATCH", t.endpoint.url("/upload"), {"Content-Length": "3"}, b"abc", retry=False)
    assert resp.status == 503 and len(s.seen) == 1
    resp.close()
    resp = t.request("POST", t.endpoint.url("/upload"), {"Content-Length": "0"}, b"")  # retried: any method
    assert resp.status == 202 and len(s.seen) == 2


def test_one_policy_paces_requests_and_restarts_alike():
    policy = Backoff(retries=2, factor=0.5, cap=0.8)
    assert [round(policy.delay(n) / d, 1) <= 1.1 for n, d in ((1, 0.5), (2, 1.0), (3, 0.8))] == [True] * 3
    rec = Recorder()
    rec.wait = lambda delay: None
    assert policy.pause(1, "lost", rec) and policy.pause(2, "lost", rec)
    assert not policy.pause(3, "lost", rec) and [a for a, _, _ in rec.calls] == [1, 2]


def test_a_cancel_while_waiting_stops_the_request(server):
    s = server()
    s.routes["/blob"] = sequence((503, b"", ()))

    class Cancelled(Recorder):
        def wait(self, delay):
            raise PullCancelled("pull cancelled")

    t = transport(f"127.0.0.1:{s.port}")
    with pytest.raises(PullCancelled):
        t.request("GET", t.endpoint.url("/blob"), listener=Cancelled())
    assert len(s.seen) == 1


def test_authorization_stays_on_the_registry_host_through_redirects(server):
    registry, storage = server("127.0.0.1"), server("127.0.0.1")
    blob = b"layer bytes" * 100
    storage.routes["/store/blob"] = lambda h: h.answer(206, blob[5:], [("Content-Range", f"bytes 5-{len(blob) - 1}")])
    registry.routes["/v2/r/blobs/sha256:a"] = sequence(
        (307, b"", [("Location", f"http://localhost:{storage.port}/store/blob?sig=1")]))
    registry.routes["/v2/r/blobs/sha256:b"] = sequence((302, b"", [("Location", "/v2/r/blobs/moved")]))
    registry.routes["/v2/r/blobs/moved"] = sequence((200, b"same host", ()))
    t = transport(f"127.0.0.1:{registry.port}")
    secret = {"Authorization": "Bearer s3cret", "Range": "bytes=5-"}
    with t.request("GET", t.endpoint.url("/v2/r/blobs/sha256:a"), secret) as resp:
        assert resp.status == 206 and resp.read_all() == blob[5:]
    got = storage.seen[0]["headers"]
    assert "Authorization" not in got and got["Range"] == "bytes=5-"  # to another host: no credentials
    with t.request("GET", t.endpoint.url("/v2/r/blobs/sha256:b"), secret) as resp:
        assert resp.read_all() == b"same host"
    assert [r["headers"].get("Authorization") for r in registry.seen] == ["Bearer s3cret"] * 3
    resp = t.request("PUT", t.endpoint.url("/v2/r/blobs/sha256:a"), {"Content-Length": "0"}, b"")
    assert resp.status == 307 and len(storage.seen) == 1  # only GET and HEAD follow a redirect


def test_network_failures_are_registry_errors(server):
    with __import__("socket").socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    rec = Recorder()
    t = transport(f"127.0.0.1:{port}", Backoff(retries=2, factor=0.01))
    with pytest.raises(RegistryUnreachable, match=f"GET http://127.0.0.1:{port}/v2/: connection refused"):
        t.request("GET", t.endpoint.url("/v2/"), listener=rec)
    assert len(rec.calls) == 2

    s = server()
    s.routes["/cut"] = lambda h: (h.answer(200, b"0123456789", length=100), setattr(h, "close_connection", True))
    t = transport(f"127.0.0.1:{s.port}")
    resp = t.request("GET", t.endpoint.url("/cut"))
    with pytest.raises(RegistryUnreachable, match="lost while reading: .*answer cut short"):
        resp.read_all()


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_crt, ca_key = make_ca(d)
    crt, key = make_server_cert(d, ca_crt, ca_key)
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=dockyard-client", "-keyout", d / "client.key",
            "-out", d / "client.csr")
    openssl("x509", "-req", "-in", d / "client.csr", "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
            "-extfile", d / "client.ext", "-out", d / "client.cert")
    return d, ca_crt, crt, key


def test_tls_from_certs_d_with_a_client_certificate(server, pki, tmp_path):
    d, ca_crt, crt, key = pki
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    ctx.load_verify_locations(ca_crt)
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no client certificate, no answer
    s = server(tls=ctx)
    s.routes["/v2/"] = sequence((200, b"{}", ()))
    host = f"127.0.0.1:{s.port}"
    certs = tmp_path / "certs.d"
    (certs / host).mkdir(parents=True)
    (certs / host / "ca.crt").write_bytes(ca_crt.read_bytes())
    t = transport(host, Backoff(retries=0), insecure=False, certs_dir=[str(certs)])
    with pytest.raises(TLSFailure, match=f"{host}: TLS failed"):  # the CA, but no client certificate yet
        t.request("GET", t.endpoint.url("/v2/"))
    (certs / host / "client.cert").write_bytes((d / "client.cert").read_bytes())
    (certs / host / "client.key").write_bytes((d / "client.key").read_bytes())
    t = transport(host, insecure=False, certs_dir=[str(certs)])
    with t.request("GET", t.endpoint.url("/v2/")) as resp:
        assert resp.status == 200 and resp.read_all() == b"{}"
    t = transport(host, insecure=False, certs_dir=[str(tmp_path / "empty")])
    with pytest.raises(TLSFailure, match=f"certificate refused.*{host}/ca.crt"):
        t.request("GET", t.endpoint.url("/v2/"))


def test_https_to_a_plain_http_registry_is_refused_not_downgraded(server):
    s = server()
    s.routes["/v2/"] = sequence((200, b"{}", ()))
    t = transport(f"127.0.0.1:{s.port}", insecure=False, certs_dir=[])
    with pytest.raises(TLSFailure, match="does not speak TLS.*--insecure-registry 127.0.0.1"):
        t.request("GET", t.endpoint.url("/v2/"))
    assert all(r["path"] != "/v2/" for r in s.seen)  # nothing went over plain HTTP
