"""A small Docker Engine API (v1.41) client on the standard library alone.

The ``dockyard`` CLI speaks to the daemon only through this module; it sits at the
bottom of the import graph and imports nothing from the rest of Dockyard but its
own wire level, :mod:`dockyard.wire`.

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
never blocks other requests made meanwhile.  The HTTP itself (and the stream
formats) live in :mod:`dockyard.wire`, kept off ``http.client`` for start-up speed.
"""

import json
import socket
import sys

from dockyard.wire import (  # noqa: F401  (parse_host, demux, STDOUT, ... are part of this API)
    STDERR, STDIN, STDOUT, SYSTEMERR, ClientError, Connection, ProtocolError, connect, demux,
    host_header, json_objects, parse_host, quote, urlencode)

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (the CLI's start-up)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from typing import Any

    from dockyard.wire import Readable, Response, _Reader

    Params = Mapping[str, Any] | None  # query parameters (``None`` values are left out)
    Headers = Mapping[str, str] | None

API_VERSION = "1.41"
DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"


class DaemonUnreachable(ClientError, ConnectionError):
    """No daemon answers at ``host`` (socket missing, refused, or not permitted)."""

    def __init__(self, host: str, cause: OSError) -> None:
        self.host = host
        self.cause = cause
        if isinstance(cause, PermissionError):
            msg = (f"permission denied while trying to connect to the Dockyard daemon "
                   f"socket at {host}: {cause.strerror or cause}")
        else:
            msg = f"Cannot connect to the Dockyard daemon at {host}. Is the dockyard daemon running?"
        super().__init__(msg)


class APIError(ClientError):
    """The daemon answered ``status`` with Docker's error body ``{"message": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


class NotFound(APIError, LookupError):
    """The daemon answered 404 (no such container, image, ...)."""


class ProgressError(APIError):
    """An ``{"error": ...}`` message inside a progress stream whose HTTP status was 2xx."""


def api_error(status: int, body: object, reason: str = "") -> APIError:
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


class Attachment:
    """A hijacked attach connection: ``frames()`` to read, ``send()`` for stdin.

    It lives on its own socket, so other requests can be made while it is open.
    """

    def __init__(self, sock: socket.socket, reader: "_Reader", tty: bool) -> None:
        self.sock = sock
        self.tty = tty
        self._reader = reader

    def frames(self) -> "Iterator[tuple[int, bytes]]":
        """Yield ``(stream, bytes)`` until the container closes its output."""
        return demux(self._reader.read_exact, self._reader.read_some, self.tty)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_stdin(self) -> None:
        """Half-close: the container sees end of file on its stdin."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Attachment":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PendingWait:
    """A ``POST /containers/{id}/wait`` already sent; ``result()`` blocks for the answer."""

    def __init__(self, client: "Client", conn: Connection) -> None:
        self._client = client
        self._conn = conn

    def result(self) -> "Any":
        return self._client._body(self._conn)

    def close(self) -> None:
        self._conn.close()


class Client:
    """Docker Engine API client for ``host`` (``unix://PATH``, ``tcp://HOST:PORT``)."""

    def __init__(self, host: str = DEFAULT_HOST, timeout: float | None = None, debug: bool = False) -> None:
        self.host = host
        self.kind, self.address = parse_host(host)
        self.timeout = timeout
        self.debug = debug

    # --- plumbing -----------------------------------------------------------------

    def _url(self, path: str, params: "Params" = None) -> str:
        url = f"/v{API_VERSION}{path}"
        if params:
            clean = {k: v for k, v in params.items() if v is not None}
            for k, v in clean.items():
                if isinstance(v, bool):
                    clean[k] = "1" if v else "0"
            if clean:
                url += "?" + urlencode(clean)
        return url

    def _connection(self, timeout: float | None = None) -> Connection:
        """A fresh connection to the daemon (DaemonUnreachable if nobody answers)."""
        try:
            sock = connect(self.kind, self.address, timeout if timeout is not None else self.timeout)
        except OSError as exc:
            raise DaemonUnreachable(self.host, exc) from exc
        return Connection(sock)

    def _headers(self, headers: "Headers") -> dict[str, str]:
        return {"Host": host_header(self.kind, self.address), "User-Agent": "dockyard", **(headers or {})}

    def _send(self, method: str, path: str, params: "Params" = None, body: "Any" = None,
              headers: "Headers" = None, timeout: float | None = None) -> Connection:
        """Send one request on a fresh connection; return the connection."""
        url = self._url(path, params)
        hdrs = self._headers(headers)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if self.debug:
            print(f"dockyard: --> {method} {url}", file=sys.stderr)
        conn = self._connection(timeout)
        try:
            conn.send(method, url, hdrs, body)
        except OSError as exc:
            conn.close()
            raise ProtocolError(f"sending {method} {path} failed: {exc}") from exc
        return conn

    def _response(self, conn: Connection) -> "Response":
        """Read the response head; raise APIError for a 4xx/5xx answer."""
        try:
            resp = conn.response()
        except ProtocolError:
            conn.close()
            raise
        if self.debug:
            print(f"dockyard: <-- {resp.status} {resp.reason}", file=sys.stderr)
        if resp.status >= 400:
            try:
                body = resp.read_all()
            except (OSError, ProtocolError):
                body = b""
            conn.close()
            raise api_error(resp.status, body, resp.reason)
        return resp

    def _body(self, conn: Connection) -> "Any":
        """The whole body of the answer on ``conn``, decoded; the connection is closed."""
        try:
            return self._decode(self._response(conn).read_all())
        except OSError as exc:
            raise ProtocolError(f"answer cut short: {exc}") from exc
        finally:
            conn.close()

    @staticmethod
    def _decode(data: bytes) -> "Any":
        if not data:
            return None
        text = data.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            return text

    def request(self, method: str, path: str, params: "Params" = None, body: "Any" = None,
                headers: "Headers" = None, timeout: float | None = None) -> "Any":
        """One request; returns the parsed JSON answer (text if not JSON, None if empty)."""
        return self._body(self._send(method, path, params, body, headers, timeout))

    def stream(self, method: str, path: str, params: "Params" = None, body: "Any" = None,
               headers: "Headers" = None) -> "tuple[Response, Connection]":
        """Send a request; return ``(response, connection)`` for the caller to read and close."""
        conn = self._send(method, path, params, body, headers)
        return self._response(conn), conn

    def json_stream(self, method: str, path: str, params: "Params" = None, body: "Any" = None,
                    headers: "Headers" = None) -> "Iterator[Any]":
        """Yield each JSON message of a streaming answer; an ``error`` message raises ProgressError."""
        resp, conn = self.stream(method, path, params, body, headers)
        try:
            for msg in json_objects(resp.read_some):
                if isinstance(msg, dict) and msg.get("error"):
                    detail = msg.get("errorDetail") or {}
                    raise ProgressError(resp.status, detail.get("message") or str(msg["error"]))
                yield msg
        finally:
            conn.close()

    # --- system -------------------------------------------------------------------

    def ping(self, timeout: float | None = None) -> "Any":
        return self.request("GET", "/_ping", timeout=timeout)

    def version(self) -> "Any":
        return self.request("GET", "/version")

    def info(self) -> "Any":
        return self.request("GET", "/info")

    # --- containers -----------------------------------------------------------------

    def containers(self, all: bool = False, filters: "Params" = None, limit: int | None = None,
                   size: bool = False) -> "Any":
        params = {"all": all or None, "limit": limit, "size": size or None,
                  "filters": json.dumps(filters) if filters else None}
        return self.request("GET", "/containers/json", params)

    def create_container(self, body: "Mapping[str, Any]", name: str | None = None) -> "Any":
        return self.request("POST", "/containers/create", {"name": name}, body=body)

    def inspect_container(self, container: str) -> "Any":
        return self.request("GET", f"/containers/{_q(container)}/json")

    def start(self, container: str) -> "Any":
        return self.request("POST", f"/containers/{_q(container)}/start")

    def stop(self, container: str, timeout: int | None = None) -> "Any":
        return self.request("POST", f"/containers/{_q(container)}/stop", {"t": timeout})

    def kill(self, container: str, signal: str | int | None = None) -> "Any":
        return self.request("POST", f"/containers/{_q(container)}/kill", {"signal": signal})

    def remove_container(self, container: str, force: bool = False, volumes: bool = False) -> "Any":
        return self.request("DELETE", f"/containers/{_q(container)}",
                            {"force": force or None, "v": volumes or None})

    def resize(self, container: str, height: int, width: int) -> "Any":
        return self.request("POST", f"/containers/{_q(container)}/resize", {"h": height, "w": width})

    def wait_begin(self, container: str, condition: str | None = None,
                   confirm_timeout: float | None = None) -> PendingWait:
        """Send the wait request now (so the daemon is watching) and answer later.

        Like Docker's, a daemon answers the headers as soon as it watches the
        container; with ``confirm_timeout`` we wait (at most that long) for the
        first answer bytes, so a following ``start`` cannot overtake the wait.
        """
        conn = self._send("POST", f"/containers/{_q(container)}/wait", {"condition": condition})
        if confirm_timeout:
            before = conn.sock.gettimeout()
            try:
                conn.sock.settimeout(confirm_timeout)
                conn.sock.recv(1, socket.MSG_PEEK)
            except OSError:
                pass  # no early headers from this daemon: go on, the request is sent
            finally:
                conn.sock.settimeout(before)
        return PendingWait(self, conn)

    def wait(self, container: str, condition: str | None = None) -> "Any":
        """Block until the container meets ``condition`` (not-running, next-exit, removed).

        Returns ``{"StatusCode": int, "Error": {...} or None}``.
        """
        return self.wait_begin(container, condition).result()

    def logs(self, container: str, stdout: bool = True, stderr: bool = True, follow: bool = False,
             tail: str | int | None = None, timestamps: bool = False, since: str | int | None = None,
             until: str | int | None = None, tty: bool | None = None) -> "Iterator[tuple[int, bytes]]":
        """Yield ``(stream, bytes)`` frames of the container's logs (forever with ``follow``)."""
        if tty is None:
            tty = bool(self.inspect_container(container).get("Config", {}).get("Tty"))
        params = {"stdout": stdout, "stderr": stderr, "follow": follow or None, "tail": tail,
                  "timestamps": timestamps or None, "since": since, "until": until}
        resp, conn = self.stream("GET", f"/containers/{_q(container)}/logs", params)

        def frames() -> "Iterator[tuple[int, bytes]]":
            try:
                yield from demux(resp.read_exact, resp.read_some, tty)
            finally:
                conn.close()
        return frames()

    def attach(self, container: str, stdin: bool = False, stdout: bool = True, stderr: bool = True,
               logs: bool = False, tty: bool | None = None, detach_keys: str | None = None) -> Attachment:
        """Hijack a connection for the container's streams; returns an Attachment.

        Sends ``Connection: Upgrade`` / ``Upgrade: tcp``; the daemon answers
        ``101 UPGRADED`` (or ``200 OK``) and then the raw or multiplexed stream.
        """
        if tty is None:
            tty = bool(self.inspect_container(container).get("Config", {}).get("Tty"))
        url = self._url(f"/containers/{_q(container)}/attach",
                        {"stream": True, "stdin": stdin, "stdout": stdout, "stderr": stderr,
                         "logs": logs or None, "detachKeys": detach_keys or None})
        return self._hijack(url, None, tty)

    def _hijack(self, url: str, body: "Any", tty: bool) -> Attachment:
        if self.debug:
            print(f"dockyard: --> POST {url} (upgrade)", file=sys.stderr)
        conn = self._connection()
        try:
            conn.sock.settimeout(None)  # the stream may stay quiet for as long as it likes
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json" if data else "text/plain",
                       "Connection": "Upgrade", "Upgrade": "tcp"}
            conn.send("POST", url, self._headers(headers), data)
            resp = self._response(conn)
            if resp.status not in (101, 200):
                raise ProtocolError(f"unexpected answer to {url}: {resp.status} {resp.reason}")
        except BaseException:
            conn.close()
            raise
        return Attachment(conn.sock, resp, tty)

    def pause(self, container: str) -> "Any":
        return self.request("POST", f"/containers/{_q(container)}/pause")

    def unpause(self, container: str) -> "Any":
        return self.request("POST", f"/containers/{_q(container)}/unpause")

    def stats(self, container: str, stream: bool = False) -> "Any":
        """One stats sample (``stream=False``), or an iterator of them."""
        if not stream:
            return self.request("GET", f"/containers/{_q(container)}/stats", {"stream": False})
        return self.json_stream("GET", f"/containers/{_q(container)}/stats", {"stream": True})

    # --- networks -----------------------------------------------------------------

    def networks(self, filters: "Params" = None) -> "Any":
        return self.request("GET", "/networks", {"filters": json.dumps(filters) if filters else None})

    def inspect_network(self, network: str) -> "Any":
        return self.request("GET", f"/networks/{_q(network)}")

    def create_network(self, body: "Mapping[str, Any]") -> "Any":
        return self.request("POST", "/networks/create", body=body)

    def remove_network(self, network: str) -> "Any":
        return self.request("DELETE", f"/networks/{_q(network)}")

    def connect_network(self, network: str, container: str, aliases: "Iterable[str]" = (),
                        ip: str | None = None) -> "Any":
        cfg: dict[str, Any] = {"Aliases": list(aliases)}
        if ip:
            cfg["IPAMConfig"] = {"IPv4Address": ip}
        return self.request("POST", f"/networks/{_q(network)}/connect",
                            body={"Container": container, "EndpointConfig": cfg})

    def disconnect_network(self, network: str, container: str, force: bool = False) -> "Any":
        return self.request("POST", f"/networks/{_q(network)}/disconnect",
                            body={"Container": container, "Force": force})

    def prune_networks(self) -> "Any":
        return self.request("POST", "/networks/prune")

    # --- exec ---------------------------------------------------------------------

    def exec_create(self, container: str, body: "Mapping[str, Any]") -> str:
        return self.request("POST", f"/containers/{_q(container)}/exec", body=body)["Id"]

    def exec_start(self, exec_id: str, tty: bool = False, console_size: "Iterable[int] | None" = None) -> Attachment:
        """Start an exec instance attached; returns an Attachment."""
        body: dict[str, Any] = {"Detach": False, "Tty": tty}
        if console_size:
            body["ConsoleSize"] = list(console_size)
        return self._hijack(self._url(f"/exec/{_q(exec_id)}/start"), body, tty)

    def exec_start_detached(self, exec_id: str, tty: bool = False) -> "Any":
        return self.request("POST", f"/exec/{_q(exec_id)}/start", body={"Detach": True, "Tty": tty})

    def exec_inspect(self, exec_id: str) -> "Any":
        return self.request("GET", f"/exec/{_q(exec_id)}/json")

    def exec_resize(self, exec_id: str, height: int, width: int) -> "Any":
        return self.request("POST", f"/exec/{_q(exec_id)}/resize", {"h": height, "w": width})

    # --- images -------------------------------------------------------------------

    def images(self, all: bool = False, filters: "Params" = None) -> "Any":
        params = {"all": all or None, "filters": json.dumps(filters) if filters else None}
        return self.request("GET", "/images/json", params)

    def inspect_image(self, image: str) -> "Any":
        return self.request("GET", f"/images/{_q(image, safe='/:@')}/json")

    def remove_image(self, image: str, force: bool = False, noprune: bool = False) -> "Any":
        return self.request("DELETE", f"/images/{_q(image, safe='/:@')}",
                            {"force": force or None, "noprune": noprune or None})

    def import_image(self, source: "str | bytes | Readable", repo: str | None = None, tag: str | None = None,
                     changes: "Iterable[str]" = (), message: str | None = None) -> "Iterator[Any]":
        """Import a root file system tarball; yields the daemon's progress messages.

        ``source`` is a binary file object (sent with Content-Length when it is a
        regular file, chunked otherwise), bytes, or a URL string for the daemon to
        fetch.
        """
        params: dict[str, Any] = {"repo": repo or None, "tag": tag or None, "changes": list(changes) or None,
                  "message": message or None}
        headers = {"Content-Type": "application/x-tar"}
        params["fromSrc"] = source if isinstance(source, str) else "-"
        body = None if isinstance(source, str) else source
        return self.json_stream("POST", "/images/create", params, body=body, headers=headers)

    def build(self, context: "bytes | Readable | Iterable[bytes] | None", params: "Params" = None,
              headers: "Headers" = None) -> "Iterator[Any]":
        """``POST /build`` with the build context ``context``; yields each JSON message.

        ``context``: bytes, a binary file object (``Content-Length`` for a regular
        file, chunked otherwise), or an iterable of bytes, sent chunked as it is
        produced so a big context never sits in memory; ``None`` for a
        ``remote`` build.  The answer is read once the upload is done (the
        daemon reads the whole context before it starts).  Unlike
        :meth:`json_stream`, an ``{"error": ...}`` message is yielded, not raised:
        the caller wants its ``errorDetail.code``.  An exception raised by the
        iterable (a file that cannot be read) aborts the upload and propagates.
        """
        if context is not None and not isinstance(context, (bytes, bytearray, memoryview)) \
                and not hasattr(context, "read"):
            context = IterReader(context)
        headers = {"Content-Type": "application/x-tar", **(headers or {})}
        url = self._url("/build", params)
        if self.debug:
            print(f"dockyard: --> POST {url}", file=sys.stderr)
        conn = self._connection()
        try:
            try:
                conn.send("POST", url, self._headers(headers), context)  # type: ignore[arg-type]  # (IterReader'd)
            except OSError as exc:
                raise ProtocolError(f"sending the build context failed: {exc}") from exc
            resp = self._response(conn)
        except BaseException:
            conn.close()
            raise
        try:
            yield from json_objects(resp.read_some)
        finally:
            conn.close()

    def pull(self, image: str, tag: str | None = None) -> "Iterator[Any]":
        """Pull ``image`` from a registry; yields the daemon's progress messages."""
        return self.json_stream("POST", "/images/create", {"fromImage": image, "tag": tag or None})


class IterReader:
    """A binary file object over an iterable of bytes (``read(n)`` gives at most
    ``n`` bytes, gathering small pieces, so an upload goes in big chunks)."""

    def __init__(self, chunks: "Iterable[bytes]") -> None:
        self._it = iter(chunks)
        self._buf = bytearray()
        self._done = False

    def read(self, n: int = -1) -> bytes:
        while not self._done and (n < 0 or len(self._buf) < n):
            try:
                self._buf += next(self._it)
            except StopIteration:
                self._done = True
        if n < 0 or n >= len(self._buf):
            data, self._buf = bytes(self._buf), bytearray()
        else:
            data = bytes(self._buf[:n])
            del self._buf[:n]
        return data


def _q(name: str, safe: str = "") -> str:
    return quote(name, safe)
