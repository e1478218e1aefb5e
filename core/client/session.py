"""The HTTP side of the client: one request per connection to the daemon, its
answer read and decoded or raised as an :class:`~.errors.APIError`.

Every request path is sent versioned (``/v1.41/...``).  Each request uses its own
connection, so a long-lived stream (``logs -f``, ``attach``, a pending ``wait``)
never blocks other requests made meanwhile.  The HTTP itself (and the stream
formats) live in :mod:`dockyard.wire`, kept off ``http.client`` for start-up speed.
:class:`Session` has no endpoint of its own: :class:`dockyard.client.Client`
names them.
"""

import sys

from dockyard.wire import Connection, ProtocolError, connect, host_header, json_objects, loads, parse_host, urlencode

from .errors import DaemonUnreachable, ProgressError, api_error
from .streams import Attachment

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (the CLI's start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

    from dockyard.wire import Response

    Params = Mapping[str, Any] | None  # query parameters (``None`` values are left out)
    Headers = Mapping[str, str] | None

API_VERSION = "1.41"
DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"


class Session:
    """Requests to the daemon at ``host`` (``unix://PATH``, ``tcp://HOST:PORT``);
    ``debug`` prints each request and answer line on stderr."""

    def __init__(self, host: str = DEFAULT_HOST, timeout: float | None = None, debug: bool = False) -> None:
        self.host = host
        self.kind, self.address = parse_host(host)
        self.timeout = timeout
        self.debug = debug

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

    def _trace(self, line: str) -> None:
        if self.debug:
            print(f"dockyard: {line}", file=sys.stderr)

    def _send(self, method: str, path: str, params: "Params" = None, body: "Any" = None,
              headers: "Headers" = None, timeout: float | None = None) -> Connection:
        """Send one request on a fresh connection; return the connection."""
        url = self._url(path, params)
        hdrs = self._headers(headers)
        if isinstance(body, (dict, list)):
            import json  # here, not at the top: its import costs a listing's start-up ~7 ms
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        self._trace(f"--> {method} {url}")
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
        self._trace(f"<-- {resp.status} {resp.reason}")
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
            return loads(text)
        except ValueError:
            return text

    def _hijack(self, url: str, body: "Any", tty: bool) -> Attachment:
        """``POST url`` asking to upgrade the connection (``Connection: Upgrade``,
        ``Upgrade: tcp``); the daemon answers ``101 UPGRADED`` (or ``200 OK``) and
        then the raw or multiplexed stream, which the Attachment reads."""
        self._trace(f"--> POST {url} (upgrade)")
        conn = self._connection()
        try:
            conn.sock.settimeout(None)  # the stream may stay quiet for as long as it likes
            import json
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


__all__ = ["API_VERSION", "DEFAULT_HOST", "Session"]
