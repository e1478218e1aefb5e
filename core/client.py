"""A small Docker Engine API (v1.41) client on the standard library alone.

The ``dockyard`` CLI speaks to the daemon only through this module; it sits at the
bottom of the import graph and imports nothing from the rest of Dockyard.

Errors, as a tree::

    ClientError                        anything this module raises on purpose
    ├── DaemonUnreachable (ConnectionError)
    │                                  nobody answers at the host (or no permission)
    ├── ProtocolError                  the daemon's answer could not be understood
    └── APIError                       the daemon answered with an error
        ├── NotFound                   ... with status 404
        └── ProgressError              ... inside a 200 progress stream (``{"error": ...}``)

Every request path is sent versioned (``/v1.41/...``).  Each request uses its own
connection, so a long-lived stream (``logs -f``, ``attach``, a pending ``wait``)
never blocks other requests made meanwhile.
"""

import codecs
import http.client
import json
import os
import socket
import sys
import urllib.parse

API_VERSION = "1.41"
DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
_CHUNK = 65536


class ClientError(Exception):
    """Base of every error this module raises on purpose."""


class DaemonUnreachable(ClientError, ConnectionError):
    """No daemon answers at ``host`` (socket missing, refused, or not permitted)."""

    def __init__(self, host, cause):
        self.host = host
        self.cause = cause
        if isinstance(cause, PermissionError):
            msg = (f"permission denied while trying to connect to the Dockyard daemon "
                   f"socket at {host}: {cause.strerror or cause}")
        else:
            msg = f"Cannot connect to the Dockyard daemon at {host}. Is the dockyard daemon running?"
        super().__init__(msg)


class ProtocolError(ClientError):
    """The daemon's answer was malformed or cut short."""


class APIError(ClientError):
    """The daemon answered ``status`` with Docker's error body ``{"message": ...}``."""

    def __init__(self, status, message):
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


class NotFound(APIError, LookupError):
    """The daemon answered 404 (no such container, image, ...)."""


class ProgressError(APIError):
    """An ``{"error": ...}`` message inside a progress stream whose HTTP status was 2xx."""


def api_error(status, body, reason=""):
    """Build the right APIError from an error response's raw ``body``."""
    message = None
    text = body.decode("utf-8", "replace").strip() if isinstance(body, bytes) else str(body or "")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("message") is not None:
        message = str(parsed["message"])
    if message is None:
        message = text or reason or f"HTTP {status}"
    return (NotFound if status == 404 else APIError)(status, message)


def parse_host(host):
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


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=None):
        super().__init__("localhost", timeout=timeout, blocksize=_CHUNK)
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _read_exact(read, n):
    """Read exactly ``n`` bytes with ``read`` (fewer only at end of stream)."""
    parts, got = [], 0
    while got < n:
        data = read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def demux(read_exact, read_some, tty):
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


def _json_objects(read_some):
    """Yield each JSON value of a stream of concatenated (usually newline-separated) JSON."""
    decoder = json.JSONDecoder()
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
                obj, end = decoder.raw_decode(buf)
            except ValueError:
                break
            buf = buf[end:]
            yield obj
        if not data:
            if buf.strip():
                raise ProtocolError(f"JSON stream ended mid-message: {buf[:80]!r}")
            return


class _SocketReader:
    """Buffered reading from a raw socket, starting with bytes already received."""

    def __init__(self, sock, initial=b""):
        self._sock = sock
        self._buf = bytearray(initial)

    def read_some(self, n=_CHUNK):
        if self._buf:
            data = bytes(self._buf[:n])
            del self._buf[:n]
            return data
        return self._sock.recv(n)

    def read_exact(self, n):
        return _read_exact(self.read_some, n)

    def read_until(self, marker, limit=65536):
        while marker not in self._buf:
            if len(self._buf) > limit:
                raise ProtocolError("response headers too long")
            data = self._sock.recv(_CHUNK)
            if not data:
                raise ProtocolError("connection closed before the response headers ended")
            self._buf += data
        idx = self._buf.index(marker) + len(marker)
        head = bytes(self._buf[:idx])
        del self._buf[:idx]
        return head

    def read_all(self):
        parts = []
        while data := self.read_some():
            parts.append(data)
        return b"".join(parts)


