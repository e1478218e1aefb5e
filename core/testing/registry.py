"""Real registry servers for tests: Debian's ``docker-registry`` (distribution 2.8)
on 127.0.0.1 (or ``ip``, e.g. :func:`off_loopback_ip`), plain, with htpasswd basic auth, with bearer tokens, behind TLS.

    reg = RegistryServer(tmp, auth="htpasswd", users={"alice": "secret"}, tls=True).start()
    reg.host          # "127.0.0.1:41234"
    reg.ca            # the CA certificate a TLS registry's certificate is signed by
    reg.stop()        # the process is gone and its port free

``auth="token"`` runs a small token server (the distribution spec's bearer flow:
``GET /token?service=..&scope=..`` with basic credentials, or none for an
anonymous pull when ``anonymous_pull``) that signs RS256 JWTs the registry
verifies against its certificate; ``token_requests`` counts what it served.
Certificates come from the ``openssl`` command (Debian's ``openssl``).

:class:`FaultProxy` stands in front of a plain registry, records every request
(to prove a HEAD skipped a blob or a mount happened) and injects faults (500s,
corrupted, cut or short bodies, slow answers) on chosen paths.  Crafting images
and talking to a registry directly: :mod:`dockyard.testing.registry_content`.
"""

import base64
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


def free_port(ip="127.0.0.1"):
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


#: the loopback-alias addresses this process holds, and how many holders each has
_ALIASES: dict[str, int] = {}
_ALIAS_LOCK = threading.Lock()


def off_loopback_ip():
    """An address outside 127.0.0.0/8 that a registry can listen on while every
    packet stays on this host: one of 198.18.0.0/15 (RFC 2544's benchmarking range,
    never routed), picked by this process's pid so two test sessions don't share one,
    and put on the ``lo`` interface by :func:`hold_loopback_alias`.  A registry
    there is not insecure by default (as a registry on 127/8 is, in dockerd and
    here), yet the tests send no traffic off loopback."""
    pid = os.getpid()
    return f"198.18.{(pid >> 8) & 0xFF}.{(pid & 0xFF) or 1}"


def hold_loopback_alias(ip):
    """Put ``ip`` on ``lo`` (once per process, however many hold it)."""
    with _ALIAS_LOCK:
        if not _ALIASES.get(ip):
            subprocess.run(["ip", "addr", "replace", f"{ip}/32", "dev", "lo"], check=True, capture_output=True)
        _ALIASES[ip] = _ALIASES.get(ip, 0) + 1


def release_loopback_alias(ip):
    """Undo one :func:`hold_loopback_alias`; the last takes the address off ``lo``."""
    with _ALIAS_LOCK:
        _ALIASES[ip] -= 1
        if not _ALIASES[ip]:
            del _ALIASES[ip]
            subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", "lo"], capture_output=True)


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_ca(directory, name="dockyard-test-ca"):
    """A self-signed CA: ``(cert path, key path)``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key, crt = d / "ca.key", d / "ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                    "-keyout", key, "-out", crt, "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"], check=True, capture_output=True)
    return crt, key


def make_server_cert(directory, ca_crt, ca_key, ip="127.0.0.1"):
    """A certificate for ``ip`` signed by the CA: ``(cert path, key path)``."""
    d = Path(directory)
    key, csr, crt, ext = d / "server.key", d / "server.csr", d / "server.crt", d / "server.ext"
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={ip}", "-keyout", key,
                    "-out", csr], check=True, capture_output=True)
    ext.write_text(f"subjectAltName=IP:{ip},DNS:localhost\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
                    "-days", "2", "-extfile", ext, "-out", crt], check=True, capture_output=True)
    return crt, key


class _TokenHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (http.server's name)
        server = self.server.owner
        query = parse_qs(urlsplit(self.path).query)
        user = None
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if server.users.get(user) != password:
                return self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
        access = []
        for sc in query.get("scope", []):
            kind, _, rest = sc.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = [a for a in actions.split(",") if user or (server.anonymous_pull and a == "pull")]
            access.append({"type": kind, "name": name, "actions": allowed})
        if user is None and not server.anonymous_pull:
            return self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "credentials required"}]})
        server.token_requests += 1
        self._answer(200, {"token": server.sign(user or "", access), "expires_in": 300})

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class RegistryServer:
    """One ``docker-registry`` process with its own storage, config and port."""

    def __init__(self, base, auth=None, users=None, tls=False, anonymous_pull=False, ip="127.0.0.1"):
        if auth not in (None, "htpasswd", "token"):
            raise ValueError(f"auth {auth!r}: None, 'htpasswd' or 'token'")
        self.base = Path(base)
        self.auth, self.tls, self.anonymous_pull = auth, tls, anonymous_pull
        self.users = dict(users or {"tester": "s3cret-pass"})
        self.ip = ip
        self.port = free_port(ip)
        self.host = f"{ip}:{self.port}"
        self.ca = None
        self.proc = None
        self.token_requests = 0
        self._token_server = None
        self.log = self.base / "registry.log"

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def _config(self):
        cfg = {
            "version": 0.1, "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.base / "storage")}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": "dockyard-test"},
        }
        if self.tls:
            ca_crt, ca_key = make_ca(self.base / "tls")
            crt, key = make_server_cert(self.base / "tls", ca_crt, ca_key, self.ip)
            self.ca = ca_crt
            cfg["http"]["tls"] = {"certificate": str(crt), "key": str(key)}
        if self.auth == "htpasswd":
            lines = [subprocess.run(["htpasswd", "-Bbn", u, p], check=True, capture_output=True, text=True)
                     .stdout.strip() for u, p in self.users.items()]
            (self.base / "htpasswd").write_text("\n".join(lines) + "\n")
            cfg["auth"] = {"htpasswd": {"realm": "dockyard-test", "path": str(self.base / "htpasswd")}}
        elif self.auth == "token":
            cfg["auth"] = {"token": self._start_token_server()}
        return cfg

    def _start_token_server(self):
        d = self.base / "token"
        crt, key = make_ca(d, "dockyard-test-token-issuer")
        self._signing_key, self._cert_der = key, subprocess.run(
            ["openssl", "x509", "-in", crt, "-outform", "DER"], check=True, capture_output=True).stdout
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
        httpd.owner = self
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        self._token_server = httpd
        return {"realm": f"http://127.0.0.1:{httpd.server_address[1]}/token", "service": "dockyard-test-registry",
                "issuer": "dockyard-test-issuer", "rootcertbundle": str(crt)}

    def sign(self, subject, access):
        """An RS256 JWT the registry accepts (its x5c names the issuer's certificate)."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._cert_der).decode()]}
        claims = {"iss": "dockyard-test-issuer", "sub": subject, "aud": "dockyard-test-registry",
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self._signing_key)], input=signing_input,
                             check=True, capture_output=True).stdout
        return f"{signing_input.decode()}.{_b64(sig)}"

    def start(self, timeout=20):
        self.base.mkdir(parents=True, exist_ok=True)
        config = self.base / "config.yml"
        config.write_text(json.dumps(self._config()))  # YAML is a superset of JSON
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with socket.create_connection((self.ip, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not listen in {timeout}s:\n{self.log.read_text()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._token_server is not None:
            self._token_server.shutdown()
            self._token_server.server_close()
            self._token_server = None

    def catalog(self, repo=None):
        """The registry's own view, read over plain HTTP(S) with the first user: the
        catalog, or ``repo``'s tags."""
        path = f"/v2/{repo}/tags/list" if repo else "/v2/_catalog"
        req = urllib.request.Request(self.url + path)
        if self.auth == "htpasswd":
            user, password = next(iter(self.users.items()))
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.ca)) if self.tls else None
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return json.load(resp)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --- a recording, fault-injecting proxy ------------------------------------------------------------
class Fault:
    """What a :class:`FaultProxy` does to requests matching ``method`` and the regex
    ``path`` (searched in the path with its query), for the next ``times`` matches
    (None: all).  ``action``:

    ``"status"``    answer ``status`` (default 500) without asking the registry
    ``"corrupt"``   forward, flip one byte of the body (at ``at``, default the middle)
    ``"cut"``       forward, send the first ``at`` bytes (default half) under the full
                    Content-Length, then drop the connection (a connection lost mid-blob)
    ``"short"``     forward, send the first ``at`` bytes as the whole answer
    ``"slow"``      forward, sleeping ``delay`` seconds after each ``chunk`` bytes
    ``"redirect"``  answer ``status`` (default 307) to ``location`` (``{path}``: the request's)

    ``headers``: more headers for a ``"status"`` or ``"redirect"`` answer (``Retry-After``).
    """

    def __init__(self, path, action="status", method=None, times=None, status=None, at=None, delay=0.05,
                 chunk=64 << 10, headers=None, location=None):
        import re

        if action not in ("status", "corrupt", "cut", "short", "slow", "redirect"):
            raise ValueError(f"unknown fault action {action!r}")
        self.path, self.action, self.method, self.times = re.compile(path), action, method, times
        self.status = status or (307 if action == "redirect" else 500)
        self.at, self.delay, self.chunk = at, delay, chunk
        self.headers, self.location = dict(headers or {}), location
        self.hits = 0

    def matches(self, method, path):
        if self.method and self.method != method:
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        return bool(self.path.search(path))


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if not size:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self):
        proxy = self.server.owner
        started = time.monotonic()
        body = self._body()
        fault = proxy._match(self.command, self.path)
        if fault is not None and fault.action in ("status", "redirect"):
            data = json.dumps({"errors": [{"code": "UNKNOWN", "message": "injected fault"}]}).encode()
            proxy._record(self.command, self.path, fault.status, self.headers, len(body), started)
            self.send_response(fault.status)
            for k, v in fault.headers.items():
                self.send_header(k, v)
            if fault.action == "redirect":
                self.send_header("Location", fault.location.format(path=self.path))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        import http.client

        conn = http.client.HTTPConnection(proxy.target_host, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read() if self.command != "HEAD" else b""
        finally:
            conn.close()
        record = proxy._record(self.command, self.path, resp.status, self.headers, len(body), started)
        length = int(resp.headers.get("Content-Length") or len(data)) if self.command == "HEAD" else len(data)
        if fault is not None and fault.action == "corrupt" and data:
            at = fault.at if fault.at is not None else len(data) // 2
            data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
        send = data
        if fault is not None and fault.action in ("cut", "short"):
            send = data[:fault.at if fault.at is not None else len(data) // 2]
            if fault.action == "short":
                length = len(send)
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        if fault is not None and fault.action == "cut":
            self.send_header("Connection", "close")
        self.end_headers()
        if fault is not None and fault.action == "slow":
            for i in range(0, len(send), fault.chunk):
                self.wfile.write(send[i:i + fault.chunk])
                self.wfile.flush()
                time.sleep(fault.delay)
        else:
            self.wfile.write(send)
        record["end"] = time.monotonic()
        if fault is not None and fault.action == "cut":
            self.wfile.flush()
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1 in front of a plain-HTTP registry: it records
    every request (``requests``: dicts of ``method``, ``path`` (with the query), ``status``,
the request's ``headers``, its body ``length``, ``start``/``end`` monotonic times) and applies the
    :class:`Fault` rules added with :meth:`add`.  The Host header is passed on, so the
    registry's Location headers point back at the proxy.

        proxy = FaultProxy(reg.host).start()
        proxy.add(Fault(r"/blobs/sha256:", "cut", method="GET", times=1))
        ... pull from proxy.host ...
        proxy.stop()
    """

    def __init__(self, target_host):
        self.target_host = target_host
        self.requests, self.faults = [], []
        self._lock = threading.Lock()
        self._httpd = None
        self.host = None

    @property
    def url(self):
        return f"http://{self.host}"

    def start(self):
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self
        self.host = f"127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def add(self, fault):
        with self._lock:
            self.faults.append(fault)
        return fault

    def reset(self):
        """Forget the faults and the recorded requests."""
        with self._lock:
            self.faults.clear()
            self.requests.clear()

    def seen(self, method=None, contains=""):
        """The recorded requests with ``method`` whose path contains ``contains``."""
        with self._lock:
            return [r for r in self.requests if (method is None or r["method"] == method) and contains in r["path"]]

    def _match(self, method, path):
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def _record(self, method, path, status, headers, length, started):
        record = {"method": method, "path": path, "status": status, "headers": dict(headers.items()),
                  "length": length, "start": started, "end": time.monotonic()}
        with self._lock:
            self.requests.append(record)
        return record

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
