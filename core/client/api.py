"""The Docker Engine API (v1.41) as methods: :class:`Client`, one per endpoint the
CLI calls, by resource (system, containers, networks, exec, images).

Each method builds the path and query of its endpoint and returns the daemon's
decoded answer (``Any``: the API's JSON shapes), an iterator of a stream's
messages, or an :class:`~.streams.Attachment`.  The requests themselves are the
:class:`~.session.Session`'s; registry calls with credentials are
:mod:`dockyard.client.registry`'s.
"""

import _socket  # not socket: the CLI's start-up (see dockyard.wire)

from dockyard.wire import ProtocolError, demux, json_objects, quote

from .session import Session
from .streams import Attachment, IterReader, PendingWait

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (the CLI's start-up)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from typing import Any

    from dockyard.wire import Readable

    from .session import Headers, Params


class Client(Session):
    """Docker Engine API client for ``host`` (``unix://PATH``, ``tcp://HOST:PORT``)."""

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
                  "filters": _filters(filters)}
        return self.request("GET", "/containers/json", params)

    def create_container(self, body: "Mapping[str, Any]", name: str | None = None) -> "Any":
        return self.request("POST", "/containers/create", {"name": name}, body=body)

    def inspect_container(self, container: str, size: bool = False) -> "Any":
        """``size`` adds ``SizeRw`` and ``SizeRootFs`` (``inspect --size``)."""
        return self.request("GET", f"/containers/{_q(container)}/json", {"size": size or None})

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
                conn.sock.recv(1, _socket.MSG_PEEK)
            except OSError:
                pass  # no early headers from this daemon: go on, the request is sent
            finally:
                conn.sock.settimeout(before)
        return PendingWait(conn, self._body)

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
        return self.request("GET", "/networks", {"filters": _filters(filters)})

    def inspect_network(self, network: str, verbose: bool = False) -> "Any":
        return self.request("GET", f"/networks/{_q(network)}", {"verbose": verbose or None})

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
        params = {"all": all or None, "filters": _filters(filters)}
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
        self._trace(f"--> POST {url}")
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


def _q(name: str, safe: str = "") -> str:
    return quote(name, safe)


__all__ = ["Client"]


def _filters(filters: "Mapping[str, Any] | None") -> str | None:
    """A listing's ``filters`` parameter (JSON); json is imported only when there are some."""
    if not filters:
        return None
    import json
    return json.dumps(filters)