class _ChunkedReader:
    """Decode HTTP/1.1 chunked transfer-encoding from a _SocketReader."""

    def __init__(self, reader):
        self._reader = reader
        self._left = 0
        self._done = False

    def read_some(self, n=_CHUNK):
        if self._done:
            return b""
        if self._left == 0:
            line = self._reader.read_until(b"\r\n")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                self._done = True
                return b""
            self._left = size
        data = self._reader.read_some(min(n, self._left))
        if not data:
            raise ProtocolError("connection closed inside a chunk")
        self._left -= len(data)
        if self._left == 0:
            self._reader.read_exact(2)  # CRLF after the chunk
        return data

    def read_exact(self, n):
        return _read_exact(self.read_some, n)

    def read_all(self):
        parts = []
        while data := self.read_some():
            parts.append(data)
        return b"".join(parts)


class Attachment:
    """A hijacked attach connection: ``frames()`` to read, ``send()`` for stdin.

    It lives on its own socket, so other requests can be made while it is open.
    """

    def __init__(self, sock, reader, tty):
        self.sock = sock
        self.tty = tty
        self._reader = reader

    def frames(self):
        """Yield ``(stream, bytes)`` until the container closes its output."""
        return demux(self._reader.read_exact, self._reader.read_some, self.tty)

    def send(self, data):
        self.sock.sendall(data)

    def close_stdin(self):
        """Half-close: the container sees end of file on its stdin."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PendingWait:
    """A ``POST /containers/{id}/wait`` already sent; ``result()`` blocks for the answer."""

    def __init__(self, client, conn):
        self._client = client
        self._conn = conn

    def result(self):
        try:
            return self._client._decode(_read_body(self._client._response(self._conn)))
        finally:
            self._conn.close()

    def close(self):
        self._conn.close()


class Client:
    """Docker Engine API client for ``host`` (``unix://PATH``, ``tcp://HOST:PORT``)."""

    def __init__(self, host=DEFAULT_HOST, timeout=None, debug=False):
        self.host = host
        self.kind, self.address = parse_host(host)
        self.timeout = timeout
        self.debug = debug

    # --- plumbing -----------------------------------------------------------------

    def _url(self, path, params=None):
        url = f"/v{API_VERSION}{path}"
        if params:
            clean = {k: v for k, v in params.items() if v is not None}
            for k, v in clean.items():
                if isinstance(v, bool):
                    clean[k] = "1" if v else "0"
            if clean:
                url += "?" + urllib.parse.urlencode(clean, doseq=True)
        return url

    def _connection(self, timeout=None):
        timeout = timeout if timeout is not None else self.timeout
        if self.kind == "unix":
            conn = _UnixConnection(self.address, timeout=timeout)
        else:
            conn = http.client.HTTPConnection(*self.address, timeout=timeout, blocksize=_CHUNK)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise DaemonUnreachable(self.host, exc) from exc
        return conn

    def _raw_socket(self, timeout=None):
        if self.kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address = self.address
        else:
            sock, address = None, self.address
        try:
            if sock is None:
                sock = socket.create_connection(address, timeout=timeout)
            else:
                sock.settimeout(timeout)
                sock.connect(address)
        except OSError as exc:
            if sock is not None:
                sock.close()
            raise DaemonUnreachable(self.host, exc) from exc
        sock.settimeout(None)
        return sock

    def _send(self, method, path, params=None, body=None, headers=None, timeout=None):
        """Send one request on a fresh connection; return the connection."""
        url = self._url(path, params)
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if self.debug:
            print(f"dockyard: --> {method} {url}", file=sys.stderr)
        conn = self._connection(timeout)
        try:
            conn.request(method, url, body=body, headers=hdrs)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The daemon may have refused the upload early and closed its side:
            # its answer (read by the caller) explains why.
            conn._send_error = exc
        except OSError as exc:
            conn.close()
            raise ProtocolError(f"sending {method} {path} failed: {exc}") from exc
        return conn

    def _response(self, conn):
        """Read the response head; raise APIError for a 4xx/5xx answer."""
        try:
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            cause = getattr(conn, "_send_error", None) or exc
            raise ProtocolError(f"no valid answer from the daemon: {cause}") from exc
        if self.debug:
            print(f"dockyard: <-- {resp.status} {resp.reason}", file=sys.stderr)
        if resp.status >= 400:
            try:
                body = resp.read()
            except (OSError, http.client.HTTPException):
                body = b""
            conn.close()
            raise api_error(resp.status, body, resp.reason)
        return resp

    @staticmethod
    def _decode(data):
        if not data:
            return None
        text = data.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            return text

    def request(self, method, path, params=None, body=None, headers=None, timeout=None):
        """One request; returns the parsed JSON answer (text if not JSON, None if empty)."""
        conn = self._send(method, path, params, body, headers, timeout)
        try:
            return self._decode(_read_body(self._response(conn)))
        finally:
            conn.close()

    def stream(self, method, path, params=None, body=None, headers=None):
        """Send a request; return ``(response, connection)`` for the caller to read and close."""
        conn = self._send(method, path, params, body, headers)
        return self._response(conn), conn

    def json_stream(self, method, path, params=None, body=None, headers=None):
        """Yield each JSON message of a streaming answer; an ``error`` message raises ProgressError."""
        resp, conn = self.stream(method, path, params, body, headers)
        try:
            for msg in _json_objects(resp.read1):
                if isinstance(msg, dict) and msg.get("error"):
                    detail = msg.get("errorDetail") or {}
                    raise ProgressError(resp.status, detail.get("message") or str(msg["error"]))
                yield msg
        except http.client.HTTPException as exc:
            raise ProtocolError(f"progress stream broken: {exc!r}") from exc
        finally:
            resp.close()
            conn.close()

    # --- system -------------------------------------------------------------------

    def ping(self, timeout=None):
        return self.request("GET", "/_ping", timeout=timeout)

    def version(self):
        return self.request("GET", "/version")

    def info(self):
        return self.request("GET", "/info")

    # --- containers -----------------------------------------------------------------

    def containers(self, all=False, filters=None, limit=None, size=False):
        params = {"all": all or None, "limit": limit, "size": size or None,
                  "filters": json.dumps(filters) if filters else None}
        return self.request("GET", "/containers/json", params)

    def create_container(self, body, name=None):
        return self.request("POST", "/containers/create", {"name": name}, body=body)

    def inspect_container(self, container):
        return self.request("GET", f"/containers/{_q(container)}/json")

    def start(self, container):
        return self.request("POST", f"/containers/{_q(container)}/start")

    def stop(self, container, timeout=None):
        return self.request("POST", f"/containers/{_q(container)}/stop", {"t": timeout})

    def kill(self, container, signal=None):
        return self.request("POST", f"/containers/{_q(container)}/kill", {"signal": signal})

    def remove_container(self, container, force=False, volumes=False):
        return self.request("DELETE", f"/containers/{_q(container)}",
                            {"force": force or None, "v": volumes or None})

    def resize(self, container, height, width):
        return self.request("POST", f"/containers/{_q(container)}/resize", {"h": height, "w": width})

    def wait_begin(self, container, condition=None, confirm_timeout=None):
        """Send the wait request now (so the daemon is watching) and answer later.

        Like Docker's, a daemon answers the headers as soon as it watches the
        container; with ``confirm_timeout`` we wait (at most that long) for the
        first answer bytes, so a following ``start`` cannot overtake the wait.
        """
        conn = self._send("POST", f"/containers/{_q(container)}/wait", {"condition": condition})
        if confirm_timeout and conn.sock is not None:
            try:
                conn.sock.settimeout(confirm_timeout)
                conn.sock.recv(1, socket.MSG_PEEK)
            except OSError:
                pass  # no early headers from this daemon: go on, the request is sent
            finally:
                conn.sock.settimeout(None)
        return PendingWait(self, conn)

    def wait(self, container, condition=None):
        """Block until the container meets ``condition`` (not-running, next-exit, removed).

        Returns ``{"StatusCode": int, "Error": {...} or None}``.
        """
        return self.wait_begin(container, condition).result()

    def logs(self, container, stdout=True, stderr=True, follow=False, tail=None,
             timestamps=False, since=None, until=None, tty=None):
        """Yield ``(stream, bytes)`` frames of the container's logs (forever with ``follow``)."""
        if tty is None:
            tty = bool(self.inspect_container(container).get("Config", {}).get("Tty"))
        params = {"stdout": stdout, "stderr": stderr, "follow": follow or None, "tail": tail,
                  "timestamps": timestamps or None, "since": since, "until": until}
        resp, conn = self.stream("GET", f"/containers/{_q(container)}/logs", params)

        def frames():
            try:
                yield from demux(lambda n: _read_exact(resp.read, n), lambda: resp.read1(_CHUNK), tty)
            except http.client.HTTPException as exc:
                raise ProtocolError(f"log stream broken: {exc!r}") from exc
            finally:
                resp.close()
                conn.close()
        return frames()

    def attach(self, container, stdin=False, stdout=True, stderr=True, logs=False, tty=None):
        """Hijack a connection for the container's streams; returns an Attachment.

        Sends ``Connection: Upgrade`` / ``Upgrade: tcp``; the daemon answers
        ``101 UPGRADED`` (or ``200 OK``) and then the raw or multiplexed stream.
        """
        if tty is None:
            tty = bool(self.inspect_container(container).get("Config", {}).get("Tty"))
        url = self._url(f"/containers/{_q(container)}/attach",
                        {"stream": True, "stdin": stdin, "stdout": stdout, "stderr": stderr,
                         "logs": logs or None})
        if self.debug:
            print(f"dockyard: --> POST {url} (upgrade)", file=sys.stderr)
        sock = self._raw_socket()
        try:
            sock.sendall(f"POST {url} HTTP/1.1\r\nHost: docker\r\nUser-Agent: dockyard\r\n"
                         "Content-Type: text/plain\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
                         .encode("latin-1"))
            reader = _SocketReader(sock)
            status, reason, headers = _parse_head(reader.read_until(b"\r\n\r\n"))
            if self.debug:
                print(f"dockyard: <-- {status} {reason}", file=sys.stderr)
            chunked = "chunked" in headers.get("transfer-encoding", "").lower()
            if status >= 400:
                if chunked:
                    body = _ChunkedReader(reader).read_all()
                elif "content-length" in headers:
                    body = reader.read_exact(int(headers["content-length"]))
                else:
                    body = reader.read_all()
                raise api_error(status, body, reason)
            if status not in (101, 200):
                raise ProtocolError(f"unexpected answer to attach: {status} {reason}")
            if status == 200 and chunked:
                reader = _ChunkedReader(reader)
        except BaseException:
            sock.close()
            raise
        return Attachment(sock, reader, tty)

    # --- images -------------------------------------------------------------------

    def images(self, all=False, filters=None):
        params = {"all": all or None, "filters": json.dumps(filters) if filters else None}
        return self.request("GET", "/images/json", params)

    def inspect_image(self, image):
        return self.request("GET", f"/images/{_q(image, safe='/:@')}/json")

    def remove_image(self, image, force=False, noprune=False):
        return self.request("DELETE", f"/images/{_q(image, safe='/:@')}",
                            {"force": force or None, "noprune": noprune or None})

    def import_image(self, source, repo=None, tag=None, changes=(), message=None):
        """Import a root file system tarball; yields the daemon's progress messages.

        ``source`` is a binary file object (sent with Content-Length when it is a
        regular file, chunked otherwise), bytes, or a URL string for the daemon to
        fetch.
        """
        params = {"repo": repo or None, "tag": tag or None, "changes": list(changes) or None,
                  "message": message or None}
        headers = {"Content-Type": "application/x-tar"}
        if isinstance(source, str):
            params["fromSrc"] = source
            body = None
        else:
            params["fromSrc"] = "-"
            body = source
            size = _regular_file_size(source)
            if size is not None:
                headers["Content-Length"] = str(size)
        return self.json_stream("POST", "/images/create", params, body=body, headers=headers)

    def pull(self, image, tag=None):
        """Pull ``image`` from a registry; yields the daemon's progress messages."""
        return self.json_stream("POST", "/images/create", {"fromImage": image, "tag": tag or None})


def _read_body(resp):
    try:
        return resp.read()
    except http.client.HTTPException as exc:
        raise ProtocolError(f"answer cut short: {exc!r}") from exc


def _q(name, safe=""):
    return urllib.parse.quote(str(name), safe=safe)


def _regular_file_size(fobj):
    try:
        st = os.fstat(fobj.fileno())
        pos = fobj.tell()
    except (AttributeError, OSError, ValueError):
        return None
    import stat
    if not stat.S_ISREG(st.st_mode):
        return None
    return max(st.st_size - pos, 0)


def _parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"malformed status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers
